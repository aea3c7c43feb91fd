//! Stack painting for the high-water mark every port reports in `MEM`: fill the free stack with a
//! pattern at start, and later find the deepest word that is no longer the pattern.

use core::ptr::{read_volatile, write_volatile};

/// The pattern painted into free stack, one 32-bit word at a time.
pub const PAINT: u32 = 0xA5A5_A5A5;

/// Paints the 32-bit words of `[lo, hi)`.
///
/// # Safety
/// `[lo, hi)` must be writable memory that holds nothing live: stack below the current frame.
pub unsafe fn paint(lo: usize, hi: usize) {
    let mut p = (lo + 3) & !3;
    while p + 4 <= hi {
        write_volatile(p as *mut u32, PAINT);
        p += 4;
    }
}

/// Bytes from `top` down to the deepest word below it that is no longer painted, scanning up
/// from `lo` (the bottom of what [`paint`] covered).
///
/// # Safety
/// `[lo, top)` must be readable.
pub unsafe fn high_water(lo: usize, top: usize) -> u64 {
    let mut p = (lo + 3) & !3;
    while p < top && read_volatile(p as *const u32) == PAINT {
        p += 4;
    }
    (top - p.min(top)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deepest_overwritten_word_sets_the_mark() {
        let mut mem = [0u32; 64];
        let base = mem.as_mut_ptr();
        let (lo, hi) = (base as usize, base as usize + 256);
        unsafe {
            paint(lo, hi);
            assert_eq!(high_water(lo, hi), 0);
            write_volatile(base.add(40), 7); // used down to word 40
            assert_eq!(high_water(lo, hi), (64 - 40) * 4);
        }
    }
}
