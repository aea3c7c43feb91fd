//! How runs and board sessions end: a run's outcome, the fault that stops a session (status,
//! reason code, words), what the handshake learned, and a job's verdict (its exit status).

use std::{path::PathBuf, time::Instant};

use crate::{error::BadInput, error::Failed, records::SummaryRow};

use super::*;

/// How one run ended.
pub(super) struct Outcome {
    pub(super) status: &'static str,
    pub(super) error: Option<String>,
    /// Machine-readable reason beside `error` (docs/database.md lists them).
    pub(super) code: Option<&'static str>,
}

/// Why a board's session stopped before or between runs: the status its run gets, the reason
/// code and the words.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: &'static str,
    pub code: &'static str,
    pub why: String,
}

impl Fault {
    /// The model, firmware or measurement failed.
    pub(super) fn failed(code: &'static str, why: impl Into<String>) -> Fault {
        Fault {
            status: "failed",
            code,
            why: why.into(),
        }
    }
    /// Infrastructure failed: console, power driver, platform plugin, flashing tool.
    pub(super) fn error(code: &'static str, why: impl Into<String>) -> Fault {
        Fault {
            status: "error",
            code,
            why: why.into(),
        }
    }
}

/// What the board's `READY` and `MODEL` frames told.
pub(super) struct Ready {
    pub(super) firmware: String,
    pub(super) ram: u64,
    pub(super) flash: u64,
    pub(super) crc32: Option<u32>,
}

/// One run's result on the board side.
pub(super) struct RunResult {
    pub(super) toks: Vec<Tok>,
    pub(super) ops: Option<[(String, i64); 4]>,
    /// static, heap, stack, model and firmware-image bytes from `MEM`.
    pub(super) mem: Option<(i64, i64, i64, i64, i64)>,
    /// `TEMP` readings in order (°C): at the prompt's start and at its end.
    pub(super) temps: Vec<f64>,
    pub(super) outcome: Outcome,
    /// t = 0 of the run on the host clock (ns): just before the prompt's first byte.
    pub(super) t0_ns: u64,
    pub(super) end: Instant,
    /// Garbage (bytes, bad frames) the link had counted when the run started.
    pub(super) garbage_before: (u64, u64),
}

/// What a finished job produced.
pub struct JobOutcome {
    pub rows: Vec<SummaryRow>,
    pub interrupted: bool,
    pub storage: PathBuf,
}

impl JobOutcome {
    /// The exit status `labctl run` gives this outcome.
    pub fn verdict(&self) -> anyhow::Result<()> {
        let failed: Vec<&SummaryRow> = self.rows.iter().filter(|r| r.status != "ok").collect();
        if self.interrupted {
            let aborted = self.rows.iter().filter(|r| r.status == "aborted").count();
            let what = match aborted {
                // Every board was between two runs: nothing was cut short.
                0 => "interrupted between runs, none was in progress".to_string(),
                n => format!("interrupted: {n} run(s) in progress marked aborted"),
            };
            return Err(Failed(format!(
                "{what}; the {} run(s) recorded and everything measured are stored in {}",
                self.rows.len(),
                self.storage.display()
            ))
            .into());
        }
        // A run that named another model than the board holds is a mistake in the arguments.
        if let Some(r) = failed
            .iter()
            .find(|r| r.reason_code.as_deref() == Some("model-mismatch"))
        {
            return Err(BadInput(format!(
                "{}: {}",
                r.board,
                r.error.as_deref().unwrap_or("model mismatch")
            ))
            .into());
        }
        if !failed.is_empty() {
            return Err(Failed(format!(
                "{} of {} run(s) not ok: {}",
                failed.len(),
                self.rows.len(),
                problems(failed.into_iter()).join("; ")
            ))
            .into());
        }
        Ok(())
    }
}
