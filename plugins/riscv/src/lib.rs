//! The `riscv` platform plugin: RISC-V boards running the `riscv` port — Sipeed Maix boards
//! (Kendryte K210) flashed with `kflash` and PineCone-class boards (Bouffalo BL602) flashed with
//! `blflash`, both over the board's serial port. Each tool writes one file, so the image's
//! bytes, padded to 256 KiB, and the model after them go as one payload: the K210's boot ROM
//! copies it all to SRAM (model at 0x80040000), the BL602 runs it in place (model at
//! 0x23040000). kflash enters the K210's ROM loader by DTR/RTS and boots the board when done; a
//! BL602 enters its loader only with its boot pin (IO8) held high at reset — a jumper on the
//! PineCone — and runs the firmware after a reset with the jumper off.

use std::path::{Path, PathBuf};

use abi_stable::std_types::{ROption, RResult};
use labctl_plugin_api::{
    flash::{self, words, Cmd, FlashKeys, Image, Recipe, Tool},
    profile::{usb, Profile, Silicon, UsbRole},
    BoardSessionBox, BoardSpec, ErrorKind, PluginError, RailControlBox,
};

labctl_plugin_api::platform_plugin!(
    "riscv",
    "K210 (kflash) and BL602 (blflash) boards flashed over their serial port, profiled on their UART",
    profile_table,
    open_board,
);

/// One chip: its image, where the payload's bytes start, how much model fits, and its tool.
pub struct Chip {
    pub profile: &'static str,
    pub image: Image,
    pub base: u32,
    pub model_room: u32,
    pub tool: Tool,
}

/// Bytes of the payload before the model.
const MODEL_OFFSET: u32 = 256 << 10;

pub const CHIPS: &[Chip] = &[
    Chip {
        profile: "maix-bit",
        image: Image {
            file: "labctl-fw-riscv",
            target: "riscv64gc-unknown-none-elf",
            variant: None,
        },
        base: 0x8000_0000,
        model_room: 3840 << 10,
        tool: Tool {
            name: "kflash",
            program: "kflash",
            install: "pip install kflash",
        },
    },
    Chip {
        profile: "pinecone",
        image: Image {
            file: "labctl-fw-riscv",
            target: "riscv32imac-unknown-none-elf",
            variant: Some(("fw-bl602", "bl602")),
        },
        base: 0x2300_0000,
        model_room: 544 << 10,
        tool: Tool {
            name: "blflash",
            program: "blflash",
            install: "cargo install blflash",
        },
    },
];

pub fn profile_table() -> Vec<Profile> {
    vec![
        Silicon {
            name: "maix-bit",
            description: "Sipeed Maix Bit / Dock: Kendryte K210 (dual RV64GC, hart 0 used) at the boot ROM's PLL setting (reported in READY; 400 MHz nominal), 6 MiB general SRAM (the model is copied there with the image, up to 3840 KiB), 16 MiB flash; console on UARTHS through the board's CH340 / CH552 bridge, flashed over the same port",
            cpu: "RISC-V RV64GC",
            clock_hz: 400_000_000,
            kib: (6144, 0, 16384),
            usb: usb(&[
                (0x1a86, 0x7523, UsbRole::Console),
                (0x0403, 0x6010, UsbRole::Console),
            ]),
            banner: "k210",
            counter: "the core's mcycle on the CPU clock",
        }
        .profile(),
        Silicon {
            name: "pinecone",
            description: "Pine64 PineCone: Bouffalo BL602 (SiFive E24, RV32IMAC used) at 160 MHz, 276 KiB SRAM, 2 MiB flash executed in place (model at 0x23040000, up to 544 KiB); console on UART0 (GPIO16 TX, GPIO7 RX) through the board's CH340; flashed over the same port with the IO8 jumper on",
            cpu: "RISC-V RV32IMAC",
            clock_hz: 160_000_000,
            kib: (276, 0, 2048),
            usb: usb(&[(0x1a86, 0x7523, UsbRole::Console)]),
            banner: "bl602",
            counter: "the core's mcycle on the 160 MHz clock",
        }
        .profile(),
    ]
}

struct Flasher {
    chip: &'static Chip,
    program: String,
    port: String,
    image: PathBuf,
    payload: PathBuf,
    model: String,
}

impl Flasher {
    fn new(spec: &BoardSpec, chip: &'static Chip) -> Result<Flasher, PluginError> {
        let keys = FlashKeys::of(spec)?;
        keys.pick("riscv", std::slice::from_ref(&chip.tool))?;
        Ok(Flasher {
            chip,
            program: keys.program(&chip.tool),
            port: spec.serial.to_string(),
            image: chip.image.require(spec.firmware.as_str(), chip.profile)?,
            payload: flash::scratch("riscv", spec.board.as_str(), "payload.bin"),
            model: spec.model.to_string(),
        })
    }
}

impl Recipe for Flasher {
    fn install(&self) -> &str {
        self.chip.tool.install
    }

    fn prepare(&self) -> Result<(), PluginError> {
        let elf = flash::read_file(&self.image)?;
        let model = flash::read_file(Path::new(&self.model))?;
        if model.len() > self.chip.model_room as usize {
            return Err(PluginError::new(
                ErrorKind::InvalidConfig,
                format!(
                    "the model is {} bytes; the {} holds {}",
                    model.len(),
                    self.chip.profile,
                    self.chip.model_room
                ),
            ));
        }
        let payload =
            flash::elf::with_model(&elf, self.chip.base, MODEL_OFFSET, &model).map_err(|e| {
                PluginError::new(
                    ErrorKind::InvalidConfig,
                    format!("{}: {e}", self.image.display()),
                )
            })?;
        flash::write_file(&self.payload, &payload)
    }

    fn commands(&self) -> Vec<Cmd> {
        let payload = self.payload.display().to_string();
        if self.chip.tool.name == "kflash" {
            vec![Cmd::new(
                words(&[
                    &self.program,
                    "-p",
                    &self.port,
                    "-b",
                    "1500000",
                    "-B",
                    "bit",
                    &payload,
                ]),
                "image and model as one payload at flash 0 (kflash adds the boot ROM's header), then a boot",
            )]
        } else {
            vec![Cmd::new(
                words(&[&self.program, "flash", &payload, "--port", &self.port]),
                "image and model as one payload into the firmware partition (IO8 jumper on; take it off and reset to run)",
            )]
        }
    }

    fn reset(&self) -> Option<Cmd> {
        // Neither tool resets a running board: the lab file's `reset` (DTR/RTS, a relay) does.
        None
    }
}

extern "C" fn open_board(
    spec: &BoardSpec,
    _rail: ROption<RailControlBox>,
) -> RResult<BoardSessionBox, PluginError> {
    flash::open(spec, "riscv", CHIPS, |c| c.profile, Flasher::new)
}
