//! The flashing tools and their exact command lines: `st-flash` (stlink-tools; writes raw
//! binaries, so the image's flash segments are laid out as a `.bin` first), `openocd` (ST-LINK
//! interface, the chip family's target script) and `probe-rs`. Each writes the model to its
//! partition, then the image to the start of flash, then resets the chip. A tool that is not
//! installed, or that fails (no probe attached, a probe that cannot reach the chip), faults the
//! board with what to install or the tool's own words.

use std::path::{Path, PathBuf};

use labctl_plugin_api::{BoardSpec, ErrorKind, PluginError, Step};

/// One chip the plugin flashes, with its image's memory map.
pub struct Chip {
    pub profile: &'static str,
    /// The `stm32` port's image file name and the Rust target it is built for.
    pub image: &'static str,
    pub target: &'static str,
    /// The cargo target directory's subfolder the image is built in, for a chip built with
    /// other features than the port's default (`fw-stm32f411`), and the suffix it carries when
    /// installed beside labctl (`labctl-fw-stm32-f411`).
    pub variant: Option<(&'static str, &'static str)>,
    pub flash_base: u32,
    pub flash_bytes: u32,
    pub model_addr: u32,
    pub openocd_target: &'static str,
    pub probe_rs_chip: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    StFlash,
    OpenOcd,
    ProbeRs,
}

impl Tool {
    fn parse(s: &str) -> Option<Tool> {
        match s {
            "st-flash" => Some(Tool::StFlash),
            "openocd" => Some(Tool::OpenOcd),
            "probe-rs" => Some(Tool::ProbeRs),
            _ => None,
        }
    }
    fn program(self) -> &'static str {
        match self {
            Tool::StFlash => "st-flash",
            Tool::OpenOcd => "openocd",
            Tool::ProbeRs => "probe-rs",
        }
    }
    fn install(self) -> &'static str {
        match self {
            Tool::StFlash => "apt-get install stlink-tools",
            Tool::OpenOcd => "apt-get install openocd",
            Tool::ProbeRs => "cargo install probe-rs-tools, or see probe.rs",
        }
    }
}

#[derive(serde::Deserialize, Default)]
struct FlashOptions {
    tool: Option<String>,
    program: Option<String>,
    probe_serial: Option<String>,
}

#[derive(serde::Deserialize)]
struct Options {
    flash: Option<FlashOptions>,
}

/// A board's flashing: the tool, its program, the files.
pub struct Flasher {
    tool: Tool,
    program: String,
    probe_serial: Option<String>,
    image: PathBuf,
    /// Where the `.bin` of the image goes (st-flash).
    bin: PathBuf,
    model: String,
    chip: &'static Chip,
}

fn hex(a: u32) -> String {
    format!("{a:#010x}")
}

/// The `stm32` image near the posix firmware the host found: beside it, in its `firmware/`
/// folder, or (in a cargo target directory) where `cargo build --release --target …` put it.
fn find_image(posix_firmware: &str, chip: &Chip) -> Option<PathBuf> {
    let dir = Path::new(posix_firmware).parent()?;
    let file = match chip.variant {
        Some((_, suffix)) => format!("{}-{suffix}", chip.image),
        None => chip.image.to_string(),
    };
    let mut c = vec![dir.join(&file), dir.join("firmware").join(&file)];
    if let Some(target) = dir.parent() {
        let target = match chip.variant {
            Some((sub, _)) => target.join(sub),
            None => target.to_path_buf(),
        };
        c.push(target.join(chip.target).join("release").join(chip.image));
    }
    c.into_iter().find(|p| p.is_file())
}

fn err(kind: ErrorKind, why: String) -> PluginError {
    PluginError::new(kind, why)
}

impl Flasher {
    pub fn new(spec: &BoardSpec, chip: &'static Chip) -> Result<Flasher, PluginError> {
        let o: Options = serde_json::from_str(spec.options.as_str()).map_err(|e| {
            err(
                ErrorKind::InvalidConfig,
                format!("unreadable board options: {e}"),
            )
        })?;
        let f = o.flash.unwrap_or_default();
        let tool = match f.tool.as_deref() {
            None => Tool::StFlash,
            Some(t) => Tool::parse(t).ok_or_else(|| {
                err(
                    ErrorKind::InvalidConfig,
                    format!("flash_tool {t:?}: the stm32 platform flashes with st-flash, openocd or probe-rs"),
                )
            })?,
        };
        let image = find_image(spec.firmware.as_str(), chip).ok_or_else(|| {
            err(
                ErrorKind::InvalidConfig,
                format!(
                    "the {} image for {} is not built: bash firmware/ports/build.sh",
                    chip.image, chip.profile
                ),
            )
        })?;
        let bin = std::env::temp_dir()
            .join(format!("labctl-stm32-{}", safe(spec.board.as_str())))
            .join(format!("{}.bin", chip.image));
        Ok(Flasher {
            tool,
            program: f.program.unwrap_or_else(|| tool.program().to_string()),
            probe_serial: f.probe_serial,
            image,
            bin,
            model: spec.model.to_string(),
            chip,
        })
    }

    /// The command lines, in order: model, image, reset.
    fn commands(&self) -> Vec<(Vec<String>, &'static str)> {
        let c = self.chip;
        let p = self.program.clone();
        let img = self.image.display().to_string();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
        match self.tool {
            Tool::StFlash => {
                let mut base = vec![p];
                if let Some(sn) = &self.probe_serial {
                    base.extend(["--serial".to_string(), sn.clone()]);
                }
                let with = |rest: Vec<String>| [base.clone(), rest].concat();
                vec![
                    (
                        with(s(&["write", &self.model, &hex(c.model_addr)])),
                        "the model into its flash partition",
                    ),
                    (
                        with(s(&[
                            "--reset",
                            "write",
                            &self.bin.display().to_string(),
                            &hex(c.flash_base),
                        ])),
                        "the firmware image (its flash segments as a .bin) at the start of flash, then reset",
                    ),
                ]
            }
            Tool::OpenOcd => {
                let mut v = vec![p, "-f".into(), "interface/stlink.cfg".into()];
                v.extend(["-f".into(), c.openocd_target.into()]);
                if let Some(sn) = &self.probe_serial {
                    v.extend(["-c".into(), format!("adapter serial {sn}")]);
                }
                v.extend([
                    "-c".into(),
                    format!("program {img} verify"),
                    "-c".into(),
                    format!("program {} verify {}", self.model, hex(c.model_addr)),
                    "-c".into(),
                    "reset run".into(),
                    "-c".into(),
                    "shutdown".into(),
                ]);
                vec![(
                    v,
                    "the image and the model through OpenOCD, verified, then reset",
                )]
            }
            Tool::ProbeRs => {
                let mut chip = vec!["--chip".to_string(), c.probe_rs_chip.to_string()];
                if let Some(sn) = &self.probe_serial {
                    chip.extend(["--probe".into(), sn.clone()]);
                }
                let cmd = |sub: &str, rest: Vec<String>| {
                    [vec![p.clone(), sub.to_string()], chip.clone(), rest].concat()
                };
                vec![
                    (
                        cmd(
                            "download",
                            s(&[
                                "--binary-format",
                                "bin",
                                "--base-address",
                                &hex(c.model_addr),
                                &self.model,
                            ]),
                        ),
                        "the model into its flash partition",
                    ),
                    (cmd("download", vec![img]), "the firmware image"),
                    (cmd("reset", vec![]), "reset"),
                ]
            }
        }
    }

    pub fn steps(&self) -> Vec<Step> {
        self.commands()
            .into_iter()
            .map(|(argv, note)| Step::new("flash", &argv, note))
            .collect()
    }

    fn run(&self, argv: &[String]) -> Result<(), PluginError> {
        let o = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    err(
                        ErrorKind::MissingTool,
                        format!("{} is not installed ({})", argv[0], self.tool.install()),
                    )
                } else {
                    err(ErrorKind::Io, format!("{}: {e}", argv[0]))
                }
            })?;
        if o.status.success() {
            return Ok(());
        }
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        // The tool's own words: its last error line, or its last line.
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let why = lines
            .iter()
            .rev()
            .find(|l| l.to_ascii_lowercase().contains("error") || l.contains("found"))
            .or(lines.last())
            .copied()
            .unwrap_or("no message");
        Err(err(
            ErrorKind::Io,
            format!("{} failed ({}): {why}", argv[0], o.status),
        ))
    }

    /// Writes the model and the image and resets the chip; the steps it ran.
    pub fn flash(&self) -> Result<Vec<Step>, PluginError> {
        if self.tool == Tool::StFlash {
            let elf = std::fs::read(&self.image)
                .map_err(|e| err(ErrorKind::Io, format!("{}: {e}", self.image.display())))?;
            let bin = crate::elf::flash_image(&elf, self.chip.flash_base, self.chip.flash_bytes)
                .map_err(|e| {
                    err(
                        ErrorKind::InvalidConfig,
                        format!("{}: {e}", self.image.display()),
                    )
                })?;
            if let Some(d) = self.bin.parent() {
                std::fs::create_dir_all(d)
                    .map_err(|e| err(ErrorKind::Io, format!("{}: {e}", d.display())))?;
            }
            std::fs::write(&self.bin, bin)
                .map_err(|e| err(ErrorKind::Io, format!("{}: {e}", self.bin.display())))?;
        }
        for (argv, _) in self.commands() {
            self.run(&argv)?;
        }
        Ok(self.steps())
    }

    /// Resets the chip through the probe.
    pub fn reset(&self) -> Result<Step, PluginError> {
        let argv: Vec<String> = match self.tool {
            Tool::StFlash => {
                let mut v = vec![self.program.clone()];
                if let Some(sn) = &self.probe_serial {
                    v.extend(["--serial".into(), sn.clone()]);
                }
                v.push("reset".into());
                v
            }
            Tool::OpenOcd => vec![
                self.program.clone(),
                "-f".into(),
                "interface/stlink.cfg".into(),
                "-f".into(),
                self.chip.openocd_target.into(),
                "-c".into(),
                "init".into(),
                "-c".into(),
                "reset run".into(),
                "-c".into(),
                "shutdown".into(),
            ],
            Tool::ProbeRs => vec![
                self.program.clone(),
                "reset".into(),
                "--chip".into(),
                self.chip.probe_rs_chip.into(),
            ],
        };
        self.run(&argv)?;
        Ok(Step::new(
            "reset",
            &argv,
            "the chip reset through its debug probe",
        ))
    }
}

fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
