//! The `nrf52` platform plugin: the nRF52840-DK running the `nrf52` port, flashed over SWD
//! through the DK's on-board J-Link with `nrfjprog` (the default; it programs Intel HEX, so the
//! image's flash segments and the model at 0x20000 are written as `.hex` files first), or with
//! `probe-rs` or `openocd`. The image goes first with a full chip erase (which also clears an
//! access-port protection left by other firmware), the model after it with a sector erase, then
//! the chip is reset. The console is UARTE0 on the J-Link's virtual COM port.

use std::path::{Path, PathBuf};

use abi_stable::std_types::{ROption, RResult};
use labctl_plugin_api::{
    flash::{self, words, Cmd, FlashKeys, Image, Recipe, Tool},
    profile::{usb, Profile, Silicon, UsbRole},
    BoardSessionBox, BoardSpec, PluginError, RailControlBox,
};

labctl_plugin_api::platform_plugin!(
    "nrf52",
    "nRF52840 boards flashed over SWD (nrfjprog, probe-rs or openocd), profiled on their serial console",
    profile_table,
    open_board,
);

const IMAGE: Image = Image {
    file: "labctl-fw-nrf52",
    target: "thumbv7em-none-eabihf",
    variant: None,
};
const FLASH_BYTES: u32 = 1 << 20;
const MODEL_ADDR: u32 = 0x0002_0000;
const PROBE_RS_CHIP: &str = "nRF52840_xxAA";
const PROFILES: &[&str] = &["nrf52840-dk"];

pub const TOOLS: &[Tool] = &[
    Tool {
        name: "nrfjprog",
        program: "nrfjprog",
        install: "Nordic's nRF Command Line Tools (nordicsemi.com), with SEGGER's J-Link software",
    },
    Tool {
        name: "probe-rs",
        program: "probe-rs",
        install: "cargo install probe-rs-tools, or see probe.rs",
    },
    Tool {
        name: "openocd",
        program: "openocd",
        install: "apt-get install openocd",
    },
];

pub fn profile_table() -> Vec<Profile> {
    vec![Silicon {
        name: "nrf52840-dk",
        description: "nRF52840-DK (PCA10056): nRF52840 (Cortex-M4F) at 64 MHz, 256 KiB RAM, 1 MiB flash (model from 0x20000, read in place); console on UARTE0 (P0.06 TX, P0.08 RX) through the on-board J-Link's virtual COM port, flashed through the same J-Link",
        cpu: "Cortex-M4F",
        clock_hz: 64_000_000,
        kib: (256, 0, 1024),
        usb: usb(&[
            (0x1366, 0x1015, UsbRole::Probe),
            (0x1366, 0x1015, UsbRole::Console),
        ]),
        banner: "nrf52840",
        counter: "the core's SysTick on the 64 MHz clock",
    }
    .profile()]
}

struct Flasher {
    tool: &'static Tool,
    program: String,
    probe_serial: Option<String>,
    image: PathBuf,
    image_hex: PathBuf,
    model_hex: PathBuf,
    model: String,
}

impl Flasher {
    fn new(spec: &BoardSpec, profile: &str) -> Result<Flasher, PluginError> {
        let keys = FlashKeys::of(spec)?;
        let tool = keys.pick("nrf52", TOOLS)?;
        let scratch = |f: &str| flash::scratch("nrf52", spec.board.as_str(), f);
        Ok(Flasher {
            tool,
            program: keys.program(tool),
            probe_serial: keys.probe_serial,
            image: IMAGE.require(spec.firmware.as_str(), profile)?,
            image_hex: scratch("labctl-fw-nrf52.hex"),
            model_hex: scratch("model.hex"),
            model: spec.model.to_string(),
        })
    }

    fn nrfjprog(&self, rest: &[&str]) -> Vec<String> {
        let mut v = words(&[&self.program, "-f", "NRF52"]);
        if let Some(sn) = &self.probe_serial {
            v.extend(["--snr".into(), sn.clone()]);
        }
        v.extend(words(rest));
        v
    }

    fn openocd(&self) -> Vec<String> {
        let mut v = words(&[
            &self.program,
            "-f",
            "interface/jlink.cfg",
            "-c",
            "transport select swd",
            "-f",
            "target/nrf52.cfg",
        ]);
        if let Some(sn) = &self.probe_serial {
            v.extend(["-c".into(), format!("adapter serial {sn}")]);
        }
        v
    }
}

impl Recipe for Flasher {
    fn install(&self) -> &str {
        self.tool.install
    }

    fn prepare(&self) -> Result<(), PluginError> {
        if self.tool.name != "nrfjprog" {
            return Ok(());
        }
        let elf = flash::read_file(&self.image)?;
        let segs = flash::segments_of(&elf, &self.image, 0, MODEL_ADDR)?;
        flash::write_file(&self.image_hex, flash::ihex::from_ranges(&segs).as_bytes())?;
        let model = flash::read_file(Path::new(&self.model))?;
        if model.len() > (FLASH_BYTES - MODEL_ADDR) as usize {
            return Err(PluginError::new(
                labctl_plugin_api::ErrorKind::InvalidConfig,
                format!(
                    "the model is {} bytes; the nRF52840's model partition holds {}",
                    model.len(),
                    FLASH_BYTES - MODEL_ADDR
                ),
            ));
        }
        flash::write_file(
            &self.model_hex,
            flash::ihex::from_ranges(&[(MODEL_ADDR, &model)]).as_bytes(),
        )
    }

    fn commands(&self) -> Vec<Cmd> {
        let img = self.image.display().to_string();
        match self.tool.name {
            "nrfjprog" => vec![
                Cmd::new(
                    self.nrfjprog(&[
                        "--program",
                        &self.image_hex.display().to_string(),
                        "--chiperase",
                        "--verify",
                    ]),
                    "the image (as Intel HEX) after a full chip erase, verified",
                ),
                Cmd::new(
                    self.nrfjprog(&[
                        "--program",
                        &self.model_hex.display().to_string(),
                        "--sectorerase",
                        "--verify",
                    ]),
                    "the model (as Intel HEX) into its flash partition, verified",
                ),
                Cmd::new(self.nrfjprog(&["--reset"]), "reset"),
            ],
            "probe-rs" => flash::probe_rs_flash(
                &self.program,
                PROBE_RS_CHIP,
                self.probe_serial.as_deref(),
                &img,
                &self.model,
                MODEL_ADDR,
            ),
            _ => vec![Cmd::new(
                flash::openocd_program(self.openocd(), &img, &self.model, MODEL_ADDR),
                "the image and the model through OpenOCD and the J-Link, verified, then reset",
            )],
        }
    }

    fn reset(&self) -> Option<Cmd> {
        let argv = match self.tool.name {
            "nrfjprog" => self.nrfjprog(&["--reset"]),
            "probe-rs" => flash::probe_rs(
                &self.program,
                "reset",
                PROBE_RS_CHIP,
                self.probe_serial.as_deref(),
            ),
            _ => flash::openocd_reset(self.openocd()),
        };
        Some(Cmd::new(argv, "the chip reset through its debug probe"))
    }
}

extern "C" fn open_board(
    spec: &BoardSpec,
    _rail: ROption<RailControlBox>,
) -> RResult<BoardSessionBox, PluginError> {
    flash::open(spec, "nrf52", PROFILES, |p| p, |s, p| Flasher::new(s, p))
}
