//! `labctl flash BOARD [--model M] [--dry-run]`: puts the firmware and a model on a board with
//! its platform's flashing step. Platforms whose boards are not flashed (emulated boards start
//! from the files each time; hand-flashed `serial` boards) say so and change nothing.

use std::path::Path;

use anyhow::Context;

use crate::{bringup, error::BadInput, error::Failed, model, relay, rig::Runtime};

pub fn cmd(
    lab_path: &Path,
    board: &str,
    model_spec: Option<&str>,
    dry_run: bool,
) -> anyhow::Result<()> {
    let rt = Runtime::open(lab_path)?;
    let b = crate::lab::board_named(&rt.lab, board)?.clone();
    let (api, profile) =
        bringup::platform_of(&rt, &b).map_err(|e| Failed(format!("{board}: {e}")))?;
    let cache = model::cache_dir(&rt.lab);
    let spec_text = model_spec.unwrap_or(model::DEFAULT_MODEL);
    let model = if dry_run {
        model::path_of(spec_text, &cache)?
    } else {
        model::resolve(spec_text, &cache)?
    };
    let firmware = crate::run::find_firmware();
    let spec = bringup::spec(&b, &profile, "<console>", &firmware, &model, 0);
    let mut session =
        bringup::open_session(api, &spec).map_err(|e| Failed(format!("{board}: {e}")))?;
    let steps = session.plan();
    let flash: Vec<_> = steps
        .iter()
        .filter(|s| s.step.as_str() == "flash")
        .collect();
    if flash.iter().all(|s| s.argv.is_empty()) {
        let why = flash
            .first()
            .map(|s| s.note.to_string())
            .or_else(|| steps.first().map(|s| s.note.to_string()))
            .unwrap_or_else(|| "the platform has no flashing step".into());
        println!(
            "{board}: nothing to flash on platform {}: {why}",
            b.platform
        );
        return Ok(());
    }
    for s in &flash {
        let argv: Vec<String> = s.argv.iter().map(|a| a.to_string()).collect();
        println!("{board}\tflash\t{}", argv.join(" "));
    }
    if dry_run {
        return Ok(());
    }
    if b.relay.is_some() {
        relay::set_board_power(&rt.lab, &rt.plugins, board, true).context("power on")?;
    }
    let ran = session.bootstrap().into_result();
    let _ = session.power_off();
    match ran {
        Ok(_) => {
            println!("{board}: flashed {}", model.display());
            Ok(())
        }
        Err(e) if e.kind == labctl_plugin_api::ErrorKind::MissingTool => {
            Err(BadInput(format!("{board}: {}", e.message)).into())
        }
        Err(e) => Err(Failed(format!("{board}: flashing failed: {}", e.message)).into()),
    }
}
