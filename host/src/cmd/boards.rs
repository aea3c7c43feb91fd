//! `labctl boards`: asks `labctl serve` when it runs for the lab (it owns the bench then),
//! otherwise looks itself.

use crate::{
    boards::{self, BoardRow},
    rig::Runtime,
};

/// `labctl boards`: asks `labctl serve` when it runs (it owns the bench), else looks itself.
pub fn cmd(
    lab_path: &std::path::Path,
    json: bool,
    action: Option<crate::cli::BoardsAction>,
) -> anyhow::Result<()> {
    let lab = crate::lab::load(lab_path)?;
    if let Some(crate::cli::BoardsAction::Release { board }) = action {
        if lab.board(&board).is_none() {
            return Err(
                crate::error::BadInput(format!("no board named {board:?} in the lab")).into(),
            );
        }
        let was = crate::quarantine::release(&lab, &board)?;
        let v = serde_json::json!({"board": board, "released": was.is_some(),
                                   "reason": was.as_ref().map(|q| q.reason.clone())});
        if json {
            println!("{v}");
        } else if let Some(q) = was {
            println!("{board}: back in service (was quarantined: {})", q.reason);
        } else {
            println!("{board}: was not quarantined");
        }
        return Ok(());
    }
    let rows: Vec<BoardRow> = match crate::control::serve_pid(&lab) {
        Some(pid) if lab.mqtt.is_some() => {
            let v = crate::control::request(&lab, pid, &crate::control::ControlRequest::Boards)?;
            serde_json::from_value(v)?
        }
        _ => boards::collect(&Runtime::open(lab_path)?, &Default::default()),
    };
    boards::print(&rows, json)
}
