//! What every RISC-V port of the profiling firmware for real silicon does the same way, so that
//! a port is its console, its counter and its memory map: the entry ([`entry!`]: stack pointer,
//! floating point on where the core has it, then the port's `main`), setting up RAM from the
//! linker's symbols and painting the free RAM for the stack high-water mark
//! ([`fwcore::linked`]), `mcycle`
//! ([`Mcycle`]), and the firmware's port ([`board`]: [`fwcore::board::Board`]).

#![no_std]

use fwcore::{
    board::{Board, Console, Counter, Linked},
    linked,
};

pub use fwcore::linked::model_partition;

/// The entry `_start` in `.text.start`: the stack pointer from `_stack_top`, the global pointer
/// left alone (nothing is linked gp-relative), mstatus.FS on when the core has an FPU, then
/// `$main`, which must not return.
#[macro_export]
macro_rules! entry {
    ($main:ident) => {
        #[cfg(target_feature = "f")]
        core::arch::global_asm!(
            ".section .text.start, \"ax\"",
            ".globl _start",
            "_start:",
            "  la sp, _stack_top",
            "  li t0, 0x2000",
            "  csrs mstatus, t0",
            concat!("  call ", stringify!($main)),
            "1: j 1b",
        );
        #[cfg(not(target_feature = "f"))]
        core::arch::global_asm!(
            ".section .text.start, \"ax\"",
            ".globl _start",
            "_start:",
            "  la sp, _stack_top",
            concat!("  call ", stringify!($main)),
            "1: j 1b",
        );
    };
}

/// Zeroes .bss, copies .data's initial values into place (unless the loader did) and paints the
/// RAM between .bss and the current stack pointer.
///
/// # Safety
/// Only first thing in the port's `main`, once: it overwrites every static.
pub unsafe fn init() {
    linked::init_ram();
    let sp: usize;
    core::arch::asm!("mv {}, sp", out(reg) sp);
    linked::paint_stack(sp - 128);
}

/// The firmware's port for `chip` with the core's `counter` and the image's size in flash.
/// Call after [`init`].
pub fn board<C: Console, K: Counter>(chip: C, counter: K, code_bytes: u64) -> Board<C, K> {
    let figures = Linked {
        static_bytes: linked::static_bytes(),
        code_bytes,
        stack_high_water: linked::stack_high_water,
    };
    Board::new(chip, counter, figures)
}

/// The standard `mcycle` counter (`mcycle`/`mcycleh` on RV32).
pub struct Mcycle;

impl Counter for Mcycle {
    #[cfg(target_pointer_width = "64")]
    fn cycles(&mut self) -> u64 {
        let c: u64;
        // SAFETY: reads a machine-mode counter CSR; no memory access.
        unsafe { core::arch::asm!("csrr {}, mcycle", out(reg) c, options(nomem, nostack)) };
        c
    }
    #[cfg(target_pointer_width = "32")]
    fn cycles(&mut self) -> u64 {
        let csr = |high: bool| {
            let v: u32;
            // SAFETY: reads a machine-mode counter CSR; no memory access.
            unsafe {
                if high {
                    core::arch::asm!("csrr {}, mcycleh", out(reg) v, options(nomem, nostack));
                } else {
                    core::arch::asm!("csrr {}, mcycle", out(reg) v, options(nomem, nostack));
                }
            }
            v
        };
        halves(|| csr(true), || csr(false))
    }
}

/// A 64-bit counter read as two 32-bit halves, again if the high half moved in between.
pub fn halves(hi: impl Fn() -> u32, lo: impl Fn() -> u32) -> u64 {
    loop {
        let (h, l, h2) = (hi(), lo(), hi());
        if h == h2 {
            return (u64::from(h) << 32) | u64::from(l);
        }
    }
}

/// Extends a 32-bit counter that wraps to 64 bits: it must be read at least once per wrap
/// (every operator and every wait reads it).
pub struct Wide {
    ticks: u64,
    last: u32,
}

impl Wide {
    pub const fn new() -> Wide {
        Wide { ticks: 0, last: 0 }
    }
    pub fn update(&mut self, now: u32) -> u64 {
        self.ticks += u64::from(now.wrapping_sub(self.last));
        self.last = now;
        self.ticks
    }
}

impl Default for Wide {
    fn default() -> Self {
        Wide::new()
    }
}
