//! The `sbc` platform plugin: single-board computers (Raspberry Pi, Jetson, any Linux machine)
//! reached over SSH with OpenSSH's own `ssh` and `scp`. Key authentication only, the host key
//! checked against `known_hosts` (`StrictHostKeyChecking=yes`, nothing is ever accepted on first
//! use), no password or keyboard prompts (`BatchMode`), the user's ssh config ignored (`-F none`)
//! so the lab file says everything. Bootstrap checks the board's architecture against the
//! firmware's, copies the posix firmware and the model to `~/.cache/labctl/<board>/`, and runs
//! the firmware there with its stdin/stdout on the SSH channel, which this plugin joins to the
//! pseudo-terminal the host made: the host speaks the serial protocol as to any board.

mod ssh;

use std::{
    io::Read,
    process::{Child, Stdio},
    sync::{Arc, Mutex},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RNone, ROption, RResult, RSome, RString, RVec},
};
use labctl_plugin_api::{
    guard,
    profile::{memories, ConsoleKind, Profile, Timing, TimingSource},
    BoardSession, BoardSessionBox, BoardSession_TO, BoardSpec, ErrorKind, PluginError,
    RailControlBox, Step,
};

use ssh::Target;

labctl_plugin_api::platform_plugin!(
    "sbc",
    "single-board computers over SSH: the posix firmware deployed and run on the board, its serial protocol on the SSH channel",
    profile_table,
    open_board,
);

/// Memory from the boards' product briefs; the microSD/eMMC is the "flash" the model lives on.
pub fn profile_table() -> Vec<Profile> {
    let p = |name: &str,
             description: &str,
             cpu: &str,
             clock_hz: u64,
             ram_mib: u64,
             storage_gib: u64| {
        Profile {
        name: name.into(),
        description: description.into(),
        cpu: cpu.into(),
        clock_hz,
        memories: memories(ram_mib * 1024, 0, storage_gib * 1024 * 1024),
        supply_mv: 5000.0,
        idle_ma: 0.0,
        active_ma: 0.0,
        usb: vec![],
        timing: Timing {
            source: TimingSource::Board,
            counter_hz: 0,
            note: "the board's own clock: the posix firmware times itself on the SBC (CLOCK_MONOTONIC)".into(),
        },
        emulated: false,
        console: ConsoleKind::Channel,
        banner: None,
    }
    };
    vec![
        p("rpi4", "Raspberry Pi 4 Model B: 4 × Cortex-A72 at 1.5 GHz, 4 GB LPDDR4 (1/2/8 GB models too), model on the microSD card", "Cortex-A72", 1_500_000_000, 4096, 32),
        p("rpi5", "Raspberry Pi 5: 4 × Cortex-A76 at 2.4 GHz, 8 GB LPDDR4X", "Cortex-A76", 2_400_000_000, 8192, 32),
        p("jetson-orin-nano", "NVIDIA Jetson Orin Nano: 6 × Cortex-A78AE at 1.5 GHz, 8 GB LPDDR5 (the GPU is not used: the firmware runs on the CPU)", "Cortex-A78AE", 1_500_000_000, 8192, 64),
        p("generic", "any Linux computer reachable over SSH (1 GiB budgeted; the firmware runs on its CPU)", "host CPU", 1_000_000_000, 1024, 8),
    ]
}

/// One SBC session: the deploy steps, then `ssh … firmware` on the host's pty.
struct SbcBoard {
    spec: BoardSpec,
    profile: Profile,
    target: Target,
    child: Option<Child>,
    /// The last line ssh wrote to stderr (why a connection ended).
    last_err: Arc<Mutex<String>>,
}

fn failed(kind: ErrorKind, why: impl Into<String>) -> PluginError {
    PluginError::new(kind, why.into())
}

impl SbcBoard {
    /// The firmware's command line on the board.
    fn remote_argv(&self) -> Vec<String> {
        let p = &self.profile;
        let dir = self.target.remote_dir(&self.spec.board);
        vec![
            format!("{dir}/labctl-fw-posix"),
            "--model".into(),
            format!("{dir}/{}", ssh::remote_name(self.spec.model.as_str())),
            "--platform".into(),
            p.name.clone(),
            "--clock-hz".into(),
            p.clock_hz.max(1).to_string(),
            "--ram".into(),
            (p.sram_bytes() + p.psram_bytes()).to_string(),
            "--flash".into(),
            p.flash_bytes().to_string(),
            "--ctx".into(),
            self.spec.ctx_tokens.max(1).to_string(),
            // The SoC's sensor on a Pi or a Jetson; where the file is missing, no TEMP frames.
            "--thermal".into(),
            "/sys/class/thermal/thermal_zone0/temp".into(),
        ]
    }

    fn firmware(&self) -> String {
        self.target
            .firmware
            .clone()
            .unwrap_or_else(|| self.spec.firmware.to_string())
    }

    /// Every step with its exact command line, in order.
    fn steps(&self) -> Vec<Step> {
        let t = &self.target;
        let dir = t.remote_dir(&self.spec.board);
        let mkdir = vec!["mkdir".to_string(), "-p".into(), dir.clone()];
        let mut start = vec!["exec".to_string()];
        start.extend(self.remote_argv());
        let arch = vec!["uname".to_string(), "-m".into()];
        vec![
            Step::new(
                "flash",
                &t.ssh(&arch),
                "the board's architecture, over SSH (key authentication, host key checked)",
            ),
            Step::new("flash", &t.ssh(&mkdir), "the deploy directory on the board"),
            Step::new(
                "flash",
                &t.scp(&[self.firmware(), self.spec.model.to_string()], &dir),
                "the posix firmware and the model, copied to the board",
            ),
            Step::new(
                "start",
                &t.ssh_channel(&start),
                "the firmware on the board, its serial protocol on the SSH channel joined to the console pty",
            ),
        ]
    }

    fn deploy(&mut self) -> Result<(), PluginError> {
        let t = self.target.clone();
        let arch = t.run(&["uname", "-m"])?;
        let ours = ssh::elf_arch(std::path::Path::new(&self.firmware()));
        match (ours, arch.trim()) {
            (Some(mine), theirs) if mine != theirs => {
                return Err(failed(
                    ErrorKind::InvalidConfig,
                    format!(
                        "{} is {theirs}; the posix firmware {} is built for {mine}: build it for the board (docs/install-pi.md) and name it with `firmware = …` in the lab file",
                        t.dest(),
                        self.firmware()
                    ),
                ))
            }
            (None, _) => {
                return Err(failed(
                    ErrorKind::InvalidConfig,
                    format!("{} is not a Linux ELF program", self.firmware()),
                ))
            }
            _ => {}
        }
        let dir = t.remote_dir(&self.spec.board);
        t.run(&["mkdir", "-p", &dir])?;
        t.copy(&[self.firmware(), self.spec.model.to_string()], &dir)?;
        let fw = format!("{dir}/{}", ssh::remote_name(&self.firmware()));
        if !fw.ends_with("/labctl-fw-posix") {
            t.run(&["mv", "-f", &fw, &format!("{dir}/labctl-fw-posix")])?;
        }
        Ok(())
    }

    fn start(&mut self) -> Result<(), PluginError> {
        if self.child.is_some() {
            return Ok(());
        }
        self.deploy()?;
        let mut remote = vec!["exec".to_string()];
        remote.extend(self.remote_argv());
        let argv = self.target.ssh_channel(&remote);
        let pty = ssh::open_raw(self.spec.serial.as_str()).map_err(|e| {
            failed(
                ErrorKind::Io,
                format!("console pty {}: {e}", self.spec.serial),
            )
        })?;
        let out = pty
            .try_clone()
            .map_err(|e| failed(ErrorKind::Io, format!("console pty: {e}")))?;
        let mut child = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::from(pty))
            .stdout(Stdio::from(out))
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                let kind = if e.kind() == std::io::ErrorKind::NotFound {
                    ErrorKind::MissingTool
                } else {
                    ErrorKind::Io
                };
                failed(kind, format!("ssh: {e} (apt-get install openssh-client)"))
            })?;
        if let Some(mut err) = child.stderr.take() {
            let last = self.last_err.clone();
            let _ = std::thread::Builder::new()
                .name(format!("ssh-{}", self.spec.board))
                .spawn(move || {
                    let mut buf = String::new();
                    let mut chunk = [0u8; 512];
                    while let Ok(n) = err.read(&mut chunk) {
                        if n == 0 {
                            break;
                        }
                        buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
                        if let Some(l) = buf.lines().rev().find(|l| !l.trim().is_empty()) {
                            *last.lock().unwrap_or_else(|p| p.into_inner()) = l.trim().to_string();
                        }
                        if buf.len() > 8192 {
                            buf.drain(..buf.len() - 1024);
                        }
                    }
                });
        }
        self.child = Some(child);
        Ok(())
    }

    fn stop(&mut self) {
        labctl_plugin_api::child::stop(&mut self.child);
    }
}

impl BoardSession for SbcBoard {
    fn plan(&self) -> RVec<Step> {
        RVec::from(self.steps())
    }

    fn bootstrap(&mut self) -> RResult<RVec<Step>, PluginError> {
        guard(|| self.start().map(|_| RVec::from(self.steps())))
    }

    fn console_path(&mut self) -> ROption<RString> {
        RNone
    }

    fn reset(&mut self) -> RResult<Step, PluginError> {
        RResult::RErr(PluginError::new(
            ErrorKind::Unsupported,
            "an SBC session is reset by restarting the firmware (power-cycle it with a relay to reboot the computer)",
        ))
    }

    fn power_off(&mut self) -> RResult<(), PluginError> {
        guard(|| {
            self.stop();
            Ok(())
        })
    }

    fn check(&mut self) -> ROption<RString> {
        let Some(c) = self.child.as_mut() else {
            return RNone;
        };
        match c.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                let last = self
                    .last_err
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let mut why = format!("the SSH session to {} ended ({status})", self.target.dest());
                if !last.is_empty() {
                    why.push_str(": ");
                    why.push_str(&last);
                }
                RSome(why.into())
            }
            _ => RNone,
        }
    }
}

impl Drop for SbcBoard {
    fn drop(&mut self) {
        self.stop();
    }
}

extern "C" fn open_board(
    spec: &BoardSpec,
    _rail: ROption<RailControlBox>,
) -> RResult<BoardSessionBox, PluginError> {
    guard(|| {
        let profile = spec.profile()?;
        let target = Target::from_options(spec.options.as_str())?;
        let board = SbcBoard {
            spec: spec.clone(),
            profile,
            target,
            child: None,
            last_err: Arc::new(Mutex::new(String::new())),
        };
        Ok(BoardSession_TO::from_value(board, TD_Opaque))
    })
}
