//! The flashing tools and their exact command lines: `st-flash` (stlink-tools; writes raw
//! binaries, so the image's flash segments are laid out as a `.bin` first), `openocd` (ST-LINK
//! interface, the chip family's target script) and `probe-rs`. Each writes the model to its
//! partition, then the image to the start of flash, then resets the chip.

use std::path::PathBuf;

use labctl_plugin_api::{
    flash::{self, hex, words, Cmd, FlashKeys, Image, Recipe, Tool},
    BoardSpec, ErrorKind, PluginError,
};

/// One chip the plugin flashes, with its image's memory map.
pub struct Chip {
    pub profile: &'static str,
    pub image: Image,
    pub flash_base: u32,
    pub flash_bytes: u32,
    pub model_addr: u32,
    pub openocd_target: &'static str,
    pub probe_rs_chip: &'static str,
}

pub const TOOLS: &[Tool] = &[
    Tool {
        name: "st-flash",
        program: "st-flash",
        install: "apt-get install stlink-tools",
    },
    Tool {
        name: "openocd",
        program: "openocd",
        install: "apt-get install openocd",
    },
    Tool {
        name: "probe-rs",
        program: "probe-rs",
        install: "cargo install probe-rs-tools, or see probe.rs",
    },
];

/// A board's flashing: the tool, its program, the files.
pub struct Flasher {
    tool: &'static Tool,
    program: String,
    probe_serial: Option<String>,
    image: PathBuf,
    /// Where the `.bin` of the image goes (st-flash).
    bin: PathBuf,
    model: String,
    chip: &'static Chip,
}

impl Flasher {
    pub fn new(spec: &BoardSpec, chip: &'static Chip) -> Result<Flasher, PluginError> {
        let keys = FlashKeys::of(spec)?;
        let tool = keys.pick("stm32", TOOLS)?;
        let image = chip.image.require(spec.firmware.as_str(), chip.profile)?;
        Ok(Flasher {
            tool,
            program: keys.program(tool),
            probe_serial: keys.probe_serial,
            image,
            bin: flash::scratch(
                "stm32",
                spec.board.as_str(),
                &format!("{}.bin", chip.image.file),
            ),
            model: spec.model.to_string(),
            chip,
        })
    }

    fn st_flash(&self) -> Vec<String> {
        let mut v = vec![self.program.clone()];
        if let Some(sn) = &self.probe_serial {
            v.extend(["--serial".to_string(), sn.clone()]);
        }
        v
    }

    fn openocd(&self) -> Vec<String> {
        let mut v = vec![
            self.program.clone(),
            "-f".into(),
            "interface/stlink.cfg".into(),
        ];
        v.extend(["-f".into(), self.chip.openocd_target.into()]);
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
        if self.tool.name != "st-flash" {
            return Ok(());
        }
        let elf = std::fs::read(&self.image).map_err(|e| {
            PluginError::new(ErrorKind::Io, format!("{}: {e}", self.image.display()))
        })?;
        let bin = flash::elf::flash_image(&elf, self.chip.flash_base, self.chip.flash_bytes)
            .map_err(|e| {
                PluginError::new(
                    ErrorKind::InvalidConfig,
                    format!("{}: {e}", self.image.display()),
                )
            })?;
        flash::write_file(&self.bin, &bin)
    }

    fn commands(&self) -> Vec<Cmd> {
        let c = self.chip;
        let img = self.image.display().to_string();
        match self.tool.name {
            "st-flash" => vec![
                Cmd::new(
                    [self.st_flash(), words(&["write", &self.model, &hex(c.model_addr)])].concat(),
                    "the model into its flash partition",
                ),
                Cmd::new(
                    [
                        self.st_flash(),
                        words(&[
                            "--reset",
                            "write",
                            &self.bin.display().to_string(),
                            &hex(c.flash_base),
                        ]),
                    ]
                    .concat(),
                    "the firmware image (its flash segments as a .bin) at the start of flash, then reset",
                ),
            ],
            "openocd" => vec![Cmd::new(
                flash::openocd_program(self.openocd(), &img, &self.model, c.model_addr),
                "the image and the model through OpenOCD, verified, then reset",
            )],
            _ => flash::probe_rs_flash(
                &self.program,
                c.probe_rs_chip,
                self.probe_serial.as_deref(),
                &img,
                &self.model,
                c.model_addr,
            ),
        }
    }

    fn reset(&self) -> Option<Cmd> {
        let argv = match self.tool.name {
            "st-flash" => [self.st_flash(), words(&["reset"])].concat(),
            "openocd" => flash::openocd_reset(self.openocd()),
            _ => flash::probe_rs(
                &self.program,
                "reset",
                self.chip.probe_rs_chip,
                self.probe_serial.as_deref(),
            ),
        };
        Some(Cmd::new(argv, "the chip reset through its debug probe"))
    }
}
