//! A sensor chip shared by several boards of a run (the channels of one multi-channel monitor):
//! one sampler thread reads every channel, each channel's rows stamped by its own board's run
//! window; it samples until the last of its boards is done.

use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    mpsc, Arc, Mutex,
};

use labctl_plugin_api::PowerSensorBox;

use crate::{
    sample::{sample_loop, Meta, Stamp},
    store::Rec,
    window::Window,
};

use super::Progress;

pub struct ChipShare {
    /// The opened chip, taken by the sampler thread.
    pub dev: Mutex<Option<PowerSensorBox>>,
    /// Per channel, in the order the chip was opened with.
    pub metas: Vec<Meta>,
    pub windows: Vec<Arc<Window>>,
    /// The boards measured by the chip's channels.
    pub boards: Vec<String>,
    /// Boards still running; the sampler stops when it reaches 0.
    pub remaining: AtomicUsize,
    pub stop: AtomicBool,
    pub start: std::time::Instant,
}

impl ChipShare {
    /// A board of the chip has finished its session.
    pub fn board_done(&self) {
        if self.remaining.fetch_sub(1, Ordering::SeqCst) <= 1 {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Calls [`ChipShare::board_done`] when dropped.
    pub fn done_guard(&self) -> DoneGuard<'_> {
        DoneGuard(self)
    }

    /// The chip's sampler: runs on its own thread until every board is done.
    pub fn sample(&self, session: Arc<str>, tx: mpsc::Sender<Rec>, progress: &Progress) {
        let Some(dev) = self.dev.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let stamps: Vec<_> = self
            .windows
            .iter()
            .map(|w| move |t0, t1| w.stamp(t0, t1))
            .collect();
        let stamps: Vec<Stamp<'_>> = stamps.iter().map(|s| s as Stamp<'_>).collect();
        let rep = sample_loop(
            dev,
            &self.metas,
            session,
            self.start,
            None,
            &self.stop,
            &stamps,
            tx,
        );
        for w in &self.windows {
            w.sensor_gone(rep.failed.clone());
        }
        if let Some(f) = rep.failed {
            progress.note(&format!("{}: sensor failed: {f}", self.boards.join(", ")));
        }
    }
}

/// Tells the chip a board is done when it goes out of scope.
pub struct DoneGuard<'a>(&'a ChipShare);

impl Drop for DoneGuard<'_> {
    fn drop(&mut self) {
        self.0.board_done();
    }
}
