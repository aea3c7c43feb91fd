//! `labctl power BOARD on|off|cycle`: through `labctl serve` when it runs for the lab (it owns
//! the bench then), otherwise directly; prints what was done.

use std::{path::Path, time::Duration};

use crate::{
    control::ControlRequest,
    plugins::Plugins,
    relay::{self, PowerResult},
    units::PowerAction,
};

/// `labctl power BOARD on|off|cycle`
pub fn cmd(
    lab_path: &Path,
    board: &str,
    action: PowerAction,
    off_time: Duration,
    json: bool,
) -> anyhow::Result<()> {
    let lab = crate::lab::load(lab_path)?;
    // While `labctl serve` runs it owns the relays: ask it.
    let r: PowerResult = match crate::control::serve_pid(&lab) {
        Some(pid) if lab.mqtt.is_some() => {
            let v = crate::control::request(
                &lab,
                pid,
                &ControlRequest::Power {
                    board: board.to_string(),
                    action: action.name().to_string(),
                    off_time_ms: Some(off_time.as_millis() as u64),
                },
            )?;
            serde_json::from_value(v)?
        }
        _ => {
            let plugins = Plugins::load(lab.plugin_dirs.as_deref());
            relay::apply_power(&lab, &plugins, board, action, off_time, false)?
        }
    };
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{}: {} (relay {}, {}{})",
            r.board,
            if r.on { "on" } else { "off" },
            r.relay,
            r.driver,
            if r.via_serve {
                ", through labctl serve"
            } else {
                ""
            }
        );
    }
    Ok(())
}
