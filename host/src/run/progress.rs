//! The live progress of a run: one line per board on stderr (redrawn on a terminal), and
//! lines that stay (a run finished, a board failed) printed above them.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// What a board thread shows on the progress display.
#[derive(Clone, Default)]
pub(super) struct Line {
    pub(super) board: String,
    pub(super) state: String,
    pub(super) done: u32,
    pub(super) total: u32,
}

/// Shared progress of every board, drawn on stderr when it is a terminal.
pub(super) struct Progress {
    pub(super) lines: Mutex<Vec<Line>>,
    pub(super) tty: bool,
    pub(super) drawn: Mutex<(bool, Instant)>,
}

impl Progress {
    pub(super) fn set(&self, board: &str, state: impl Into<String>, done: u32, total: u32) {
        let state = state.into();
        let mut l = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(x) = l.iter_mut().find(|x| x.board == board) {
            x.state = state;
            x.done = done;
            x.total = total;
        }
    }

    /// A line that stays (run finished, board failed): printed above the live lines.
    pub(super) fn note(&self, msg: &str) {
        let mut d = self.drawn.lock().unwrap_or_else(|p| p.into_inner());
        if self.tty && d.0 {
            let n = self.lines.lock().map(|l| l.len()).unwrap_or(0);
            eprint!("\x1b[{n}A\x1b[J");
            d.0 = false;
        }
        eprintln!("{msg}");
    }

    pub(super) fn draw(&self, force: bool) {
        if !self.tty {
            return;
        }
        let mut d = self.drawn.lock().unwrap_or_else(|p| p.into_inner());
        if !force && d.1.elapsed() < Duration::from_millis(200) {
            return;
        }
        let l = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        if d.0 {
            out.push_str(&format!("\x1b[{}A", l.len()));
        }
        for x in l.iter() {
            let bar = if x.total > 0 {
                let w = 20usize;
                let f = (x.done as usize * w / x.total as usize).min(w);
                format!(
                    "[{}{}] {:>4}/{:<4}",
                    "#".repeat(f),
                    ".".repeat(w - f),
                    x.done,
                    x.total
                )
            } else {
                String::new()
            };
            out.push_str(&format!("\x1b[2K  {:<16} {bar} {}\n", x.board, x.state));
        }
        eprint!("{out}");
        *d = (true, Instant::now());
    }
}
