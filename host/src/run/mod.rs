//! `labctl run`: profiles models on boards, all boards in parallel. Per board and model: relay on
//! → the platform plugin boots the board (for `virtual`: the posix firmware behind a pty) →
//! handshake → warm-up and measured runs (prompt, token events, operator breakdown, memory) while
//! the board's sensor samples its supply → power off. One writer stores everything; a summary of
//! `run_summary` is printed at the end.
//!
//! Clocks (docs/running.md): t = 0 is the host instant just before the prompt's first byte is
//! written. Sensor samples are stamped on the host clock directly. Token events carry the board's
//! own microsecond clock; they are mapped to the host clock with the line that fits
//! (host receive time − board time) over the run, shifted down onto its fastest frame, and the
//! spread of the others above that line is stored as the alignment error.

mod align;
mod args;
mod board;
mod chip;
pub mod dry_run;
mod execute;
mod outcome;
mod plan;
mod progress;
mod protocol;
mod recover;
mod summary;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{control, mqtt::Publisher, plugins::exe_dir, shutdown::stop_flag};

use align::*;
pub use args::RunArgs;
use board::*;
use chip::ChipShare;
pub use execute::execute;
pub use outcome::*;
pub use plan::*;
use progress::*;
use summary::*;

/// Name of the posix firmware program, found beside `labctl` (or in its `firmware/` folder).
pub const POSIX_FIRMWARE: &str = "labctl-fw-posix";
/// How long a `reset = "power-cycle"` keeps the supply off: long enough for a board's
/// regulators and brown-out detector to see it.
const POWER_CYCLE_OFF: Duration = Duration::from_millis(500);
/// Prompt ids per `IDS` frame (the firmware's limit).
const IDS_PER_FRAME: usize = fwcore::fw::IDS_PER_FRAME;

/// Where the posix firmware is: beside labctl, or in its `firmware/` subfolder.
pub fn find_firmware() -> PathBuf {
    let dir = exe_dir();
    let beside = dir.join(POSIX_FIRMWARE);
    if beside.is_file() {
        return beside;
    }
    dir.join("firmware").join(POSIX_FIRMWARE)
}

/// `labctl run`
pub fn cmd_run(lab_path: &Path, args: RunArgs) -> anyhow::Result<()> {
    if args.dry_run {
        return dry_run::cmd(lab_path, &args);
    }
    let json = args.json;
    let plan = plan(lab_path, args)?;
    let stop = stop_flag()?;
    // The lab's online/offline status belongs to `serve` while it runs.
    let announce = control::serve_pid(&plan.rt.lab).is_none();
    let mqtt = Publisher::connect(&plan.rt.lab, "run", announce);
    if let Some(m) = &mqtt {
        eprintln!(
            "publishing live metrics to {} under {}/",
            m.describe,
            m.prefix()
        );
    }
    let out = execute(plan, &stop, mqtt.as_ref());
    if let Some(m) = &mqtt {
        m.close();
    }
    let out = out?;
    print_summary(&out.rows, json)?;
    out.verdict()
}
