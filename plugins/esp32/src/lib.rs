//! The `esp32` platform plugin: ESP32-C3 boards running the `esp32` port under the ESP-IDF
//! second-stage bootloader, flashed over their serial port with `espflash` (the default: it
//! brings its own bootloader and writes labctl's partition table — the app at 0x10000, the
//! model partition at 0x110000 — then the model) or `esptool` (the app image made by its
//! `elf2image` and the model, written to a board whose flash already holds an ESP-IDF
//! bootloader and partition table). Both reset the chip into its ROM loader and back by DTR/RTS
//! on the USB-UART bridge. The ESP32-S3 (Xtensa) is not built here: docs/platforms.md.

use std::path::PathBuf;

use abi_stable::std_types::{ROption, RResult};
use labctl_plugin_api::{
    flash::{self, hex, words, Cmd, FlashKeys, Image, Recipe, Tool},
    profile::{usb, Profile, Silicon, UsbRole},
    BoardSessionBox, BoardSpec, PluginError, RailControlBox,
};

labctl_plugin_api::platform_plugin!(
    "esp32",
    "ESP32-C3 boards flashed over their serial port (espflash or esptool), profiled on UART0",
    profile_table,
    open_board,
);

const IMAGE: Image = Image {
    file: "labctl-fw-esp32",
    target: "riscv32imc-unknown-none-elf",
    variant: None,
};
const APP_ADDR: u32 = 0x1_0000;
const MODEL_ADDR: u32 = 0x11_0000;
const PROFILES: &[&str] = &["esp32c3-devkitm"];

/// The partition table espflash writes: ESP-IDF's default layout with a 1 MiB app and the rest
/// of a 4 MiB flash as the model partition (a data partition of a custom subtype).
const PARTITIONS: &str = "# Name, Type, SubType, Offset, Size, Flags
nvs, data, nvs, 0x9000, 0x6000,
phy_init, data, phy, 0xf000, 0x1000,
factory, app, factory, 0x10000, 0x100000,
model, data, 0x40, 0x110000, 0x2f0000,
";

pub const TOOLS: &[Tool] = &[
    Tool {
        name: "espflash",
        program: "espflash",
        install: "cargo install espflash",
    },
    Tool {
        name: "esptool",
        program: "esptool.py",
        install: "pip install esptool",
    },
];

pub fn profile_table() -> Vec<Profile> {
    vec![Silicon {
        name: "esp32c3-devkitm",
        description: "ESP32-C3-DevKitM-1 (and boards like it): ESP32-C3 (RV32IMC) at 160 MHz, 400 KiB SRAM, 4 MiB flash (model partition at 0x110000, mapped at 0x3C400000); console on UART0 through the board's CP2102 / CH343 bridge, flashed over the same port",
        cpu: "RISC-V RV32IMC",
        clock_hz: 160_000_000,
        kib: (400, 0, 4096),
        usb: usb(&[
            (0x10c4, 0xea60, UsbRole::Console),
            (0x1a86, 0x55d3, UsbRole::Console),
        ]),
        banner: "esp32c3",
        counter: "the core's performance counter (mpccr) on the 160 MHz CPU clock",
    }
    .profile()]
}

struct Flasher {
    tool: &'static Tool,
    program: String,
    port: String,
    image: PathBuf,
    partitions: PathBuf,
    app_bin: PathBuf,
    model: String,
}

impl Flasher {
    fn new(spec: &BoardSpec, profile: &str) -> Result<Flasher, PluginError> {
        let keys = FlashKeys::of(spec)?;
        let tool = keys.pick("esp32", TOOLS)?;
        let scratch = |f: &str| flash::scratch("esp32", spec.board.as_str(), f);
        Ok(Flasher {
            tool,
            program: keys.program(tool),
            port: spec.serial.to_string(),
            image: IMAGE.require(spec.firmware.as_str(), profile)?,
            partitions: scratch("partitions.csv"),
            app_bin: scratch("labctl-fw-esp32.bin"),
            model: spec.model.to_string(),
        })
    }

    fn espflash(&self, sub: &str) -> Vec<String> {
        words(&[
            &self.program,
            sub,
            "--chip",
            "esp32c3",
            "--port",
            &self.port,
        ])
    }

    fn esptool(&self, rest: &[&str]) -> Vec<String> {
        [
            words(&[&self.program, "--chip", "esp32c3", "--port", &self.port]),
            words(rest),
        ]
        .concat()
    }
}

impl Recipe for Flasher {
    fn install(&self) -> &str {
        self.tool.install
    }

    fn prepare(&self) -> Result<(), PluginError> {
        if self.tool.name == "espflash" {
            flash::write_file(&self.partitions, PARTITIONS.as_bytes())?;
        }
        Ok(())
    }

    fn commands(&self) -> Vec<Cmd> {
        let img = self.image.display().to_string();
        if self.tool.name == "espflash" {
            return vec![
                Cmd::new(
                    [
                        self.espflash("flash"),
                        words(&[
                            "--partition-table",
                            &self.partitions.display().to_string(),
                            &img,
                        ]),
                    ]
                    .concat(),
                    "bootloader, labctl's partition table and the app image",
                ),
                Cmd::new(
                    [
                        self.espflash("write-bin"),
                        words(&[&hex(MODEL_ADDR), &self.model]),
                    ]
                    .concat(),
                    "the model into its partition, then a reset into the app",
                ),
            ];
        }
        let bin = self.app_bin.display().to_string();
        vec![
            Cmd::new(
                words(&[
                    &self.program,
                    "--chip",
                    "esp32c3",
                    "elf2image",
                    "--output",
                    &bin,
                    &img,
                ]),
                "the app image from the ELF",
            ),
            Cmd::new(
                self.esptool(&[
                    "write_flash",
                    &hex(APP_ADDR),
                    &bin,
                    &hex(MODEL_ADDR),
                    &self.model,
                ]),
                "the app into the factory partition and the model into its partition (the board's ESP-IDF bootloader and partition table stay)",
            ),
        ]
    }

    fn reset(&self) -> Option<Cmd> {
        let argv = if self.tool.name == "espflash" {
            self.espflash("reset")
        } else {
            self.esptool(&["run"])
        };
        Some(Cmd::new(
            argv,
            "the chip reset by DTR/RTS on its serial port",
        ))
    }
}

extern "C" fn open_board(
    spec: &BoardSpec,
    _rail: ROption<RailControlBox>,
) -> RResult<BoardSessionBox, PluginError> {
    flash::open(spec, "esp32", PROFILES, |p| p, |s, p| Flasher::new(s, p))
}
