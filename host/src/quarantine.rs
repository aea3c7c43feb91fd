//! Boards taken out of service: a board that hung and came back with none of the recovery steps
//! (reset, power cycle, reflash) is quarantined — kept in the lab's state file beside the relay
//! states, so that every labctl process and `serve` sees it — and takes no runs or jobs until
//! `labctl boards release BOARD`.

use serde::{Deserialize, Serialize};

use crate::relay::LockedState;
use lab_config::Lab;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Quarantine {
    pub since_unix_ms: u64,
    /// Why: the hang and what was tried.
    pub reason: String,
}

/// Takes `board` out of service.
pub fn put(lab: &Lab, board: &str, reason: &str) -> anyhow::Result<()> {
    let mut s = LockedState::open(&lab.state_path())?;
    s.state.quarantined.insert(
        board.to_string(),
        Quarantine {
            since_unix_ms: crate::clock::unix_ms(),
            reason: reason.to_string(),
        },
    );
    s.save()
}

/// Puts `board` back in service; whether it was quarantined.
pub fn release(lab: &Lab, board: &str) -> anyhow::Result<Option<Quarantine>> {
    let mut s = LockedState::open(&lab.state_path())?;
    let was = s.state.quarantined.remove(board);
    if was.is_some() {
        s.save()?;
    }
    Ok(was)
}

/// Whether `board` is quarantined, and since when and why.
pub fn of(lab: &Lab, board: &str) -> Option<Quarantine> {
    crate::relay::read_state(lab).quarantined.remove(board)
}

/// The fault a quarantined board's runs get.
pub fn why(board: &str, q: &Quarantine) -> String {
    let ago = crate::clock::unix_ms().saturating_sub(q.since_unix_ms) / 1000;
    format!(
        "board quarantined {ago} s ago ({}); `labctl boards release {board}` puts it back in service",
        q.reason
    )
}
