//! The `qemu` platform plugin: boards that are QEMU machines running the bare-metal firmware
//! (`firmware/ports/qemu-mps2`, `firmware/ports/qemu-riscv`) on a real instruction set. Power on =
//! start `qemu-system-arm`, `qemu-system-riscv64` or `qemu-system-riscv32` with the board's
//! serial line on a pseudo-terminal QEMU makes (`-serial pty`; the host opens it by name, with the
//! same code that opens a real board's `/dev/ttyACM0`) and the model loaded into the
//! flash partition; `-icount` makes virtual time follow the instruction count, so the firmware's
//! cycle counts are deterministic. Wall-clock timings of these boards are QEMU's speed on the
//! host; the `cycles` columns are the meaningful figures (docs/simulation.md).

use std::{
    io::{BufRead, BufReader},
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::Duration,
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RNone, ROption, RResult, RSome, RString, RVec},
};
use labctl_plugin_api::{
    child::which,
    guard,
    profile::{memories, ConsoleKind, Profile, Timing, TimingSource},
    BoardSession, BoardSessionBox, BoardSession_TO, BoardSpec, ErrorKind, PluginError,
    RailControlBox, Step,
};

/// One kind of QEMU board.
struct Machine {
    profile: &'static str,
    description: &'static str,
    cpu: &'static str,
    clock_hz: u64,
    ram_kib: u64,
    flash_kib: u64,
    /// The emulator program and its machine arguments.
    qemu: &'static str,
    args: &'static [&'static str],
    /// The bare-metal image's file name and the Rust target it is built for: found beside
    /// `labctl`, in its `firmware/` folder, or (in a cargo target directory) where
    /// `cargo build --release --target …` put it.
    image: &'static str,
    target: &'static str,
    /// Where the model partition starts (the image's linker script says the same).
    model_addr: &'static str,
    /// The image built with the DSP-extension kernels (`--features dsp`), kept apart from the
    /// plain one: `<image>-dsp` beside labctl, or cargo's `fw-dsp` target directory.
    dsp: bool,
}

/// Where the DSP variant of an image is built (`--target-dir <target>/fw-dsp`).
const DSP_TARGET_DIR: &str = "fw-dsp";

/// A Cortex-M board on one of QEMU's mps2 machines (4 MiB SRAM, 4 MiB code memory).
const fn mps2(
    profile: &'static str,
    description: &'static str,
    cpu: &'static str,
    clock_hz: u64,
    machine: &'static [&'static str],
    dsp: bool,
) -> Machine {
    Machine {
        profile,
        description,
        cpu,
        clock_hz,
        ram_kib: 4096,
        flash_kib: 4096,
        qemu: "qemu-system-arm",
        args: machine,
        image: "labctl-fw-qemu-mps2",
        target: "thumbv7em-none-eabihf",
        model_addr: "0x00100000",
        dsp,
    }
}

/// A RISC-V board on QEMU's virt machine.
const fn virt(
    profile: &'static str,
    description: &'static str,
    cpu: &'static str,
    clock_hz: u64,
    (ram_kib, flash_kib): (u64, u64),
    qemu: &'static str,
    target: &'static str,
) -> Machine {
    Machine {
        profile,
        description,
        cpu,
        clock_hz,
        ram_kib,
        flash_kib,
        qemu,
        args: &["-M", "virt", "-bios", "none"],
        image: "labctl-fw-qemu-riscv",
        target,
        model_addr: "0x86000000",
        dsp: false,
    }
}

const AN386: &[&str] = &["-M", "mps2-an386"];
const AN500: &[&str] = &["-M", "mps2-an500"];
const DSP_NOTE: &str =
    "the same board running the firmware built with the DSP-extension kernels (SMLAD)";

const MACHINES: &[Machine] = &[
    mps2(
        "cortex-m4-168",
        "Cortex-M4F class (QEMU mps2-an386), 4 MiB SRAM, 4 MiB code memory",
        "Cortex-M4F",
        168_000_000,
        AN386,
        false,
    ),
    mps2(
        "cortex-m7-216",
        "Cortex-M7 class (QEMU mps2-an500), 4 MiB SRAM, 4 MiB code memory",
        "Cortex-M7",
        216_000_000,
        AN500,
        false,
    ),
    virt(
        "riscv64-k210-400",
        "RV64GC, Kendryte K210 class (QEMU virt), 8 MiB of the machine's RAM budgeted like a K210's 6 MiB general SRAM + 2 MiB AI SRAM, model in a flash partition",
        "RV64GC",
        400_000_000,
        (8192, 16384),
        "qemu-system-riscv64",
        "riscv64gc-unknown-none-elf",
    ),
    virt(
        "riscv32-bl602-192",
        "RV32IMAFC, Bouffalo BL602 class (QEMU virt, 32-bit): 276 KB SRAM budget (200 KB of it the firmware's arena), model in a 4 MiB flash partition",
        "RV32IMAFC",
        192_000_000,
        (276, 4096),
        "qemu-system-riscv32",
        "riscv32imafc-unknown-none-elf",
    ),
    // The `stm32` port's image, the one a real STM32F405 board is flashed with, on the
    // STM32F405 SoC QEMU models (USARTs and SysTick; no RCC, flash interface or DWT).
    Machine {
        profile: "stm32f405",
        description: "STM32F405 (QEMU netduinoplus2) running the stm32 port's image: 1 MiB flash (model in sectors 5-11), 128 KiB main SRAM, console on USART1",
        cpu: "Cortex-M4F",
        clock_hz: 168_000_000,
        ram_kib: 128,
        flash_kib: 1024,
        qemu: "qemu-system-arm",
        args: &["-M", "netduinoplus2"],
        image: "labctl-fw-stm32",
        target: "thumbv7em-none-eabihf",
        model_addr: "0x08020000",
        dsp: false,
    },
    mps2("cortex-m4-168-dsp", DSP_NOTE, "Cortex-M4F", 168_000_000, AN386, true),
    mps2("cortex-m7-216-dsp", DSP_NOTE, "Cortex-M7", 216_000_000, AN500, true),
];

labctl_plugin_api::platform_plugin!(
    "qemu",
    "emulated MCUs: the bare-metal firmware on Cortex-M4F/M7, RV64GC and RV32IMAFC under QEMU with -icount",
    profile_table,
    open_board,
);

pub fn profile_table() -> Vec<Profile> {
    MACHINES
        .iter()
        .map(|m| Profile {
            name: m.profile.into(),
            description: m.description.into(),
            cpu: m.cpu.into(),
            clock_hz: m.clock_hz,
            memories: memories(m.ram_kib, 0, m.flash_kib),
            supply_mv: 3300.0,
            idle_ma: 0.0,
            active_ma: 0.0,
            usb: vec![],
            timing: Timing {
                source: TimingSource::EmulatedCycles,
                // The counter's rate is what the firmware reports in READY (SysTick on
                // Cortex-M, instructions on RISC-V).
                counter_hz: 0,
                note: "QEMU with -icount, virtual time follows the instruction count; not a real chip's timing".into(),
            },
            emulated: true,
            console: ConsoleKind::Emulator,
            banner: None,
        })
        .collect()
}

/// Finds the bare-metal image near the posix firmware the host found (its directory is where
/// labctl keeps firmware).
fn find_image(posix_firmware: &str, m: &Machine) -> Option<PathBuf> {
    let dir = Path::new(posix_firmware).parent()?;
    let file = if m.dsp {
        format!("{}-dsp", m.image)
    } else {
        m.image.to_string()
    };
    let mut candidates = vec![dir.join(&file), dir.join("firmware").join(&file)];
    if let Some(target) = dir.parent() {
        let target = if m.dsp {
            target.join(DSP_TARGET_DIR)
        } else {
            target.to_path_buf()
        };
        candidates.push(target.join(m.target).join("release").join(m.image));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// The command that builds a machine's image where [`find_image`] looks.
fn build_hint(m: &Machine) -> String {
    let port = m.image.trim_start_matches("labctl-fw-");
    let mut cmd = format!(
        "cargo build --release --manifest-path firmware/ports/{port}/Cargo.toml --target {}",
        m.target
    );
    if m.dsp {
        cmd += &format!(
            " --features dsp --target-dir \"${{CARGO_TARGET_DIR:-target}}/{DSP_TARGET_DIR}\""
        );
    } else {
        cmd += " --target-dir \"${CARGO_TARGET_DIR:-target}\"";
    }
    cmd
}

struct QemuBoard {
    machine: &'static Machine,
    image: PathBuf,
    spec: BoardSpec,
    child: Option<Child>,
    died: Option<String>,
    /// The pty QEMU made for the board's UART.
    console: Option<String>,
    /// The last line QEMU wrote to stderr (for the reason when it dies).
    last_err: Arc<Mutex<String>>,
}

/// How long QEMU may take to say where it put the serial line.
const CONSOLE_WAIT: Duration = Duration::from_secs(10);

impl QemuBoard {
    fn start(&mut self) -> Result<(), PluginError> {
        if self.child.is_some() {
            return Ok(());
        }
        self.died = None;
        self.console = None;
        let m = self.machine;
        if which(m.qemu).is_none() {
            return Err(PluginError::new(
                ErrorKind::MissingTool,
                format!("{} is not installed: {}", m.qemu, install_hint(m)),
            ));
        }
        let argv = self.argv();
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| PluginError::new(ErrorKind::Io, format!("starting {}: {e}", m.qemu)))?;
        // QEMU names the pty it made on stdout ("char device redirected to /dev/pts/3 (label
        // serial0)"). Threads keep both pipes drained so they never fill, and keep the last
        // line of stderr for the reason when QEMU dies.
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let last = self.last_err.clone();
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                .spawn(f)
                .map(|_| ())
                .map_err(|e| PluginError::new(ErrorKind::Io, format!("qemu pipe thread: {e}")))
        };
        spawn(
            format!("qemu-out-{}", self.spec.board),
            Box::new(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.split("redirected to ").nth(1) {
                        let path = rest.split_whitespace().next().unwrap_or("").to_string();
                        let _ = tx.send(path);
                    }
                }
            }),
        )?;
        spawn(
            format!("qemu-err-{}", self.spec.board),
            Box::new(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if !line.trim().is_empty() {
                        *last.lock().unwrap_or_else(|p| p.into_inner()) = line.trim().to_string();
                    }
                }
            }),
        )?;
        self.child = Some(child);
        match rx.recv_timeout(CONSOLE_WAIT) {
            Ok(path) if !path.is_empty() => {
                self.console = Some(path);
                Ok(())
            }
            _ => {
                // It may have just failed: give its exit a moment to show.
                std::thread::sleep(Duration::from_millis(100));
                let why = self
                    .check_child()
                    .unwrap_or_else(|| format!("{} did not say where its serial line is", m.qemu));
                self.stop();
                Err(PluginError::new(ErrorKind::Io, why))
            }
        }
    }

    /// The emulator's command line.
    fn argv(&self) -> Vec<String> {
        let m = self.machine;
        let mut v: Vec<String> = std::iter::once(m.qemu)
            .chain(m.args.iter().copied())
            .chain([
                "-display", "none", "-monitor", "none", "-serial", "pty", "-kernel",
            ])
            .map(String::from)
            .collect();
        v.push(self.image.display().to_string());
        v.push("-device".into());
        v.push(format!(
            "loader,file={},addr={}",
            self.spec.model, m.model_addr
        ));
        v.extend(["-icount", "shift=0,align=off,sleep=off"].map(String::from));
        v
    }

    fn step(&self) -> Step {
        Step::new(
            "start",
            &self.argv(),
            "QEMU with the bare-metal image, the model loaded at the flash partition, its UART on a pty it makes",
        )
    }

    /// `Some(reason)` once QEMU has exited by itself.
    fn check_child(&mut self) -> Option<String> {
        let c = self.child.as_mut()?;
        let status = c.try_wait().ok()??;
        self.child = None;
        let mut why = match (status.code(), status.signal()) {
            (Some(code), _) => format!("qemu exited with status {code}"),
            (None, Some(sig)) => format!("qemu killed by signal {sig}"),
            _ => "qemu exited".to_string(),
        };
        let last = self
            .last_err
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !last.is_empty() {
            why.push_str(": ");
            why.push_str(&last);
        }
        Some(why)
    }

    fn stop(&mut self) {
        labctl_plugin_api::child::stop(&mut self.child);
    }
}

/// What to install for a machine's emulator (Debian package names).
fn install_hint(m: &Machine) -> &'static str {
    if m.qemu == "qemu-system-arm" {
        "apt-get install qemu-system-arm"
    } else {
        "apt-get install qemu-system-misc"
    }
}

impl BoardSession for QemuBoard {
    fn plan(&self) -> RVec<Step> {
        RVec::from(vec![self.step()])
    }

    fn bootstrap(&mut self) -> RResult<RVec<Step>, PluginError> {
        guard(|| self.start().map(|_| RVec::from(vec![self.step()])))
    }

    fn console_path(&mut self) -> ROption<RString> {
        match &self.console {
            Some(p) => RSome(p.as_str().into()),
            None => RNone,
        }
    }

    fn reset(&mut self) -> RResult<Step, PluginError> {
        RResult::RErr(PluginError::new(
            ErrorKind::Unsupported,
            "a QEMU board is reset by restarting it",
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
        match self.check_child() {
            Some(why) => {
                self.died = Some(why.clone());
                RSome(why.into())
            }
            None => RNone,
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
        // A QEMU machine emulates one of its own profiles: the machine is what it runs.
        let profile = spec.profile()?;
        let machine = MACHINES
            .iter()
            .find(|m| m.profile == profile.name)
            .ok_or_else(|| {
                PluginError::new(
                    ErrorKind::InvalidConfig,
                    format!(
                        "the qemu platform emulates its own profiles, not {:?}",
                        profile.name
                    ),
                )
            })?;
        let image = find_image(spec.firmware.as_str(), machine).ok_or_else(|| {
            PluginError::new(
                ErrorKind::InvalidConfig,
                format!(
                    "bare-metal image {}{} not found beside labctl: build the images with \
                     `bash firmware/ports/build.sh`, or this one with {}",
                    machine.image,
                    if machine.dsp { " (DSP kernels)" } else { "" },
                    build_hint(machine)
                ),
            )
        })?;
        let board = QemuBoard {
            machine,
            image,
            spec: spec.clone(),
            child: None,
            died: None,
            console: None,
            last_err: Arc::new(Mutex::new(String::new())),
        };
        Ok(BoardSession_TO::from_value(board, TD_Opaque))
    })
}
