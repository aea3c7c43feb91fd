//! The `qemu` platform plugin: boards that are QEMU machines running the bare-metal firmware
//! (`firmware/ports/qemu-mps2`) on a real instruction set. Power on = start `qemu-system-arm` with
//! the board's serial line on the pseudo-terminal the host created and the model loaded into the
//! flash partition; `-icount` makes virtual time follow the instruction count, so the firmware's
//! cycle counts are deterministic. Wall-clock timings of these boards are QEMU's speed on the
//! host; the `cycles` columns are the meaningful figures (docs/simulation.md).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use abi_stable::{
    export_root_module,
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{RNone, ROption, RResult, RSome, RString, RVec},
};
use labctl_plugin_api::{
    guard, plugin_info, BoardProfile, BoardSession, BoardSessionBox, BoardSession_TO, BoardSpec,
    ErrorKind, PlatformApi, PluginError, PluginInfo, PluginMod, PluginModRef, RailControlBox,
};

/// The bare-metal image's file name, found beside `labctl`, in its `firmware/` folder, or (in a
/// cargo target directory) where `cargo build --target thumbv7em-none-eabihf --release` put it.
pub const IMAGE: &str = "labctl-fw-qemu-mps2";
/// Where the model partition starts (the image's linker script says the same).
pub const MODEL_ADDR: &str = "0x00100000";

#[export_root_module]
pub fn get_library() -> PluginModRef {
    PluginMod {
        info,
        platform: RSome(
            PlatformApi {
                profiles,
                open_board,
            }
            .leak_into_prefix(),
        ),
        sensor: RNone,
    }
    .leak_into_prefix()
}

extern "C" fn info() -> PluginInfo {
    plugin_info(
        "qemu",
        env!("CARGO_PKG_VERSION"),
        "emulated MCUs: the bare-metal firmware on Cortex-M4F/M7 under QEMU with -icount",
    )
}

/// (profile, QEMU machine, description, clock, RAM KiB, flash KiB)
const MACHINES: &[(&str, &str, &str, u64, u64, u64)] = &[
    (
        "cortex-m4-168",
        "mps2-an386",
        "Cortex-M4F class (QEMU mps2-an386), 4 MiB SRAM, 4 MiB code memory",
        168_000_000,
        4096,
        4096,
    ),
    (
        "cortex-m7-216",
        "mps2-an500",
        "Cortex-M7 class (QEMU mps2-an500), 4 MiB SRAM, 4 MiB code memory",
        216_000_000,
        4096,
        4096,
    ),
];

pub fn profile_table() -> Vec<BoardProfile> {
    MACHINES
        .iter()
        .map(|(name, _, desc, clock, ram, flash)| BoardProfile {
            name: (*name).into(),
            description: (*desc).into(),
            cpu: if name.contains("m7") {
                "Cortex-M7"
            } else {
                "Cortex-M4F"
            }
            .into(),
            clock_hz: *clock,
            ram_bytes: ram * 1024,
            psram_bytes: 0,
            flash_bytes: flash * 1024,
            supply_mv: 3300.0,
            idle_ma: 0.0,
            active_ma: 0.0,
            usb_ids: RVec::new(),
            emulated: true,
        })
        .collect()
}

extern "C" fn profiles() -> RVec<BoardProfile> {
    RVec::from(profile_table())
}

/// Finds the bare-metal image near the posix firmware the host found (its directory is where
/// labctl keeps firmware).
fn find_image(posix_firmware: &str) -> Option<PathBuf> {
    let dir = Path::new(posix_firmware).parent()?;
    let mut candidates = vec![dir.join(IMAGE), dir.join("firmware").join(IMAGE)];
    if let Some(target) = dir.parent() {
        candidates.push(target.join("thumbv7em-none-eabihf/release").join(IMAGE));
    }
    candidates.into_iter().find(|p| p.is_file())
}

struct QemuBoard {
    machine: &'static str,
    image: PathBuf,
    spec: BoardSpec,
    child: Option<Child>,
    died: Option<String>,
}

impl QemuBoard {
    fn start(&mut self) -> Result<(), PluginError> {
        if self.child.is_some() {
            return Ok(());
        }
        self.died = None;
        let child = Command::new("qemu-system-arm")
            .args(["-M", self.machine, "-display", "none", "-monitor", "none"])
            .arg("-serial")
            .arg(self.spec.serial.as_str())
            .arg("-kernel")
            .arg(&self.image)
            .arg("-device")
            .arg(format!("loader,file={},addr={MODEL_ADDR}", self.spec.model))
            .args(["-icount", "shift=0,align=off,sleep=off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                PluginError::new(
                    ErrorKind::Io,
                    format!("starting qemu-system-arm (apt-get install qemu-system-arm): {e}"),
                )
            })?;
        self.child = Some(child);
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl BoardSession for QemuBoard {
    fn power_on(&mut self) -> RResult<(), PluginError> {
        guard(|| self.start())
    }

    fn power_off(&mut self) -> RResult<(), PluginError> {
        guard(|| {
            self.stop();
            Ok(())
        })
    }

    fn check(&mut self) -> ROption<RString> {
        if let Some(d) = &self.died {
            return RSome(d.as_str().into());
        }
        let Some(c) = self.child.as_mut() else {
            return RNone;
        };
        match c.try_wait() {
            Ok(Some(status)) => {
                let mut why = format!("qemu exited ({status})");
                if let Some(mut err) = c.stderr.take() {
                    let mut s = String::new();
                    let _ = std::io::Read::read_to_string(&mut err, &mut s);
                    if let Some(last) = s.lines().rev().find(|l| !l.trim().is_empty()) {
                        why.push_str(": ");
                        why.push_str(last.trim());
                    }
                }
                self.child = None;
                self.died = Some(why.clone());
                RSome(why.into())
            }
            _ => RNone,
        }
    }
}

impl Drop for QemuBoard {
    fn drop(&mut self) {
        self.stop();
    }
}

extern "C" fn open_board(
    spec: &BoardSpec,
    _rail: ROption<RailControlBox>,
) -> RResult<BoardSessionBox, PluginError> {
    guard(|| {
        let machine = MACHINES
            .iter()
            .find(|m| m.0 == spec.profile.as_str())
            .map(|m| m.1)
            .ok_or_else(|| {
                PluginError::new(
                    ErrorKind::InvalidConfig,
                    format!("qemu platform has no profile {:?}", spec.profile.as_str()),
                )
            })?;
        let image = find_image(spec.firmware.as_str()).ok_or_else(|| {
            PluginError::new(
                ErrorKind::InvalidConfig,
                format!(
                    "bare-metal image {IMAGE} not found beside labctl: build it with \
                     cargo build --release --manifest-path firmware/ports/qemu-mps2/Cargo.toml --target thumbv7em-none-eabihf"
                ),
            )
        })?;
        let board = QemuBoard {
            machine,
            image,
            spec: spec.clone(),
            child: None,
            died: None,
        };
        Ok(BoardSession_TO::from_value(board, TD_Opaque))
    })
}
