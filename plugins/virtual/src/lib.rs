//! The `virtual` platform plugin: emulated boards whose profiles mirror real ones (ESP32-S3,
//! STM32F7, RP2040). An emulated board is the profiling firmware (the `posix` port) running as a
//! host process on the pseudo-terminal the host gives it; its supply rail is simulated from the
//! profile's idle and active currents, switched by the firmware's compute phases. Every result
//! from these boards is `simulated`, and their timings are the host CPU's, not the real chip's.
//!
//! Power model (docs/simulation.md): relay off → 0 V, 0 A; on → `supply_mv` at `idle_ma`; while
//! the firmware computes a prompt (it reports phase edges stamped on CLOCK_MONOTONIC through a
//! pipe) → `active_ma`. The host records every step, so tests know the exact energy.

use std::{
    io::{BufRead, BufReader},
    os::fd::{FromRawFd, OwnedFd},
    os::unix::process::CommandExt,
    process::{Child, Command, Stdio},
    sync::Arc,
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RNone, ROption, RResult, RSome, RString, RVec},
};
use labctl_plugin_api::{
    guard, monotonic_ns,
    profile::{memories, ConsoleKind, Profile, Timing, TimingSource},
    BoardSession, BoardSessionBox, BoardSession_TO, BoardSpec, ErrorKind, PluginError,
    RailControlBox, RailPoint, Step,
};

labctl_plugin_api::platform_plugin!(
    "virtual",
    "emulated boards: the profiling firmware as a host process, on a simulated supply rail",
    profile_table,
    open_board,
);

/// Profile figures: memory from the chips' datasheets (see FACTS in the design notes); currents
/// are the rail model's parameters for a dev board powered at 5 V over USB, not measurements.
pub fn profile_table() -> Vec<Profile> {
    let p = |name: &str,
             description: &str,
             cpu: &str,
             clock_hz: u64,
             ram_kb: u64,
             psram_kb: u64,
             flash_kb: u64,
             idle_ma: f64,
             active_ma: f64| Profile {
        name: name.into(),
        description: description.into(),
        cpu: cpu.into(),
        clock_hz,
        memories: memories(ram_kb, psram_kb, flash_kb),
        supply_mv: 5000.0,
        idle_ma,
        active_ma,
        usb: vec![],
        timing: Timing {
            source: TimingSource::HostCpu,
            counter_hz: clock_hz,
            note: "emulated board, timings are the host CPU's, not the real chip's".into(),
        },
        emulated: true,
        console: ConsoleKind::Pty,
        banner: None,
    };
    vec![
        p(
            "esp32s3",
            "ESP32-S3 N16R8 class: 512 KB SRAM, 8 MB PSRAM, 16 MB flash",
            "Xtensa LX7 dual-core",
            240_000_000,
            512,
            8 * 1024,
            16 * 1024,
            32.0,
            96.0,
        ),
        p(
            "stm32f7",
            "STM32F746 class: 320 KB SRAM, 1 MB flash",
            "Cortex-M7F",
            216_000_000,
            320,
            0,
            1024,
            48.0,
            128.0,
        ),
        p(
            "rp2040",
            "RP2040 (Pico) class: 264 KB SRAM, 2 MB QSPI flash",
            "dual Cortex-M0+",
            133_000_000,
            264,
            0,
            2048,
            19.0,
            31.0,
        ),
    ]
}

/// Scheduling niceness of emulated boards (see `start`).
const EMULATOR_NICE: libc::c_int = 10;

/// An emulated board: the posix firmware as a child process, and its power model.
struct VirtualBoard {
    spec: BoardSpec,
    profile: Profile,
    rail: Option<Arc<RailControlBox>>,
    child: Option<Child>,
    /// Set once the board has died by itself (not by `power_off`).
    died: Option<String>,
}

impl VirtualBoard {
    fn point(&self, amps_ma: f64) -> RailPoint {
        RailPoint {
            bus_volts: self.profile.supply_mv / 1000.0,
            amps: amps_ma / 1000.0,
        }
    }

    fn set_rail(&self, t_ns: u64, point: RailPoint) {
        if let Some(r) = &self.rail {
            r.set(t_ns, point);
        }
    }

    fn start(&mut self) -> Result<(), PluginError> {
        if self.child.is_some() {
            return Ok(());
        }
        self.died = None;
        let io =
            |what: &str, e: std::io::Error| PluginError::new(ErrorKind::Io, format!("{what}: {e}"));
        // The phase pipe: the firmware writes edges to fd 3, a thread here drives the rail.
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 fills two descriptors we then own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io("pipe", std::io::Error::last_os_error()));
        }
        // SAFETY: both descriptors were just created and are owned by nothing else.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let argv = self.argv();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let wr_fd = {
            use std::os::fd::AsRawFd;
            wr.as_raw_fd()
        };
        // SAFETY: only async-signal-safe calls between fork and exec; dup2 clears CLOEXEC on 3.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(wr_fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // A real board computes on its own chip; an emulated one computes on the host's
                // CPU, which the samplers need on time. Run it niced, so that measuring wins.
                libc::setpriority(libc::PRIO_PROCESS, 0, EMULATOR_NICE);
                Ok(())
            });
        }
        let t_on = monotonic_ns();
        self.set_rail(t_on, self.point(self.profile.idle_ma));
        let child = cmd
            .spawn()
            .map_err(|e| io(&format!("starting firmware {}", self.spec.firmware), e))?;
        drop(wr);
        let rail = self.rail.clone();
        let (idle, active) = (
            self.point(self.profile.idle_ma),
            self.point(self.profile.active_ma),
        );
        std::thread::Builder::new()
            .name(format!("phase-{}", self.spec.board))
            .spawn(move || {
                let r = BufReader::new(std::fs::File::from(rd));
                for line in r.lines() {
                    let Ok(line) = line else { break };
                    let mut it = line.split_whitespace();
                    let (Some(Ok(t)), Some(flag)) = (it.next().map(str::parse::<u64>), it.next())
                    else {
                        continue;
                    };
                    if let Some(rail) = &rail {
                        rail.set(t, if flag == "1" { active } else { idle });
                    }
                }
            })
            .map_err(|e| io("phase thread", e))?;
        self.child = Some(child);
        Ok(())
    }

    /// The firmware's command line: the profile's clock and memory, the model, the console.
    fn argv(&self) -> Vec<String> {
        let p = &self.profile;
        [
            self.spec.firmware.as_str(),
            "--model",
            self.spec.model.as_str(),
            "--serial",
            self.spec.serial.as_str(),
            "--platform",
            p.name.as_str(),
            "--clock-hz",
            &p.clock_hz.max(1).to_string(),
            "--ram",
            &(p.sram_bytes() + p.psram_bytes()).to_string(),
            "--flash",
            &p.flash_bytes().to_string(),
            "--ctx",
            &self.spec.ctx_tokens.max(1).to_string(),
            "--phase-fd",
            "3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn step(&self) -> Step {
        Step::new(
            "start",
            &self.argv(),
            "the posix firmware as a host process on the console pty; no flash step (it maps the model file)",
        )
    }

    fn stop(&mut self) {
        labctl_plugin_api::child::stop(&mut self.child);
        self.set_rail(
            monotonic_ns(),
            RailPoint {
                bus_volts: 0.0,
                amps: 0.0,
            },
        );
    }
}

impl BoardSession for VirtualBoard {
    fn plan(&self) -> RVec<Step> {
        RVec::from(vec![self.step()])
    }

    fn bootstrap(&mut self) -> RResult<RVec<Step>, PluginError> {
        guard(|| self.start().map(|_| RVec::from(vec![self.step()])))
    }

    fn console_path(&mut self) -> ROption<RString> {
        RNone
    }

    fn reset(&mut self) -> RResult<Step, PluginError> {
        RResult::RErr(PluginError::new(
            ErrorKind::Unsupported,
            "an emulated board has no reset line; it is reset by restarting it",
        ))
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
        match labctl_plugin_api::child::exit_reason("firmware", c) {
            Some(why) => {
                self.child = None;
                self.set_rail(monotonic_ns(), self.point(self.profile.idle_ma));
                self.died = Some(why.clone());
                RSome(why.into())
            }
            None => RNone,
        }
    }
}

impl Drop for VirtualBoard {
    fn drop(&mut self) {
        self.stop();
    }
}

extern "C" fn open_board(
    spec: &BoardSpec,
    rail: ROption<RailControlBox>,
) -> RResult<BoardSessionBox, PluginError> {
    guard(|| {
        // Any profile the host hands over runs here, also another platform's: the firmware
        // takes its clock and memory, the rail model its currents.
        let profile = spec.profile()?;
        if !std::path::Path::new(spec.firmware.as_str()).is_file() {
            return Err(PluginError::new(
                ErrorKind::InvalidConfig,
                format!(
                    "posix firmware {} not found (build the workspace: cargo build --workspace)",
                    spec.firmware
                ),
            ));
        }
        let board = VirtualBoard {
            spec: spec.clone(),
            profile,
            rail: rail.into_option().map(Arc::new),
            child: None,
            died: None,
        };
        Ok(BoardSession_TO::from_value(board, TD_Opaque))
    })
}
