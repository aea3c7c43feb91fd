//! The one host clock every measurement is stamped on: CLOCK_MONOTONIC, which every process on
//! the machine shares, so an emulated board's power model (another process) and the sampler
//! agree on what "now" is.

use std::{sync::OnceLock, time::Instant};

/// An `Instant` and the CLOCK_MONOTONIC reading taken right after it.
static ORIGIN: OnceLock<(Instant, u64)> = OnceLock::new();

pub use labctl_plugin_api::monotonic_ns;

fn origin() -> (Instant, u64) {
    *ORIGIN.get_or_init(|| (Instant::now(), monotonic_ns()))
}

/// CLOCK_MONOTONIC nanoseconds of an instant (Rust's `Instant` is that clock on Linux; the
/// offset is taken once, so this is exact to well under a microsecond).
pub fn ns_of(t: Instant) -> u64 {
    let (i0, m0) = origin();
    if t >= i0 {
        m0 + (t - i0).as_nanos() as u64
    } else {
        m0.saturating_sub((i0 - t).as_nanos() as u64)
    }
}

/// Waits until `deadline`: sleeps while far away, then spins for the last few microseconds, so
/// that waits of a few hundred microseconds (I2C transfers, 1 kHz sampling) land within tens of
/// microseconds. It never yields: on a loaded machine a yield can hand the CPU to another
/// process for a whole scheduler tick (milliseconds), while a sleeper that wakes gets it back
/// at once.
pub fn wait_until(deadline: Instant) {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let left = deadline - now;
        if left > std::time::Duration::from_micros(30) {
            std::thread::sleep(left - std::time::Duration::from_micros(20));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Asks the kernel to wake this thread's sleeps on time (timer slack 1 µs instead of the default
/// 50 µs), for threads that keep a sampling rate.
pub fn precise_timers() {
    // SAFETY: PR_SET_TIMERSLACK only changes this thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0);
    }
}

/// Unix time in milliseconds (for ids and wall-clock fields).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Wall-clock microseconds since the Unix epoch (timestamps of events).
pub fn unix_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
