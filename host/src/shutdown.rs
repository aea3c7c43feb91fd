//! The one shutdown signal: SIGINT and SIGTERM raise a flag that every long task polls, finishes
//! its unit of work and stops (runs are marked `aborted`, what was measured is flushed).

use std::sync::{atomic::AtomicBool, Arc};

use anyhow::Context;

/// Installs SIGINT/SIGTERM handlers that raise the returned flag.
pub fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handler")?;
    }
    Ok(stop)
}
