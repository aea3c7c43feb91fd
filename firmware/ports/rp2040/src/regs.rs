//! Register access with the RP chips' atomic aliases (+0x2000 sets bits, +0x3000 clears them),
//! and bounded waits: a register that never shows what is awaited is given up on, not hung on.

use core::ptr::{read_volatile, write_volatile};

pub fn rd(a: usize) -> u32 {
    // SAFETY: a peripheral register of this chip (the addresses come from `chip`).
    unsafe { read_volatile(a as *const u32) }
}

pub fn wr(a: usize, v: u32) {
    // SAFETY: as above.
    unsafe { write_volatile(a as *mut u32, v) }
}

pub fn set(a: usize, bits: u32) {
    wr(a + 0x2000, bits);
}

pub fn clear(a: usize, bits: u32) {
    wr(a + 0x3000, bits);
}

/// Polls `a` until `done` holds of it; false after `tries` reads.
pub fn wait(a: usize, tries: u32, done: impl Fn(u32) -> bool) -> bool {
    (0..tries).any(|_| done(rd(a)))
}

/// Takes the peripherals of `bits` out of reset and waits until they are.
pub fn unreset(resets: usize, bits: u32) -> bool {
    clear(resets, bits);
    wait(resets + 0x08, 100_000, |d| d & bits == bits)
}
