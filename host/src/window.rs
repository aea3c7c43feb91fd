//! The measurement window of one run on one board, shared by the run loop and the board's
//! sensor thread. Samples taken inside the window carry the run's id and a time from the run's
//! t = 0. The window opens a little before the prompt is sent (1.5 sample periods, at most 1 s) and closes a little after the last
//! token, and waits (within a bound) until the sensor has taken a sample on each side: a run
//! shorter than a few sample periods then still has its power interpolated across the whole run
//! instead of having no samples at all.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Condvar, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use crate::clock;

struct Open {
    id: Arc<str>,
    origin: Instant,
    end: Option<Instant>,
    stamped: u32,
    after_end: u32,
}

pub struct Window {
    open: Mutex<Option<Open>>,
    sampled: Condvar,
    /// The sensor's sample period, or None when the board has no sensor (nothing to wait for).
    period: Option<Duration>,
    /// False once the sensor stopped sampling (it failed): nothing to wait for from then on.
    sensing: AtomicBool,
    /// Why the sensor stopped, if it failed.
    failure: Mutex<Option<String>>,
    /// Session time origin for samples outside any run.
    start: Instant,
}

/// How long to wait at most for a sample on either side of a run: long enough for a starved
/// sampler thread to catch up, short enough not to dominate a batch of short runs.
fn patience(period: Duration) -> Duration {
    (period * 20).clamp(Duration::from_millis(500), Duration::from_secs(2))
}

impl Window {
    pub fn new(period: Option<Duration>, start: Instant) -> Self {
        Self {
            open: Mutex::new(None),
            sampled: Condvar::new(),
            sensing: AtomicBool::new(period.is_some()),
            failure: Mutex::new(None),
            period,
            start,
        }
    }

    /// Called when the sensor's sampling ends for good (`failure` says why, if it failed): later
    /// windows do not wait for samples.
    pub fn sensor_gone(&self, failure: Option<String>) {
        if failure.is_some() {
            *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = failure;
        }
        let _g = self.lock();
        self.sensing.store(false, Ordering::Relaxed);
        self.sampled.notify_all();
    }

    /// Why the sensor stopped sampling, if it failed.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The sample period while the sensor samples.
    fn waiting_period(&self) -> Option<Duration> {
        self.period.filter(|_| self.sensing.load(Ordering::Relaxed))
    }

    fn lock(&self) -> MutexGuard<'_, Option<Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called by the sensor thread for a sample read between `t0` and `t1`: the run it belongs
    /// to (if any) and its time in µs (from the run's t = 0, or from the session start).
    pub fn stamp(&self, t0: Instant, t1: Instant) -> (Option<Arc<str>>, i64) {
        let mid = t0 + (t1 - t0) / 2;
        let mut g = self.lock();
        match g.as_mut() {
            Some(o) => {
                o.stamped += 1;
                if o.end.is_some_and(|e| mid > e) {
                    o.after_end += 1;
                }
                self.sampled.notify_all();
                (Some(o.id.clone()), signed_us(mid, o.origin))
            }
            None => (None, signed_us(mid, self.start)),
        }
    }

    /// Opens the window for run `id` and returns its t = 0, to be followed at once by the
    /// prompt. With a sensor, t = 0 lies 1.5 periods after opening so that a sample precedes it;
    /// if the sensor took none by then (a starved thread), the window is opened afresh — safe,
    /// because no sample carries the discarded origin.
    pub fn open(&self, id: Arc<str>) -> Instant {
        let Some(period) = self.waiting_period() else {
            let origin = Instant::now();
            *self.lock() = Some(Open {
                id,
                origin,
                end: None,
                stamped: 0,
                after_end: 0,
            });
            return origin;
        };
        let give_up = Instant::now() + patience(period);
        // 1.5 periods, but at most 1 s (a sensor read once a minute cannot bracket a run anyway,
        // and must not hold every run for a minute and a half).
        let lead = (period * 3 / 2).min(Duration::from_secs(1));
        loop {
            let origin = Instant::now() + lead;
            *self.lock() = Some(Open {
                id: id.clone(),
                origin,
                end: None,
                stamped: 0,
                after_end: 0,
            });
            clock::wait_until(origin);
            let g = self.lock();
            if g.as_ref().is_some_and(|o| o.stamped > 0)
                || Instant::now() >= give_up
                || self.waiting_period().is_none()
            {
                return origin;
            }
        }
    }

    /// Closes the window after the run ended at `end`, once a sample after `end` was taken (or
    /// patience ran out); with `wait` false, at once.
    pub fn close(&self, end: Instant, wait: bool) {
        if let Some(period) = self.waiting_period().filter(|_| wait) {
            let give_up = Instant::now().max(end) + patience(period);
            let mut g = self.lock();
            if let Some(o) = g.as_mut() {
                o.end = Some(end);
            }
            while g.as_ref().is_some_and(|o| o.after_end == 0) && self.waiting_period().is_some() {
                let now = Instant::now();
                if now >= give_up {
                    break;
                }
                g = self
                    .sampled
                    .wait_timeout(g, give_up - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            *g = None;
        } else {
            *self.lock() = None;
        }
    }
}

fn signed_us(t: Instant, origin: Instant) -> i64 {
    if t >= origin {
        (t - origin).as_micros() as i64
    } else {
        -((origin - t).as_micros() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_bracket_a_run_shorter_than_the_period() {
        let period = Duration::from_millis(5);
        let w = Arc::new(Window::new(Some(period), Instant::now()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (w2, stop2) = (w.clone(), stop.clone());
        let sampler = std::thread::spawn(move || {
            let mut out = vec![];
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                out.push(w2.stamp(t, t));
                std::thread::sleep(period);
            }
            out
        });
        let t0 = w.open("r1".into());
        // A 1 ms run: far shorter than one sample period.
        clock::wait_until(t0 + Duration::from_millis(1));
        w.close(Instant::now(), true);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let out = sampler.join().unwrap();
        let mine: Vec<i64> = out
            .iter()
            .filter(|(id, _)| id.as_deref() == Some("r1"))
            .map(|(_, t)| *t)
            .collect();
        assert!(
            mine.iter().any(|&t| t < 0),
            "a sample before t = 0: {mine:?}"
        );
        assert!(
            mine.iter().any(|&t| t > 1000),
            "a sample after the end: {mine:?}"
        );
    }

    #[test]
    fn a_very_slow_sensor_does_not_hold_a_run_for_its_period() {
        // One sample a minute, and none arrives: the run starts after the 2 s patience at most.
        let w = Window::new(Some(Duration::from_secs(60)), Instant::now());
        let a = Instant::now();
        w.open("r".into());
        assert!(a.elapsed() < Duration::from_secs(3), "{:?}", a.elapsed());
    }

    #[test]
    fn a_failed_sensor_is_not_waited_for() {
        let w = Window::new(Some(Duration::from_millis(50)), Instant::now());
        w.sensor_gone(Some("NACK".into()));
        assert_eq!(w.failure().as_deref(), Some("NACK"));
        let a = Instant::now();
        let t0 = w.open("r".into());
        w.close(Instant::now(), true);
        assert!(t0 - a < Duration::from_millis(5));
        assert!(a.elapsed() < Duration::from_millis(50));
    }

    #[test]
    fn without_a_sensor_the_window_does_not_wait() {
        let w = Window::new(None, Instant::now());
        let a = Instant::now();
        let t0 = w.open("r".into());
        w.close(Instant::now(), true);
        assert!(t0 - a < Duration::from_millis(5));
        assert!(a.elapsed() < Duration::from_millis(50));
    }
}
