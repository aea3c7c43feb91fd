//! `labctl boards`: asks `labctl serve` when it runs for the lab (it owns the bench then),
//! otherwise looks itself.

use crate::{
    boards::{self, BoardRow},
    rig::Runtime,
};

/// `labctl boards`: asks `labctl serve` when it runs (it owns the bench), else looks itself.
pub fn cmd(lab_path: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let lab = crate::lab::load(lab_path)?;
    let rows: Vec<BoardRow> = match crate::control::serve_pid(&lab) {
        Some(pid) if lab.mqtt.is_some() => {
            let v = crate::control::request(&lab, pid, &crate::control::ControlRequest::Boards)?;
            serde_json::from_value(v)?
        }
        _ => boards::collect(&Runtime::open(lab_path)?, &Default::default()),
    };
    boards::print(&rows, json)
}
