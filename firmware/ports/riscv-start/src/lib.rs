//! What every RISC-V port of the profiling firmware for real silicon does the same way, so that
//! a port is its console, its counter and its memory map: the entry ([`entry!`]: stack pointer,
//! floating point on where the core has it, then the port's `main`), setting up RAM from the
//! linker's symbols (`_sbss`, `_ebss`, `_sdata`, `_edata`, `_sidata`), painting the free RAM for
//! the stack high-water mark (`_stack_top`), the model partition and arena, `mcycle`
//! ([`Mcycle`]), and the firmware's port ([`board`]: [`fwcore::board::Board`]).

#![no_std]

use fwcore::board::{Board, Console, Counter, Linked};

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

extern "C" {
    static _model_start: u8;
    static _model_len: u8;
    static mut _sbss: u32;
    static mut _ebss: u32;
    static mut _sdata: u32;
    static mut _edata: u32;
    static _sidata: u32;
    static _stack_top: u32;
}

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

/// Zeroes .bss, copies .data's initial values from where the image stores them, and paints the
/// RAM between .bss and the current stack pointer.
///
/// # Safety
/// Only first thing in the port's `main`, once: it overwrites every static.
pub unsafe fn init() {
    let mut p = addr_of_mut!(_sbss);
    while p < addr_of_mut!(_ebss) {
        write_volatile(p, 0);
        p = p.add(1);
    }
    let (mut d, mut s) = (addr_of_mut!(_sdata), addr_of!(_sidata));
    // The loader may have put .data in place already (then the two are one).
    if !core::ptr::eq(d, s) {
        while d < addr_of_mut!(_edata) {
            write_volatile(d, read_volatile(s));
            d = d.add(1);
            s = s.add(1);
        }
    }
    let sp: usize;
    core::arch::asm!("mv {}, sp", out(reg) sp);
    fwcore::stack::paint(addr_of_mut!(_ebss) as usize, sp - 128);
}

/// Deepest stack use so far: the lowest word below the stack top no longer painted.
pub fn stack_high_water() -> u64 {
    // SAFETY: .bss end to stack top is this image's RAM.
    unsafe { fwcore::stack::high_water(addr_of!(_ebss) as usize, addr_of!(_stack_top) as usize) }
}

/// .data + .bss, as linked.
pub fn static_bytes() -> u64 {
    (addr_of!(_ebss) as usize - addr_of!(_sdata) as usize) as u64
}

/// The model partition the linker script places (`_model_start`, `_model_len`).
pub fn model_partition() -> &'static [u8] {
    // SAFETY: memory this image never writes, as long as the linker script says.
    unsafe { core::slice::from_raw_parts(addr_of!(_model_start), addr_of!(_model_len) as usize) }
}

/// The firmware's port for `chip` with the core's `counter` and the image's size in flash.
/// Call after [`init`].
pub fn board<C: Console, K: Counter>(chip: C, counter: K, code_bytes: u64) -> Board<C, K> {
    Board::new(
        chip,
        counter,
        Linked {
            static_bytes: static_bytes(),
            code_bytes,
            stack_high_water,
        },
    )
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
