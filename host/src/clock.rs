//! The one host clock every measurement is stamped on: monotonic, process-wide.

use std::{sync::OnceLock, time::Instant};

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// The process's clock origin (first use).
pub fn origin() -> Instant {
    *ORIGIN.get_or_init(Instant::now)
}

/// Nanoseconds of an instant on the host clock.
pub fn ns_of(t: Instant) -> u64 {
    t.saturating_duration_since(origin()).as_nanos() as u64
}

/// Waits until `deadline`: sleeps while far away, then yields, so that waits of a few hundred
/// microseconds (I2C transfers, 1 kHz sampling) land within tens of microseconds.
pub fn wait_until(deadline: Instant) {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let left = deadline - now;
        if left > std::time::Duration::from_micros(150) {
            std::thread::sleep(left - std::time::Duration::from_micros(100));
        } else {
            std::thread::yield_now();
        }
    }
}

/// Unix time in milliseconds (for ids and wall-clock fields).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
