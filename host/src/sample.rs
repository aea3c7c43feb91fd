//! The sampler: one sensor read on a fixed schedule from a start instant, every reading stamped
//! on the host clock (at the middle of its bus transfer) and sent to the writer in batches. A
//! sensor that keeps failing is given up and reported; the others carry on. Used by `sense` and
//! by each board of a run.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use labctl_plugin_api::{PowerSensorBox, SensorSample};

use crate::{clock, store::SampleRow};

/// Consecutive read errors after which a sensor is given up (the others carry on).
const MAX_CONSECUTIVE_ERRORS: u32 = 20;
/// Falling further behind than this skips the missed slots instead of bursting to catch up.
const MAX_LAG: Duration = Duration::from_millis(100);

/// What is known about one sensor being sampled.
pub struct Meta {
    pub name: Arc<str>,
    pub board: Option<Arc<str>>,
    pub simulated: bool,
    pub rate_hz: f64,
}

#[derive(Default)]
pub struct Report {
    pub samples: u64,
    pub missed: u64,
    pub errors: u64,
    pub failed: Option<String>,
}

/// Puts a sample taken over `[t0, t1]` on the store's clock: its run id (if a run is in
/// progress) and `t_us` from that run's origin, or from `start` outside a run.
pub type Stamp<'a> = &'a (dyn Fn(Instant, Instant) -> (Option<Arc<str>>, i64) + Sync);

/// Stamps samples outside any run: microseconds from `start`, at the middle of the read.
pub fn stamp_from(start: Instant) -> impl Fn(Instant, Instant) -> (Option<Arc<str>>, i64) + Sync {
    move |t0, t1| (None, ((t0 - start) + (t1 - t0) / 2).as_micros() as i64)
}

/// Samples one sensor chip on a fixed schedule from `start` until `end` or `stop`, sending
/// batches of rows to the writer. `metas` and `stamps` are per channel, in the order the chip
/// was opened with: each reading becomes one row per channel, stamped by that channel's stamp
/// (its board's run window). A single-channel sensor passes one of each.
#[allow(clippy::too_many_arguments)]
pub fn sample_loop<M: From<Vec<SampleRow>>>(
    mut sensor: PowerSensorBox,
    metas: &[Meta],
    session: Arc<str>,
    start: Instant,
    end: Option<Instant>,
    stop: &AtomicBool,
    stamps: &[Stamp<'_>],
    tx: mpsc::Sender<M>,
) -> Report {
    clock::precise_timers();
    let mut rep = Report::default();
    let Some(meta) = metas.first() else {
        return rep;
    };
    let rate_hz = metas.iter().map(|m| m.rate_hz).fold(meta.rate_hz, f64::max);
    let period_ns = (1e9 / rate_hz) as u64;
    // About 20 batches a second per sensor: cheap to send, fresh on screen.
    let batch_len = ((rate_hz / 20.0).ceil() as usize).max(1) * metas.len();
    let mut batch = Vec::with_capacity(batch_len);
    let mut last_send = Instant::now();
    let mut consecutive = 0u32;
    let mut k: u64 = 0;
    loop {
        let due = start + Duration::from_nanos(k.saturating_mul(period_ns));
        if stop.load(Ordering::Relaxed) || end.is_some_and(|e| due >= e) {
            break;
        }
        // Wait in slices so that a stop request is seen promptly even at slow rates.
        while Instant::now() < due && !stop.load(Ordering::Relaxed) {
            clock::wait_until(due.min(Instant::now() + Duration::from_millis(50)));
        }
        let t0 = Instant::now();
        let r = sensor.sample().into_result().and_then(|v| {
            // One reading per configured channel, in order.
            if v.len() < metas.len() {
                return Err(labctl_plugin_api::PluginError::new(
                    labctl_plugin_api::ErrorKind::BadData,
                    format!(
                        "the sensor returned {} of {} channels",
                        v.len(),
                        metas.len()
                    ),
                ));
            }
            Ok(v)
        });
        let t1 = Instant::now();
        match r {
            Ok(readings) => {
                consecutive = 0;
                let host_ns = clock::ns_of(t0 + (t1 - t0) / 2);
                for ((m, stamp), s) in metas.iter().zip(stamps).zip(readings.iter()) {
                    let (run_id, t_us) = stamp(t0, t1);
                    batch.push(row(m, &session, run_id, t_us, host_ns, s));
                }
                rep.samples += 1;
            }
            Err(e) => {
                rep.errors += 1;
                consecutive += 1;
                tracing::warn!(sensor = %meta.name, error = %e.message, "read failed");
                if consecutive >= MAX_CONSECUTIVE_ERRORS {
                    rep.failed = Some(format!(
                        "{consecutive} consecutive read errors, last: {}",
                        e.message
                    ));
                    break;
                }
            }
        }
        k += 1;
        let behind = (Instant::now() - start).as_nanos() as u64 / period_ns.max(1);
        if behind > k && Duration::from_nanos((behind - k) * period_ns) > MAX_LAG {
            rep.missed += behind - k;
            k = behind;
        }
        if batch.len() >= batch_len || last_send.elapsed() > Duration::from_millis(50) {
            if tx.send(std::mem::take(&mut batch).into()).is_err() {
                break;
            }
            batch.reserve(batch_len);
            last_send = Instant::now();
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch.into());
    }
    rep
}

fn row(
    meta: &Meta,
    session: &Arc<str>,
    run_id: Option<Arc<str>>,
    t_us: i64,
    host_ns: u64,
    s: &SensorSample,
) -> SampleRow {
    SampleRow {
        run_id,
        session_id: Some(session.clone()),
        sensor: meta.name.clone(),
        board: meta.board.clone(),
        t_us,
        bus_mv: s.bus_mv,
        shunt_uv: s.shunt_uv,
        current_ma: s.current_ma,
        power_mw: s.power_mw,
        simulated: meta.simulated,
        host_ns,
    }
}
