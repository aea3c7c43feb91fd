//! What every platform that flashes real boards with a vendor's tool does the same way, so that
//! a platform plugin is its profiles and its tools' command lines: the board's flashing keys
//! (`flash_tool`, `flash_program`, `probe_serial`), finding the port's image beside labctl or in
//! the cargo target directory, running a tool (a missing one faults the board with what to
//! install, a failing one with its own last error line), and a board session that flashes on
//! bootstrap and resets through the tool. The images a tool needs in another form come from
//! [`elf`] (raw `.bin`, and the image-then-model payload of chips flashed as one file),
//! [`ihex`] and [`uf2`].

pub mod elf;
pub mod ihex;
pub mod uf2;

use std::path::{Path, PathBuf};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RNone, ROption, RResult, RString, RVec},
};

use crate::{
    guard, BoardSession, BoardSessionBox, BoardSession_TO, BoardSpec, ErrorKind, PluginError, Step,
};

/// A board's flashing keys from the lab file.
#[derive(serde::Deserialize, Default, Debug, Clone)]
pub struct FlashKeys {
    pub tool: Option<String>,
    pub program: Option<String>,
    pub probe_serial: Option<String>,
}

#[derive(serde::Deserialize)]
struct Options {
    flash: Option<FlashKeys>,
}

impl FlashKeys {
    pub fn of(spec: &BoardSpec) -> Result<FlashKeys, PluginError> {
        let o: Options = serde_json::from_str(spec.options.as_str()).map_err(|e| {
            PluginError::new(
                ErrorKind::InvalidConfig,
                format!("unreadable board options: {e}"),
            )
        })?;
        Ok(o.flash.unwrap_or_default())
    }

    /// The tool the lab file names (`flash_tool`) among `tools`, or the first (the default).
    pub fn pick<'t>(&self, platform: &str, tools: &'t [Tool]) -> Result<&'t Tool, PluginError> {
        match self.tool.as_deref() {
            None => Ok(&tools[0]),
            Some(t) => tools.iter().find(|k| k.name == t).ok_or_else(|| {
                PluginError::new(
                    ErrorKind::InvalidConfig,
                    format!(
                        "flash_tool {t:?}: the {platform} platform flashes with {}",
                        tools.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
                    ),
                )
            }),
        }
    }

    /// The tool's program: `flash_program`, or the tool's own name on PATH.
    pub fn program(&self, tool: &Tool) -> String {
        self.program
            .clone()
            .unwrap_or_else(|| tool.program.to_string())
    }
}

/// A flashing tool: the `flash_tool` name, the program run, and how to install it.
#[derive(Debug)]
pub struct Tool {
    pub name: &'static str,
    pub program: &'static str,
    pub install: &'static str,
}

/// A bare-metal port's image: its file name, the Rust target it is built for, and for a chip
/// built with other features than the port's default, the cargo target directory's subfolder
/// it is built in (`fw-stm32f411`) and the suffix it carries installed beside labctl
/// (`labctl-fw-stm32-f411`).
#[derive(Debug)]
pub struct Image {
    pub file: &'static str,
    pub target: &'static str,
    pub variant: Option<(&'static str, &'static str)>,
}

impl Image {
    /// The image near the posix firmware the host found: beside it, in its `firmware/` folder,
    /// or (in a cargo target directory) where `cargo build --release --target …` put it.
    pub fn find(&self, posix_firmware: &str) -> Option<PathBuf> {
        let dir = Path::new(posix_firmware).parent()?;
        let file = match self.variant {
            Some((_, suffix)) => format!("{}-{suffix}", self.file),
            None => self.file.to_string(),
        };
        let mut c = vec![dir.join(&file), dir.join("firmware").join(&file)];
        if let Some(target) = dir.parent() {
            let target = match self.variant {
                Some((sub, _)) => target.join(sub),
                None => target.to_path_buf(),
            };
            c.push(target.join(self.target).join("release").join(self.file));
        }
        c.into_iter().find(|p| p.is_file())
    }

    /// [`Image::find`], or the error that tells the user to build it.
    pub fn require(&self, posix_firmware: &str, profile: &str) -> Result<PathBuf, PluginError> {
        self.find(posix_firmware).ok_or_else(|| {
            PluginError::new(
                ErrorKind::InvalidConfig,
                format!(
                    "the {} image for {profile} is not built: bash firmware/ports/build.sh",
                    self.file
                ),
            )
        })
    }
}

/// `0x08020000`.
pub fn hex(a: u32) -> String {
    format!("{a:#010x}")
}

/// A file labctl derives for a board's tool (a `.bin`, a `.uf2`): in the temporary directory,
/// one folder per platform and board.
pub fn scratch(platform: &str, board: &str, file: &str) -> PathBuf {
    std::env::temp_dir()
        .join(format!("labctl-{platform}-{}", crate::safe_name(board)))
        .join(file)
}

/// Writes a derived file, creating its folder.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), PluginError> {
    let io = |p: &Path, e: std::io::Error| {
        PluginError::new(ErrorKind::Io, format!("{}: {e}", p.display()))
    };
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| io(d, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| io(path, e))
}

/// Reads a file the recipe converts (the ELF image, the model).
pub fn read_file(path: &Path) -> Result<Vec<u8>, PluginError> {
    std::fs::read(path)
        .map_err(|e| PluginError::new(ErrorKind::Io, format!("{}: {e}", path.display())))
}

/// The flash segments of the ELF at `path` within `base..base + size`, or why not.
pub fn segments_of<'e>(
    elf: &'e [u8],
    path: &Path,
    base: u32,
    size: u32,
) -> Result<Vec<(u32, &'e [u8])>, PluginError> {
    elf::flash_segments(elf, base, size)
        .map_err(|e| PluginError::new(ErrorKind::InvalidConfig, format!("{}: {e}", path.display())))
}

/// OpenOCD after its interface and target options (`base`): the image (an ELF) and the model
/// at `model_addr`, both verified, then a reset and exit.
pub fn openocd_program(
    base: Vec<String>,
    image: &str,
    model: &str,
    model_addr: u32,
) -> Vec<String> {
    [
        base,
        words(&[
            "-c",
            &format!("program {image} verify"),
            "-c",
            &format!("program {model} verify {}", hex(model_addr)),
            "-c",
            "reset run",
            "-c",
            "shutdown",
        ]),
    ]
    .concat()
}

/// OpenOCD resetting the chip: `base` (interface and target), then init, reset, exit.
pub fn openocd_reset(base: Vec<String>) -> Vec<String> {
    [
        base,
        words(&["-c", "init", "-c", "reset run", "-c", "shutdown"]),
    ]
    .concat()
}

/// One probe-rs subcommand for `chip`, on the probe `probe_serial` names.
pub fn probe_rs(program: &str, sub: &str, chip: &str, probe_serial: Option<&str>) -> Vec<String> {
    let mut v = words(&[program, sub, "--chip", chip]);
    if let Some(sn) = probe_serial {
        v.extend(["--probe".into(), sn.to_string()]);
    }
    v
}

/// probe-rs writing the model (raw) at `model_addr`, then the image (an ELF), then a reset.
pub fn probe_rs_flash(
    program: &str,
    chip: &str,
    probe_serial: Option<&str>,
    image: &str,
    model: &str,
    model_addr: u32,
) -> Vec<Cmd> {
    let pr = |sub: &str| probe_rs(program, sub, chip, probe_serial);
    vec![
        Cmd::new(
            [
                pr("download"),
                words(&[
                    "--binary-format",
                    "bin",
                    "--base-address",
                    &hex(model_addr),
                    model,
                ]),
            ]
            .concat(),
            "the model into its flash partition",
        ),
        Cmd::new(
            [pr("download"), words(&[image])].concat(),
            "the firmware image",
        ),
        Cmd::new(pr("reset"), "reset"),
    ]
}

/// One command line of a flashing plan and what it does.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub argv: Vec<String>,
    pub note: String,
}

impl Cmd {
    pub fn new(argv: Vec<String>, note: &str) -> Cmd {
        Cmd {
            argv,
            note: note.into(),
        }
    }
}

/// `["a", "b"]` as owned strings.
pub fn words(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Runs one tool; a program that is not there is [`ErrorKind::MissingTool`] with `install`, a
/// failure is the tool's own last error line (or last line).
pub fn run(argv: &[String], install: &str) -> Result<(), PluginError> {
    let o = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                PluginError::new(
                    ErrorKind::MissingTool,
                    format!("{} is not installed ({install})", argv[0]),
                )
            } else {
                PluginError::new(ErrorKind::Io, format!("{}: {e}", argv[0]))
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
    Err(PluginError::new(
        ErrorKind::Io,
        format!("{} failed ({}): {}", argv[0], o.status, last_error(&text)),
    ))
}

/// A tool's own words for what went wrong: its last line that says error or not found, or its
/// last line.
fn last_error(text: &str) -> &str {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .rev()
        .find(|l| l.to_ascii_lowercase().contains("error") || l.contains("found"))
        .or(lines.last())
        .copied()
        .unwrap_or("no message")
}

/// What a platform does to flash one board, with one tool.
pub trait Recipe: Send + 'static {
    /// The tool's program, and how to install it, for [`run`].
    fn install(&self) -> &str;
    /// Writes what the commands read that labctl derives from the image (a `.bin`, a `.uf2`).
    fn prepare(&self) -> Result<(), PluginError> {
        Ok(())
    }
    /// The command lines that put the model and the image on the board and start it, in order.
    fn commands(&self) -> Vec<Cmd>;
    /// The command line that resets the board, where the tool can (`None`: the host uses the
    /// lab file's `reset`).
    fn reset(&self) -> Option<Cmd>;
}

/// A board flashed by a [`Recipe`]: bootstrap flashes, reset goes through the tool, the console
/// is the host's (the lab file's `serial` or `usb_serial`).
struct FlashedBoard<R: Recipe>(R);

fn steps(cmds: Vec<Cmd>) -> RVec<Step> {
    cmds.into_iter()
        .map(|c| Step::new("flash", &c.argv, &c.note))
        .collect()
}

impl<R: Recipe> BoardSession for FlashedBoard<R> {
    fn plan(&self) -> RVec<Step> {
        steps(self.0.commands())
    }

    fn bootstrap(&mut self) -> RResult<RVec<Step>, PluginError> {
        guard(|| {
            self.0.prepare()?;
            let cmds = self.0.commands();
            for c in &cmds {
                run(&c.argv, self.0.install())?;
            }
            Ok(steps(cmds))
        })
    }

    fn reset(&mut self) -> RResult<Step, PluginError> {
        guard(|| match self.0.reset() {
            None => Err(PluginError::new(
                ErrorKind::Unsupported,
                "this board's flashing tool cannot reset it".to_string(),
            )),
            Some(c) => {
                run(&c.argv, self.0.install())?;
                Ok(Step::new("reset", &c.argv, &c.note))
            }
        })
    }

    fn console_path(&mut self) -> ROption<RString> {
        RNone
    }

    fn power_off(&mut self) -> RResult<(), PluginError> {
        RResult::ROk(())
    }

    fn check(&mut self) -> ROption<RString> {
        // Nothing runs on the host between flashing and the console: nothing to die.
        RNone
    }
}

/// The board session of a flashed board.
pub fn session<R: Recipe>(recipe: R) -> BoardSessionBox {
    BoardSession_TO::from_value(FlashedBoard(recipe), TD_Opaque)
}

/// A platform's `open_board`: the entry of `table` for the profile the host handed over, and
/// the flashed-board session of the recipe `make` builds for it.
pub fn open<C, R: Recipe>(
    spec: &BoardSpec,
    platform: &str,
    table: &'static [C],
    name: impl Fn(&C) -> &str,
    make: impl FnOnce(&BoardSpec, &'static C) -> Result<R, PluginError>,
) -> RResult<BoardSessionBox, PluginError> {
    guard(|| {
        let profile = spec.profile()?;
        let entry = chip_for(platform, &profile.name, table, name)?;
        Ok(session(make(spec, entry)?))
    })
}

/// The entry of `table` whose profile the host handed over, or the error that lists them.
pub fn chip_for<'t, C>(
    platform: &str,
    profile: &str,
    table: &'t [C],
    name: impl Fn(&C) -> &str,
) -> Result<&'t C, PluginError> {
    table.iter().find(|c| name(c) == profile).ok_or_else(|| {
        PluginError::new(
            ErrorKind::InvalidConfig,
            format!(
                "the {platform} platform flashes {}; profile {profile:?} is not one of them",
                table.iter().map(&name).collect::<Vec<_>>().join(", ")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tools_last_error_line_is_its_reason() {
        assert_eq!(
            last_error("Open On-Chip Debugger\nError: open failed\nin procedure 'init'\n"),
            "Error: open failed"
        );
        assert_eq!(last_error("one\ntwo\n\n"), "two");
        assert_eq!(last_error(""), "no message");
    }

    #[test]
    fn a_missing_program_names_what_to_install() {
        let e = run(
            &words(&["/nonexistent/labctl-flasher"]),
            "apt-get install x",
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::MissingTool);
        assert!(e.message.contains("apt-get install x"), "{}", e.message);
    }
}
