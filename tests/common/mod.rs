//! Helpers for the integration tests: where the built `labctl` and plugin libraries are, running
//! the binary, and scratch labs in temporary directories.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

/// The cargo target profile directory holding `labctl` and the plugin libraries
/// (the test executable lives in its `deps/`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf();
    assert!(
        dir.join("labctl").exists(),
        "{} has no labctl: run `cargo build --workspace` before `cargo test --workspace`",
        dir.display()
    );
    dir
}

pub fn labctl_path() -> PathBuf {
    bin_dir().join("labctl")
}

/// The repository root. `cargo test` sets CARGO_MANIFEST_DIR at run time too; that one wins over
/// the compile-time value, which is stale when a shared target directory holds a binary built
/// from another checkout.
pub fn repo() -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    dir.parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

pub fn labctl() -> Command {
    let mut c = Command::new(labctl_path());
    c.env_remove("LABCTL_LAB").env("LABCTL_LOG", "warn");
    c
}

/// Runs labctl with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    labctl().args(args).output().expect("run labctl")
}

/// Runs labctl with `args` and asserts it succeeded (the message shows its stderr).
pub fn run_ok(args: &[&str]) -> Output {
    let o = run(args);
    assert!(o.status.success(), "labctl {args:?}: {}", text(&o).1);
    o
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A copy of the virtual lab in a fresh temporary directory (so its database and relay state
/// are the test's own); plugins are found beside labctl.
pub fn virtual_lab() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = dir.path().join("virtual-lab.toml");
    std::fs::copy(repo().join("lab-config/examples/virtual-lab.toml"), &lab)
        .expect("copy virtual lab");
    (dir, lab)
}

/// The path of a built plugin library by crate library name.
pub fn plugin_lib(lib_name: &str) -> PathBuf {
    let p = bin_dir().join(format!("lib{lib_name}.so"));
    assert!(p.exists(), "{} not built", p.display());
    p
}

/// A golden file from `tests/golden/` with `$BIN` (labctl's directory), `$TARGET` (the cargo
/// target directory) and `$DIR` (the test's lab directory) filled in.
pub fn golden(name: &str, dir: &Path) -> String {
    let bin = bin_dir();
    let target = bin.parent().expect("target/<profile>").to_path_buf();
    std::fs::read_to_string(repo().join("tests/golden").join(name))
        .expect("golden file")
        .replace("$BIN", &bin.display().to_string())
        .replace("$TARGET", &target.display().to_string())
        .replace("$DIR", &dir.display().to_string())
}

/// Whether an outside program a test needs is there (`check` is a shell command that succeeds
/// when it is). Without it the test says why and skips, unless LAB_REQUIRE_EXTERNAL=1 (CI), where
/// it fails.
pub fn have(check: &str, why_missing: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", check])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        missing(why_missing);
    }
    found
}

/// Whether a file the build makes outside `cargo build --workspace` (a bare-metal image from
/// `firmware/ports/build.sh`) is there, with [`have`]'s rule when it is not.
pub fn have_built(path: &Path, why_missing: &str) -> bool {
    let found = path.is_file();
    if !found {
        missing(why_missing);
    }
    found
}

/// Something a test needs is not here: fails under LAB_REQUIRE_EXTERNAL=1, else says why the
/// test skips.
pub fn missing(why: &str) {
    if std::env::var("LAB_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
        panic!("{why}, and LAB_REQUIRE_EXTERNAL=1");
    }
    eprintln!("skipping: {why}");
}

/// A results database opened read-only, as users' tools open it.
pub fn open_ro(db: &Path) -> duckdb::Connection {
    duckdb::Connection::open_with_flags(
        db,
        duckdb::Config::default()
            .access_mode(duckdb::AccessMode::ReadOnly)
            .expect("read-only config"),
    )
    .unwrap_or_else(|e| panic!("open {} read-only: {e}", db.display()))
}

/// A socat-linked pty pair: labctl opens `host`, the stand-in chip sits on `board`.
pub struct Line {
    socat: std::process::Child,
    pub host: PathBuf,
    pub board: PathBuf,
}

impl Line {
    /// The posix firmware on the line's board end, holding `model` and answering as
    /// `platform`, with `args` (its clock, memories and context).
    pub fn firmware(&self, model: &Path, platform: &str, args: &[&str]) -> std::process::Child {
        Command::new(bin_dir().join("labctl-fw-posix"))
            .args(["--model", model.to_str().unwrap()])
            .args(["--serial", self.board.to_str().unwrap()])
            .args(["--platform", platform])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    }

    pub fn new(dir: &Path, name: &str) -> Line {
        let (board, host) = (
            dir.join(format!("{name}-chip")),
            dir.join(format!("{name}-tty")),
        );
        let socat = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", board.display()))
            .arg(format!("pty,raw,echo=0,link={}", host.display()))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(board.exists() && host.exists()) {
            assert!(Instant::now() < deadline, "socat's pty links");
            std::thread::sleep(Duration::from_millis(10));
        }
        Line { socat, host, board }
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let _ = self.socat.kill();
        let _ = self.socat.wait();
    }
}

/// Loadable segments of a little-endian ELF32 or ELF64: (physical address, file bytes, memory
/// bytes, file offset).
pub fn elf_segments(elf: &[u8]) -> Vec<(u64, u64, u64, u64)> {
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u64::from(u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()));
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
    let wide = elf[4] == 2;
    let (phoff, phentsize, phnum) = if wide {
        (u64_at(32) as usize, u16_at(54), u16_at(56))
    } else {
        (u32_at(28) as usize, u16_at(42), u16_at(44))
    };
    (0..phnum)
        .map(|i| phoff + i * phentsize)
        .filter(|&h| u32_at(h) == 1)
        .map(|h| {
            if wide {
                (
                    u64_at(h + 24),
                    u64_at(h + 32),
                    u64_at(h + 40),
                    u64_at(h + 8),
                )
            } else {
                (
                    u32_at(h + 12),
                    u32_at(h + 16),
                    u32_at(h + 20),
                    u32_at(h + 4),
                )
            }
        })
        .collect()
}

/// A `[[boards]]` block of a lab file.
pub fn board_block(
    name: &str,
    platform: &str,
    profile: &str,
    serial: &Path,
    extra: &str,
) -> String {
    format!(
        "[[boards]]\nname = \"{name}\"\nplatform = \"{platform}\"\nprofile = \"{profile}\"\nserial = \"{}\"\n{extra}\n",
        serial.display()
    )
}

/// socat, for the tests that link pty pairs ([`Line`]).
pub fn have_socat() -> bool {
    have(
        "command -v socat",
        "socat is not installed (apt-get install socat)",
    )
}

/// `labctl --lab LAB run ARGS…`, which must exit 1 (some board faulted).
pub fn run_failing(lab: &Path, args: &[&str]) {
    let o = labctl()
        .args(["--lab", lab.to_str().unwrap(), "run"])
        .args(args)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
}

/// A vendor tool ran the command line labctl generated and failed for want of a device, in its
/// own words — not because the command line was wrong.
pub fn assert_no_device_not_usage(tool: &str, why: &str) {
    assert!(why.contains(&format!("{tool} failed")), "{why}");
    let lower = why.to_ascii_lowercase();
    assert!(
        !lower.contains("usage")
            && !lower.contains("unknown option")
            && !lower.contains("invalid command")
            && !lower.contains("couldn't open"),
        "the generated command line is one {tool} takes: {why}"
    );
}

/// The labctl-fw-posix children of `parent` (the virtual boards' firmware).
pub fn firmware_children(parent: u32) -> Vec<i32> {
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces, so split after the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && head.contains("labctl-fw-posi") {
            out.push(pid);
        }
    }
    out
}

/// kill(2) on a process the test started (or its child).
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: a plain signal to a pid; no memory is involved.
    unsafe { libc::kill(pid, sig) };
}
