//! `driver = "command"`: the user's own programs switch the supply (a smart plug's CLI, a lab
//! PSU's remote control). Keys: `on`, `off` and optional `status`, each an argv array run without
//! a shell, and `timeout_s` (default 10). `on`/`off` succeed on exit status 0; `status` exits 0
//! when the supply is on and 1 when it is off; anything else, or running past the timeout, is an
//! error naming the command and what it printed.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use abi_stable::std_types::{RNone, ROption, RResult, RSome};
use labctl_plugin_api::{guard, ErrorKind, PluginError, PowerSwitch, Step};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct CommandSwitch {
    pub on: Vec<String>,
    pub off: Vec<String>,
    #[serde(default)]
    pub status: Option<Vec<String>>,
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
}

fn default_timeout() -> f64 {
    10.0
}

/// What one run of a command gave: its exit code (None: killed by a signal).
pub fn run(argv: &[String], timeout: Duration) -> Result<Option<i32>, PluginError> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| crate::bad_keys("command", "an empty command"))?;
    let shown = argv.join(" ");
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| PluginError::new(ErrorKind::Io, format!("`{shown}`: {e}")))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Ok(st.code()),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(PluginError::new(
                    ErrorKind::Io,
                    format!("`{shown}` did not finish within {timeout:?}; killed"),
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(PluginError::new(ErrorKind::Io, format!("`{shown}`: {e}"))),
        }
    }
}

fn last_words(argv: &[String], code: Option<i32>) -> String {
    match code {
        Some(c) => format!("`{}` exited with status {c}", argv.join(" ")),
        None => format!("`{}` was killed by a signal", argv.join(" ")),
    }
}

impl CommandSwitch {
    pub fn from_keys(keys: &serde_json::Value) -> Result<CommandSwitch, PluginError> {
        let c = CommandSwitch::deserialize(keys).map_err(|e| crate::bad_keys("command", e))?;
        if c.on.is_empty() || c.off.is_empty() || c.status.as_ref().is_some_and(Vec::is_empty) {
            return Err(crate::bad_keys(
                "command",
                "`on`, `off` and `status` are non-empty argv arrays",
            ));
        }
        if !(c.timeout_s.is_finite() && c.timeout_s > 0.0) {
            return Err(crate::bad_keys(
                "command",
                "`timeout_s` is a positive number",
            ));
        }
        Ok(c)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_s)
    }
}

impl PowerSwitch for CommandSwitch {
    fn set(&mut self, on: bool) -> RResult<(), PluginError> {
        guard(|| {
            let argv = if on { &self.on } else { &self.off };
            match run(argv, self.timeout())? {
                Some(0) => Ok(()),
                code => Err(PluginError::new(ErrorKind::Io, last_words(argv, code))),
            }
        })
    }

    fn state(&mut self) -> RResult<ROption<bool>, PluginError> {
        guard(|| {
            let Some(argv) = &self.status else {
                return Ok(RNone);
            };
            match run(argv, self.timeout())? {
                Some(0) => Ok(RSome(true)),
                Some(1) => Ok(RSome(false)),
                code => Err(PluginError::new(
                    ErrorKind::BadData,
                    format!("{} (status: 0 = on, 1 = off)", last_words(argv, code)),
                )),
            }
        })
    }

    fn plan(&self, on: bool) -> Step {
        Step::new(
            "power",
            if on { &self.on } else { &self.off },
            "the relay's own command, without a shell",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sw(on: &[&str], off: &[&str], status: Option<&[&str]>) -> CommandSwitch {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        CommandSwitch {
            on: v(on),
            off: v(off),
            status: status.map(v),
            timeout_s: 5.0,
        }
    }

    #[test]
    fn argv_runs_without_a_shell_and_exit_codes_mean_what_they_say() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("on; touch pwned");
        // No shell: the `;` is part of the file name, not a second command.
        let mut s = sw(
            &["touch", mark.to_str().unwrap()],
            &["false"],
            Some(&["test", "-e", mark.to_str().unwrap()]),
        );
        assert_eq!(s.state().into_result().unwrap(), RSome(false));
        s.set(true).into_result().unwrap();
        assert!(mark.exists());
        assert!(!dir.path().join("pwned").exists());
        assert_eq!(s.state().into_result().unwrap(), RSome(true));
        let e = s.set(false).into_result().unwrap_err();
        assert!(e.message.contains("`false` exited with status 1"), "{e}");
        let mut odd = sw(&["true"], &["true"], Some(&["sh", "-c", "exit 3"]));
        assert!(odd
            .state()
            .into_result()
            .unwrap_err()
            .message
            .contains("status 3"));
        let mut slow = sw(&["sleep", "5"], &["true"], None);
        slow.timeout_s = 0.2;
        assert!(slow
            .set(true)
            .into_result()
            .unwrap_err()
            .message
            .contains("killed"));
        assert_eq!(slow.state().into_result().unwrap(), RNone);
    }
}
