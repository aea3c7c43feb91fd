//! The tty lock: one process owns a serial port at a time. Two locks, because other tools use
//! either: an exclusive `flock` on the device (picocom, tio) and a UUCP-style `LCK..<name>` file
//! holding the owner's pid (minicom, ModemManager-aware tools), in `/run/lock` (or `/var/lock`;
//! the temporary directory when neither is writable). A port that is busy names its holder: the
//! pid and command line from the lock file, or any process that has the device open.

use std::{
    fs::File,
    io::Write,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

/// A held lock file; removed when dropped.
pub struct TtyLock {
    device: PathBuf,
    file: Option<PathBuf>,
}

/// The directory for `LCK..` files, under `LABCTL_SYSROOT` when set (tests).
fn lock_dir() -> PathBuf {
    let root = super::usb::Sysroot::from_env();
    ["/run/lock", "/var/lock"]
        .into_iter()
        .map(|d| root.path(d))
        .find(|d| writable(d))
        .unwrap_or_else(std::env::temp_dir)
}

fn writable(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: access with a NUL-terminated path.
    dir.is_dir() && unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0
}

/// `LCK..ttyACM0` for `/dev/ttyACM0`, `LCK..pts_3` for `/dev/pts/3`.
fn lock_name(device: &Path) -> String {
    let s = device.to_string_lossy();
    let rel = s
        .strip_prefix("/dev/")
        .unwrap_or_else(|| device.file_name().and_then(|n| n.to_str()).unwrap_or("tty"));
    format!("LCK..{}", rel.replace('/', "_"))
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 checks for existence only.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// `pid 1234 (labctl --lab lab.toml run)`.
fn describe(pid: i32) -> String {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    if cmd.is_empty() {
        format!("pid {pid}")
    } else {
        format!("pid {pid} ({cmd})")
    }
}

/// Processes other than this one that have `device` open (bounded scan of /proc).
fn openers(device: &Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = vec![];
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten().take(65_536) {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .take(4096)
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == device))
        {
            out.push(pid);
        }
    }
    out
}

fn busy(shown: &Path, holder: String) -> String {
    format!(
        "serial port {} is in use by {holder}; stop it or wait for it to finish",
        shown.display()
    )
}

impl TtyLock {
    /// Takes the lock file for the device behind `path` (links followed). A live owner's lock is
    /// refused naming it; a dead owner's is taken over.
    pub fn take(path: &Path) -> Result<TtyLock, String> {
        let device = std::fs::canonicalize(path).map_err(|e| {
            format!(
                "serial port {}: {e} (is the board plugged in? `labctl discover` lists what is attached)",
                path.display()
            )
        })?;
        let file = lock_dir().join(lock_name(&device));
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&file)
            {
                Ok(mut f) => {
                    // UUCP/HDB format: the pid in ten columns and a newline.
                    let _ = writeln!(f, "{:>10}", std::process::id());
                    return Ok(TtyLock {
                        device,
                        file: Some(file),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid = std::fs::read_to_string(&file)
                        .ok()
                        .and_then(|s| s.trim().parse::<i32>().ok())
                        .unwrap_or(0);
                    if alive(pid) {
                        return Err(busy(path, describe(pid)));
                    }
                    // Stale: its owner is gone.
                    let _ = std::fs::remove_file(&file);
                }
                // No lock directory we may write: the flock below still guards the port.
                Err(_) => break,
            }
        }
        Ok(TtyLock { device, file: None })
    }

    /// Takes the `flock` on the opened device; it is released when the file closes.
    pub fn hold(&self, f: &File) -> Result<(), String> {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let holders: Vec<String> = openers(&self.device).into_iter().map(describe).collect();
        Err(busy(
            &self.device,
            if holders.is_empty() {
                "another process (it holds the port's flock)".into()
            } else {
                holders.join(", ")
            },
        ))
    }
}

impl Drop for TtyLock {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            let _ = std::fs::remove_file(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_file_names_follow_uucp() {
        assert_eq!(lock_name(Path::new("/dev/ttyACM0")), "LCK..ttyACM0");
        assert_eq!(lock_name(Path::new("/dev/pts/3")), "LCK..pts_3");
    }

    #[test]
    fn a_second_taker_is_told_the_holder_and_a_stale_lock_is_taken_over() {
        let pty = crate::console::Pty::open().unwrap();
        let path = PathBuf::from(&pty.slave_path);
        let first = TtyLock::take(&path).unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        first.hold(&f).unwrap();
        // A second flock on another open file description of the same device is refused.
        let g = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let err = first.hold(&g).unwrap_err();
        assert!(err.contains("in use by"), "{err}");
        let lockfile = first.file.clone().unwrap();
        // The lock file is ours (our own pid is alive): a second take names this process.
        let err = TtyLock::take(&path).err().unwrap();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(!lockfile.exists());
        // A lock left by a process that is gone is taken over.
        std::fs::write(&lockfile, format!("{:>10}\n", 999_999_999)).unwrap();
        let again = TtyLock::take(&path).unwrap();
        drop(again);
    }
}
