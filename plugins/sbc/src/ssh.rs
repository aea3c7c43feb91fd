//! The SSH side of an SBC session: the target from the board's lab keys, OpenSSH command lines
//! that take nothing from the user's ssh config and accept no unknown host key, running and
//! copying with a clear reason on failure, and the pieces a deploy needs (remote names, the
//! firmware's architecture, the console pty in raw mode).

use std::{
    fs::File,
    os::unix::{fs::OpenOptionsExt, io::AsRawFd},
    path::Path,
    process::Command,
};

use labctl_plugin_api::safe_name as safe;
use labctl_plugin_api::{ErrorKind, PluginError};

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity: String,
    pub known_hosts: Option<String>,
    pub firmware: Option<String>,
}

#[derive(serde::Deserialize)]
struct Options {
    ssh: Option<Target>,
}

/// A word for the remote shell, single-quoted.
fn quote(w: &str) -> String {
    format!("'{}'", w.replace('\'', r"'\''"))
}

/// The name a local file gets on the board.
pub fn remote_name(path: &str) -> String {
    safe(
        &Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into()),
    )
}

/// What `uname -m` says on the machine an ELF program is built for.
pub fn elf_arch(path: &Path) -> Option<&'static str> {
    let mut head = [0u8; 20];
    let mut f = File::open(path).ok()?;
    std::io::Read::read_exact(&mut f, &mut head).ok()?;
    if &head[..4] != b"\x7fELF" {
        return None;
    }
    Some(match u16::from_le_bytes([head[18], head[19]]) {
        0x3e => "x86_64",
        0xb7 => "aarch64",
        0x28 => "armv7l",
        0xf3 => "riscv64",
        _ => "unknown",
    })
}

/// Opens the host's console pty and puts it in raw mode (no echo, no line editing, no newline
/// translation): the SSH channel carries the protocol's bytes as they are.
pub fn open_raw(path: &str) -> std::io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)?;
    // SAFETY: tcgetattr/tcsetattr on a descriptor we own, with a termios we initialise.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(f.as_raw_fd(), &mut t) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::cfmakeraw(&mut t);
        if libc::tcsetattr(f.as_raw_fd(), libc::TCSANOW, &t) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(f)
}

fn fail(kind: ErrorKind, why: String) -> PluginError {
    PluginError::new(kind, why)
}

impl Target {
    /// The target from [`labctl_plugin_api::BoardSpec::options`].
    pub fn from_options(json: &str) -> Result<Target, PluginError> {
        let o: Options = serde_json::from_str(json).map_err(|e| {
            fail(
                ErrorKind::InvalidConfig,
                format!("unreadable board options: {e}"),
            )
        })?;
        o.ssh.ok_or_else(|| {
            fail(
                ErrorKind::InvalidConfig,
                "an sbc board needs `host`, `user` and `identity` in the lab file".into(),
            )
        })
    }

    /// `user@host:port`, for messages.
    pub fn dest(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }

    pub fn remote_dir(&self, board: &str) -> String {
        format!(".cache/labctl/{}", safe(board))
    }

    /// Options both `ssh` and `scp` take: no user config, keys only, the host key checked.
    fn common(&self) -> Vec<String> {
        let mut v: Vec<String> = [
            "-F",
            "none",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "PasswordAuthentication=no",
            "-o",
            "KbdInteractiveAuthentication=no",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(k) = &self.known_hosts {
            v.extend([
                "-o".into(),
                format!("UserKnownHostsFile={k}"),
                "-o".into(),
                "GlobalKnownHostsFile=/dev/null".into(),
            ]);
        }
        v.extend(["-i".into(), self.identity.clone()]);
        v
    }

    fn login(&self) -> String {
        format!("{}@{}", self.user, self.host)
    }

    /// `ssh … -- 'word' 'word'…` running `remote` in the board's shell, no pty.
    pub fn ssh(&self, remote: &[String]) -> Vec<String> {
        let mut v = vec!["ssh".to_string()];
        v.extend(self.common());
        v.extend([
            "-p".into(),
            self.port.to_string(),
            "-T".into(),
            self.login(),
            "--".into(),
        ]);
        v.push(
            remote
                .iter()
                .map(|w| quote(w))
                .collect::<Vec<_>>()
                .join(" "),
        );
        v
    }

    /// [`Target::ssh`] for the protocol channel: also no escape character, so every byte is
    /// data.
    pub fn ssh_channel(&self, remote: &[String]) -> Vec<String> {
        let mut v = self.ssh(remote);
        v.splice(1..1, ["-e".to_string(), "none".into()]);
        v
    }

    /// `scp … FILES user@host:DIR/`
    pub fn scp(&self, files: &[String], dir: &str) -> Vec<String> {
        let mut v = vec!["scp".to_string(), "-q".into()];
        v.extend(self.common());
        v.extend(["-P".into(), self.port.to_string()]);
        v.extend(files.iter().cloned());
        v.push(format!("{}:{dir}/", self.login()));
        v
    }

    fn exec(&self, argv: &[String]) -> Result<String, PluginError> {
        let o = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| {
                let kind = if e.kind() == std::io::ErrorKind::NotFound {
                    ErrorKind::MissingTool
                } else {
                    ErrorKind::Io
                };
                fail(
                    kind,
                    format!("{}: {e} (apt-get install openssh-client)", argv[0]),
                )
            })?;
        if o.status.success() {
            return Ok(String::from_utf8_lossy(&o.stdout).into_owned());
        }
        let err = String::from_utf8_lossy(&o.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message")
            .trim();
        Err(fail(
            ErrorKind::Io,
            format!("{} {}: {last} ({})", argv[0], self.dest(), o.status),
        ))
    }

    /// Runs a command on the board and returns its output.
    pub fn run(&self, words: &[&str]) -> Result<String, PluginError> {
        let remote: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        self.exec(&self.ssh(&remote))
    }

    /// Copies local files into a directory on the board.
    pub fn copy(&self, files: &[String], dir: &str) -> Result<(), PluginError> {
        self.exec(&self.scp(files, dir)).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_quote_and_check_everything() {
        let t = Target::from_options(
            r#"{"ssh":{"host":"pi.local","port":2222,"user":"lab","identity":"/k/id","known_hosts":"/k/kh","firmware":null}}"#,
        )
        .unwrap();
        let v = t.ssh_channel(&["exec".into(), "a b".into(), "it's".into()]);
        assert_eq!(&v[..3], ["ssh", "-e", "none"]);
        assert!(v.contains(&"StrictHostKeyChecking=yes".to_string()));
        assert!(v.contains(&"UserKnownHostsFile=/k/kh".to_string()));
        assert_eq!(v.last().unwrap(), r"'exec' 'a b' 'it'\''s'");
        assert!(v.contains(&"lab@pi.local".to_string()));
        let s = t.scp(&["/x/fw".into()], ".cache/labctl/b");
        assert_eq!(s.last().unwrap(), "lab@pi.local:.cache/labctl/b/");
        assert_eq!(safe("../evil board"), "_evil_board");
        assert_eq!(remote_name("/tmp/m.ltlm"), "m.ltlm");
        assert!(Target::from_options("{}").is_err());
    }
}
