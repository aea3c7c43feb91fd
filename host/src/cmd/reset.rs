//! `labctl reset BOARD`: resets a board the way its lab entry says (`reset = "dtr"`/`"rts"`
//! pulses that line of its console, `"power-cycle"` switches its relay off and on); with
//! `reset = "none"`, a reset its platform offers (a debug probe), else a power cycle when it has a
//! relay.

use std::{path::Path, time::Duration};

use lab_config::Reset;

use crate::{bringup, console, error::Failed, relay, rig::Runtime};

/// How long a power-cycle reset keeps the supply off.
const OFF: Duration = Duration::from_millis(500);

pub fn cmd(lab_path: &Path, board: &str, dry_run: bool) -> anyhow::Result<()> {
    let rt = Runtime::open(lab_path)?;
    let b = crate::lab::board_named(&rt.lab, board)?.clone();
    let cycle = |what: &str| -> anyhow::Result<()> {
        println!(
            "{board}\treset\tpower cycle through relay {} ({what})",
            b.relay.as_deref().unwrap_or("?")
        );
        if dry_run {
            return Ok(());
        }
        relay::set_board_power(&rt.lab, &rt.plugins, board, false)?;
        std::thread::sleep(OFF);
        relay::set_board_power(&rt.lab, &rt.plugins, board, true)?;
        Ok(())
    };
    match b.reset {
        Reset::Dtr | Reset::Rts => {
            let (path, baud) = console::locate(&b)
                .map_err(|e| Failed(format!("{board}: {e}")))?
                .ok_or_else(|| {
                    Failed(format!(
                        "{board}: reset = {:?} needs a console",
                        b.reset.name()
                    ))
                })?;
            println!(
                "{board}\treset\tpulse {} on {}",
                b.reset.name().to_uppercase(),
                path.display()
            );
            if dry_run {
                return Ok(());
            }
            let c = console::open_path(&path, baud).map_err(|e| Failed(format!("{board}: {e}")))?;
            c.pulse(b.reset)
                .map_err(|e| Failed(format!("{board}: {e}")))?;
            Ok(())
        }
        Reset::PowerCycle => cycle("reset = \"power-cycle\""),
        Reset::None => {
            // The platform's own reset (a probe), if it has one.
            if let Ok((api, profile)) = bringup::platform_of(&rt, &b) {
                let spec = bringup::spec(
                    &b,
                    &profile,
                    "<console>",
                    &crate::run::find_firmware(),
                    Path::new(""),
                    0,
                );
                if let Ok(mut s) = bringup::open_session(api, &spec) {
                    if !dry_run {
                        if let Ok(step) = s.reset().into_result() {
                            println!("{board}\treset\t{}", step.note);
                            return Ok(());
                        }
                    }
                }
            }
            if b.relay.is_some() {
                return cycle("no reset line configured: falling back to the relay");
            }
            Err(Failed(format!(
                "{board}: no way to reset it: set `reset = \"dtr\"`, `\"rts\"` or `\"power-cycle\"` (with a relay) in the lab file"
            ))
            .into())
        }
    }
}
