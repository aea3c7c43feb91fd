//! The `rp2040` platform plugin: Raspberry Pi Pico (RP2040) and Pico 2 (RP2350) boards running
//! the `rp2040` port. The image and the model go to the board as one UF2 file (image at the
//! start of flash, model at 0x10040000) through `picotool` (the default: `load`, verified, then
//! run) or a copy onto the BOOTSEL drive (`flash_tool = "uf2"`, the drive found mounted as
//! RPI-RP2 / RP2350 or named by `flash_program`); or the ELF and the model through a CMSIS-DAP
//! probe (a Raspberry Pi Debug Probe) with `openocd` or `probe-rs`. A board reaches BOOTSEL
//! only by its button held at power-up or reset: the plan says so, and a board that is not
//! there faults with picotool's own words. The console is UART0 (GP0/GP1) through the Debug
//! Probe or any USB-serial adapter.

use std::path::PathBuf;

use abi_stable::std_types::{ROption, RResult};
use labctl_plugin_api::{
    flash::{self, words, Cmd, FlashKeys, Image, Recipe, Tool},
    profile::{usb, Profile, Silicon, UsbRole},
    BoardSessionBox, BoardSpec, ErrorKind, PluginError, RailControlBox,
};

labctl_plugin_api::platform_plugin!(
    "rp2040",
    "Raspberry Pi Pico (RP2040) and Pico 2 (RP2350): UF2 through picotool or the BOOTSEL drive, or SWD (openocd, probe-rs)",
    profile_table,
    open_board,
);

/// One chip, with its image's memory map and its tools' names for it.
pub struct Chip {
    pub profile: &'static str,
    pub image: Image,
    pub flash_bytes: u32,
    pub model_addr: u32,
    pub uf2_family: u32,
    /// The BOOTSEL drive's volume label.
    pub drive: &'static str,
    pub openocd_target: &'static str,
    pub probe_rs_chip: &'static str,
}

const FLASH_BASE: u32 = 0x1000_0000;

pub const CHIPS: &[Chip] = &[
    Chip {
        profile: "pico",
        image: Image {
            file: "labctl-fw-rp2040",
            target: "thumbv6m-none-eabi",
            variant: None,
        },
        flash_bytes: 2 << 20,
        model_addr: 0x1004_0000,
        uf2_family: flash::uf2::FAMILY_RP2040,
        drive: "RPI-RP2",
        openocd_target: "target/rp2040.cfg",
        probe_rs_chip: "RP2040",
    },
    Chip {
        profile: "pico2",
        image: Image {
            file: "labctl-fw-rp2040",
            target: "thumbv8m.main-none-eabihf",
            variant: Some(("fw-rp2350", "rp2350")),
        },
        flash_bytes: 4 << 20,
        model_addr: 0x1004_0000,
        uf2_family: flash::uf2::FAMILY_RP2350_ARM_S,
        drive: "RP2350",
        openocd_target: "target/rp2350.cfg",
        probe_rs_chip: "RP235x",
    },
];

pub const TOOLS: &[Tool] = &[
    Tool {
        name: "picotool",
        program: "picotool",
        install: "apt-get install picotool, or build it from github.com/raspberrypi/picotool",
    },
    Tool {
        name: "uf2",
        program: "cp",
        install: "coreutils",
    },
    Tool {
        name: "openocd",
        program: "openocd",
        install: "apt-get install openocd (the RP2350 needs Raspberry Pi's openocd fork)",
    },
    Tool {
        name: "probe-rs",
        program: "probe-rs",
        install: "cargo install probe-rs-tools, or see probe.rs",
    },
];

pub fn profile_table() -> Vec<Profile> {
    let debug_probe = (0x2e8a, 0x000c, UsbRole::Probe);
    let debug_probe_uart = (0x2e8a, 0x000c, UsbRole::Console);
    vec![
        Silicon {
            name: "pico",
            description: "Raspberry Pi Pico: RP2040 (dual Cortex-M0+, core 0 used) at 125 MHz, 264 KiB SRAM, 2 MiB QSPI flash (model from 0x10040000, executed in place); console on UART0 (GP0 TX, GP1 RX) through a Debug Probe or USB-serial adapter; flashed as UF2 in BOOTSEL (2e8a:0003) or over SWD",
            cpu: "Cortex-M0+",
            clock_hz: 125_000_000,
            kib: (264, 0, 2048),
            usb: usb(&[(0x2e8a, 0x0003, UsbRole::Probe), debug_probe, debug_probe_uart]),
            banner: "rp2040",
            counter: "the core's SysTick on the 125 MHz system clock",
        }
        .profile(),
        Silicon {
            name: "pico2",
            description: "Raspberry Pi Pico 2: RP2350A (Cortex-M33F, core 0, Arm secure) at 150 MHz, 520 KiB SRAM, 4 MiB QSPI flash (model from 0x10040000); console on UART0 (GP0/GP1); flashed as UF2 in BOOTSEL (2e8a:000f) or over SWD",
            cpu: "Cortex-M33F",
            clock_hz: 150_000_000,
            kib: (520, 0, 4096),
            usb: usb(&[(0x2e8a, 0x000f, UsbRole::Probe), debug_probe, debug_probe_uart]),
            banner: "rp2350",
            counter: "the core's SysTick on the 150 MHz system clock",
        }
        .profile(),
    ]
}

/// Where a BOOTSEL drive labelled `label` is mounted, if it is.
fn find_drive(label: &str) -> Option<PathBuf> {
    let mut roots = vec![PathBuf::from("/media"), PathBuf::from("/run/media")];
    roots.push(PathBuf::from("/mnt"));
    for root in roots {
        let direct = root.join(label);
        if direct.join("INFO_UF2.TXT").is_file() {
            return Some(direct);
        }
        // /media/$USER/RPI-RP2
        if let Ok(users) = std::fs::read_dir(&root) {
            for u in users.flatten() {
                let p = u.path().join(label);
                if p.join("INFO_UF2.TXT").is_file() {
                    return Some(p);
                }
            }
        }
    }
    None
}

struct Flasher {
    chip: &'static Chip,
    tool: &'static Tool,
    program: String,
    probe_serial: Option<String>,
    image: PathBuf,
    uf2: PathBuf,
    model: String,
}

impl Flasher {
    fn new(spec: &BoardSpec, chip: &'static Chip) -> Result<Flasher, PluginError> {
        let keys = FlashKeys::of(spec)?;
        let tool = keys.pick("rp2040", TOOLS)?;
        Ok(Flasher {
            chip,
            tool,
            program: keys.program(tool),
            probe_serial: keys.probe_serial,
            image: chip.image.require(spec.firmware.as_str(), chip.profile)?,
            uf2: flash::scratch("rp2040", spec.board.as_str(), "labctl.uf2"),
            model: spec.model.to_string(),
        })
    }

    /// The BOOTSEL drive: `flash_program` when the lab file names one, else where it is mounted
    /// now, else where it usually is (the copy then fails and says so).
    fn drive(&self) -> PathBuf {
        if self.program != self.tool.program {
            return PathBuf::from(&self.program);
        }
        find_drive(self.chip.drive)
            .unwrap_or_else(|| PathBuf::from(format!("/media/$USER/{}", self.chip.drive)))
    }

    fn with_probe(&self, mut v: Vec<String>) -> Vec<String> {
        if let Some(sn) = &self.probe_serial {
            match self.tool.name {
                "picotool" => v.extend(["--ser".into(), sn.clone()]),
                "openocd" => v.extend(["-c".into(), format!("adapter serial {sn}")]),
                _ => {}
            }
        }
        v
    }

    fn openocd(&self) -> Vec<String> {
        self.with_probe(words(&[
            &self.program,
            "-f",
            "interface/cmsis-dap.cfg",
            "-f",
            self.chip.openocd_target,
            "-c",
            "adapter speed 5000",
        ]))
    }
}

impl Recipe for Flasher {
    fn install(&self) -> &str {
        self.tool.install
    }

    fn prepare(&self) -> Result<(), PluginError> {
        if !matches!(self.tool.name, "picotool" | "uf2") {
            return Ok(());
        }
        let elf = flash::read_file(&self.image)?;
        let model = flash::read_file(std::path::Path::new(&self.model))?;
        let mut ranges = flash::segments_of(
            &elf,
            &self.image,
            FLASH_BASE,
            self.chip.model_addr - FLASH_BASE,
        )?;
        let room = (FLASH_BASE + self.chip.flash_bytes - self.chip.model_addr) as usize;
        if model.len() > room {
            return Err(PluginError::new(
                ErrorKind::InvalidConfig,
                format!(
                    "the model is {} bytes; the {} model partition holds {room}",
                    model.len(),
                    self.chip.profile
                ),
            ));
        }
        ranges.push((self.chip.model_addr, &model));
        flash::write_file(
            &self.uf2,
            &flash::uf2::from_ranges(&ranges, self.chip.uf2_family),
        )
    }

    fn commands(&self) -> Vec<Cmd> {
        let uf2 = self.uf2.display().to_string();
        let img = self.image.display().to_string();
        match self.tool.name {
            "picotool" => vec![Cmd::new(
                [
                    vec![self.program.clone(), "load".into()],
                    self.with_probe(vec![]),
                    words(&["-v", "-x", &uf2]),
                ]
                .concat(),
                "image and model as one UF2 (board in BOOTSEL: hold the button while plugging in or resetting), verified, then run",
            )],
            "uf2" => vec![Cmd::new(
                words(&[
                    "cp",
                    &uf2,
                    &self.drive().join("labctl.uf2").display().to_string(),
                ]),
                "image and model as one UF2 onto the BOOTSEL drive; the chip writes it and reboots",
            )],
            "openocd" => vec![Cmd::new(
                flash::openocd_program(self.openocd(), &img, &self.model, self.chip.model_addr),
                "the image and the model over SWD through a CMSIS-DAP probe, verified, then reset",
            )],
            _ => flash::probe_rs_flash(
                &self.program,
                self.chip.probe_rs_chip,
                self.probe_serial.as_deref(),
                &img,
                &self.model,
                self.chip.model_addr,
            ),
        }
    }

    fn reset(&self) -> Option<Cmd> {
        let argv = match self.tool.name {
            "picotool" => [
                vec![self.program.clone(), "reboot".into()],
                self.with_probe(vec![]),
            ]
            .concat(),
            "openocd" => flash::openocd_reset(self.openocd()),
            "probe-rs" => flash::probe_rs(
                &self.program,
                "reset",
                self.chip.probe_rs_chip,
                self.probe_serial.as_deref(),
            ),
            // The BOOTSEL drive cannot reset a running board.
            _ => return None,
        };
        Some(Cmd::new(argv, "the chip reset through its tool"))
    }
}

extern "C" fn open_board(
    spec: &BoardSpec,
    _rail: ROption<RailControlBox>,
) -> RResult<BoardSessionBox, PluginError> {
    flash::open(spec, "rp2040", CHIPS, |c| c.profile, Flasher::new)
}
