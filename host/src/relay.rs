//! Relays and the relay state file. A relay is one channel switching one board's supply, driven
//! by the power-driver plugin that serves its `driver` (`plugins/power`: gpio, usb-hid, usb-port,
//! command, simulated). Its state is kept in
//! `<db stem>.state.json` beside the database, so `labctl boards` shows it, simulated relays keep
//! it between commands, and GPIO lines can be re-asserted from it.

use std::{
    collections::BTreeMap,
    fs::File,
    io::Write,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context};
use lab_config::{Lab, Relay};
use labctl_plugin_api::PowerSwitchBox;
use serde::{Deserialize, Serialize};

use crate::{clock, error::BadInput, plugins::Plugins, units::PowerAction};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct RelayEntry {
    pub on: bool,
    /// Unix time (ms) of the last change.
    pub since_ms: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StateFile {
    #[serde(default)]
    pub relays: BTreeMap<String, RelayEntry>,
    /// Boards out of service ([`crate::quarantine`]).
    #[serde(default)]
    pub quarantined: BTreeMap<String, crate::quarantine::Quarantine>,
}

/// The state file, locked (flock) for as long as this value lives.
pub struct LockedState {
    path: PathBuf,
    _lock: File,
    pub state: StateFile,
}

impl LockedState {
    pub fn open(path: &Path) -> anyhow::Result<LockedState> {
        let lock_path = path.with_extension("json.lock");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        // SAFETY: flock on a file descriptor we own; released when `lock` is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!(
                "cannot lock {}: {}",
                lock_path.display(),
                std::io::Error::last_os_error()
            );
        }
        let state = match std::fs::read_to_string(path) {
            Ok(s) => serde_json::from_str(&s).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "relay state file unreadable; starting from all off");
                StateFile::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(LockedState {
            path: path.to_path_buf(),
            _lock: lock,
            state,
        })
    }

    /// Writes the state atomically (temp file + rename).
    pub fn save(&self) -> anyhow::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let mut f = File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(serde_json::to_string_pretty(&self.state)?.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("replacing {}", self.path.display()))?;
        Ok(())
    }
}

/// Reads the relay state without holding the lock afterwards.
pub fn read_state(lab: &Lab) -> StateFile {
    LockedState::open(&lab.state_path())
        .map(|l| l.state)
        .unwrap_or_default()
}

/// Is the board's supply on? Boards without a relay are always powered.
pub fn board_is_on(state: &StateFile, board: &lab_config::Board) -> bool {
    match &board.relay {
        None => true,
        Some(r) => state.relays.get(r).is_some_and(|e| e.on),
    }
}

/// Opens a relay through the power-driver plugin that serves its driver; switches nothing.
pub fn open_switch(plugins: &Plugins, relay: &Relay) -> anyhow::Result<PowerSwitchBox> {
    let driver = relay.driver.name();
    let (_, api) = plugins
        .power_driver(driver)
        .ok_or_else(|| anyhow::anyhow!(plugins.why_missing(&format!("power driver {driver:?}"))))?;
    let keys = relay.driver.keys_json();
    (api.open())(driver.into(), keys.as_str().into())
        .into_result()
        .map_err(|e| anyhow::anyhow!("relay {:?} ({driver}): {}", relay.name, e.message))
}

/// Drives the physical relay through its power driver.
pub fn drive(plugins: &Plugins, relay: &Relay, on: bool) -> anyhow::Result<()> {
    let mut sw = open_switch(plugins, relay)?;
    sw.set(on).into_result().map_err(|e| {
        anyhow::anyhow!(
            "relay {:?} ({}): {}",
            relay.name,
            relay.driver.name(),
            e.message
        )
    })
}

/// Switches a board's relay and records it.
pub fn set_board_power(
    lab: &Lab,
    plugins: &Plugins,
    board: &str,
    on: bool,
) -> anyhow::Result<&'static str> {
    let b = crate::lab::board_named(lab, board)?;
    let relay_name = b
        .relay
        .as_ref()
        .ok_or_else(|| BadInput(format!("board {board:?} has no relay in the lab file")))?;
    let relay = lab
        .relay(relay_name)
        .ok_or_else(|| BadInput(format!("relay {relay_name:?} is not defined")))?;
    let mut st = LockedState::open(&lab.state_path())?;
    drive(plugins, relay, on)?;
    st.state.relays.insert(
        relay.name.clone(),
        RelayEntry {
            on,
            since_ms: clock::unix_ms(),
        },
    );
    st.save()?;
    tracing::info!(board, relay = %relay.name, on, "relay switched");
    Ok(relay.driver.name())
}

/// What a power command did.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PowerResult {
    pub board: String,
    pub relay: String,
    pub driver: String,
    pub on: bool,
    /// Done by a running `labctl serve` on this command's behalf.
    #[serde(default)]
    pub via_serve: bool,
}

/// Switches a board's relay (cycle: off, wait, on) and records it.
pub fn apply_power(
    lab: &Lab,
    plugins: &Plugins,
    board: &str,
    action: PowerAction,
    off_time: Duration,
    via_serve: bool,
) -> anyhow::Result<PowerResult> {
    let driver = match action {
        PowerAction::On => set_board_power(lab, plugins, board, true)?,
        PowerAction::Off => set_board_power(lab, plugins, board, false)?,
        PowerAction::Cycle => {
            set_board_power(lab, plugins, board, false)?;
            std::thread::sleep(off_time);
            set_board_power(lab, plugins, board, true)?
        }
    };
    Ok(PowerResult {
        board: board.to_string(),
        relay: lab
            .board(board)
            .and_then(|b| b.relay.clone())
            .unwrap_or_default(),
        driver: driver.to_string(),
        on: action != PowerAction::Off,
        via_serve,
    })
}
