//! `labctl run --dry-run`: what bring-up would do on each board, in order (power, flash or start,
//! reset, open console), with the exact command lines the platforms would run, without doing any
//! of it: no database is opened, nothing is powered, no emulator or firmware is started, no
//! console is opened and no model file is generated.

use std::{io::Write, path::Path};

use lab_config::{Board, ConsolePort, Reset};
use labctl_plugin_api::profile::ConsoleKind;
use serde::Serialize;

use crate::{console, error::BadInput, model, rig::Runtime, run::RunArgs};

/// One line of the plan.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanLine {
    pub board: String,
    pub step: String,
    /// The command line, or empty where the step runs no outside program.
    pub argv: Vec<String>,
    /// What the step does (for steps without a command line, or why it does nothing).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// Quotes an argument for a POSIX shell when it needs it, so a line can be pasted.
fn quote(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// How the relay of a board would be switched on: its power driver's plan (only `command`
/// relays run an outside program; the others say what they would write).
fn power_line(rt: &Runtime, b: &Board) -> (Vec<String>, String) {
    let Some(r) = b.relay.as_deref().and_then(|r| rt.lab.relay(r)) else {
        return (
            vec![],
            "no relay: the board's supply is not switched".into(),
        );
    };
    match crate::relay::open_switch(&rt.plugins, r) {
        Ok(sw) => {
            let step = sw.plan(true);
            (
                step.argv.iter().map(|a| a.to_string()).collect(),
                format!("relay {}: {}", r.name, step.note),
            )
        }
        Err(e) => (vec![], format!("faulted: {e:#}")),
    }
}

/// The plan of one board.
fn board_plan(rt: &Runtime, b: &Board, model: &Path, ctx: u32, firmware: &Path) -> Vec<PlanLine> {
    let line = |step: &str, argv: Vec<String>, note: String| PlanLine {
        board: b.name.clone(),
        step: step.into(),
        argv,
        note,
    };
    let mut out = vec![];
    let (argv, note) = power_line(rt, b);
    out.push(line("power", argv, note));
    let (api, profile) = match crate::bringup::platform_of(rt, b) {
        Ok(p) => p,
        Err(why) => {
            out.push(line("flash", vec![], format!("faulted: {why}")));
            return out;
        }
    };
    let baud = console::baud(b);
    let console_path = match profile.console {
        ConsoleKind::Pty | ConsoleKind::Channel => "<pty>".to_string(),
        ConsoleKind::Emulator => "<the emulator's pty>".to_string(),
        ConsoleKind::Device => match console::locate(b) {
            Ok(Some((p, _))) => p.display().to_string(),
            Ok(None) => "<no console configured>".to_string(),
            Err(e) => format!("<{e}>"),
        },
    };
    let spec = crate::bringup::spec(b, &profile, &console_path, firmware, model, ctx);
    match crate::bringup::open_session(api, &spec) {
        Ok(session) => {
            for s in session.plan() {
                out.push(line(
                    s.step.as_str(),
                    s.argv.iter().map(|a| a.to_string()).collect(),
                    s.note.to_string(),
                ));
            }
        }
        Err(e) => out.push(line("flash", vec![], format!("error: {e}"))),
    }
    match b.reset {
        Reset::None => {}
        Reset::Dtr | Reset::Rts => out.push(line(
            "reset",
            vec![],
            format!("pulse {} on {console_path}", b.reset.name().to_uppercase()),
        )),
        Reset::PowerCycle => out.push(line(
            "reset",
            vec![],
            "power cycle through the relay".into(),
        )),
    }
    let how = match (&profile.console, b.console.as_ref().map(|c| &c.port)) {
        (ConsoleKind::Device, Some(ConsolePort::Usb { serial, .. })) => {
            format!("{console_path} at {baud} baud (USB serial {serial}), locked")
        }
        (ConsoleKind::Device, _) => format!("{console_path} at {baud} baud, locked"),
        _ => console_path.clone(),
    };
    out.push(line("console", vec![], format!("open {how}")));
    out
}

/// Prints the plan of `labctl run ARGS` on the lab.
pub fn cmd(lab_path: &Path, args: &RunArgs) -> anyhow::Result<()> {
    let rt = Runtime::open(lab_path)?;
    for b in &args.boards {
        crate::lab::board_named(&rt.lab, b)?;
    }
    let cache = model::cache_dir(&rt.lab);
    let spec = args
        .models
        .first()
        .cloned()
        .unwrap_or_else(|| model::DEFAULT_MODEL.to_string());
    let model = model::path_of(&spec, &cache)?;
    if args.models.len() > 1 {
        return Err(BadInput("--dry-run shows one model's plan; give one --model".into()).into());
    }
    // One token per prompt byte (byte-level presets; a model's own tokenizer makes fewer).
    let prompt = if args.prompt_ids.is_empty() {
        args.prompt.len() as u32
    } else {
        args.prompt_ids.len() as u32
    };
    let ctx = prompt + args.tokens;
    let firmware = crate::run::find_firmware();
    let mut lines = vec![];
    for b in rt
        .lab
        .boards
        .iter()
        .filter(|b| args.boards.is_empty() || args.boards.contains(&b.name))
    {
        lines.extend(board_plan(&rt, b, &model, ctx, &firmware));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for l in &lines {
        let what = if l.argv.is_empty() {
            format!("({})", l.note)
        } else {
            l.argv
                .iter()
                .map(|a| quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        };
        match writeln!(out, "{}\t{}\t{what}", l.board, l.step) {
            // `labctl run --dry-run | head`: the reader has what it wanted.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            r => r?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn arguments_are_quoted_only_when_needed() {
        assert_eq!(
            super::quote("/usr/bin/qemu-system-arm"),
            "/usr/bin/qemu-system-arm"
        );
        assert_eq!(
            super::quote("loader,file=/m.ltlm,addr=0x1"),
            "loader,file=/m.ltlm,addr=0x1"
        );
        assert_eq!(super::quote("a b"), "'a b'");
        assert_eq!(super::quote("it's"), "'it'\\''s'");
    }
}
