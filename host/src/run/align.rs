//! Clock alignment: token events carry the board's microsecond clock; they are mapped onto the
//! host clock with the line that fits (host receive time − board time) over the run, shifted down
//! onto its fastest frame, and the spread of the others above it is the alignment error.

use std::time::Instant;

use crate::clock;

/// Raw token event as received.
pub(super) struct Tok {
    pub(super) idx: i32,
    pub(super) decode: bool,
    pub(super) id: i32,
    pub(super) cycles: Option<i64>,
    pub(super) board_us: u64,
    pub(super) rx: Instant,
}

/// Maps board microseconds to host nanoseconds: `h = b + a + s·b` shifted onto the fastest frame.
/// Returns (offset at b = 0 in ns, slope, median and max residual in µs).
pub(super) fn align(toks: &[Tok]) -> Option<(f64, f64, f64, f64)> {
    if toks.is_empty() {
        return None;
    }
    let pts: Vec<(f64, f64)> = toks
        .iter()
        .map(|t| {
            let b = t.board_us as f64 * 1000.0;
            (b, clock::ns_of(t.rx) as f64 - b)
        })
        .collect();
    let n = pts.len() as f64;
    let mut slope = 0.0;
    if pts.len() >= 8 {
        let (mb, md) = (
            pts.iter().map(|p| p.0).sum::<f64>() / n,
            pts.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let var: f64 = pts.iter().map(|p| (p.0 - mb).powi(2)).sum();
        if var > 0.0 {
            slope = pts.iter().map(|p| (p.0 - mb) * (p.1 - md)).sum::<f64>() / var;
        }
        // Crystal drift is tens of ppm; anything steeper is noise from a short run.
        if slope.abs() > 1e-3 {
            slope = 0.0;
        }
    }
    let offset = pts
        .iter()
        .map(|p| p.1 - slope * p.0)
        .fold(f64::INFINITY, f64::min);
    let mut res: Vec<f64> = pts
        .iter()
        .map(|p| (p.1 - slope * p.0 - offset) / 1000.0)
        .collect();
    res.sort_by(f64::total_cmp);
    Some((offset, slope, res[res.len() / 2], res[res.len() - 1]))
}
