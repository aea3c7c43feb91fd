//! The `qemu-riscv` port of the profiling firmware: RV64GC (the K210 class) or, built for
//! `riscv32imafc`, RV32 (the BL602 class) on QEMU's `virt` machine in machine mode. Startup
//! (stack, FPU on, .bss), the NS16550 UART as the serial line,
//! the CLINT's `mtime` (10 MHz) as the clock, `mcycle` as the cycle counter (under `-icount`
//! QEMU derives it from the instruction count: one per instruction at shift=0, so counts are
//! exact and deterministic), the model read in place from its partition (placed by
//! QEMU's `-device loader`), and a painted stack for the high-water mark.

#![no_std]
#![no_main]

use core::{
    panic::PanicInfo,
    ptr::{addr_of, addr_of_mut, read_volatile, write_volatile},
};

use fwcore::{
    fw::{self, Port},
    infer::Clock,
};

/// The CLINT timer's frequency on QEMU's virt machine.
const MTIME_HZ: u64 = 10_000_000;
/// `mcycle`'s rate under `-icount shift=0`: QEMU returns its virtual clock in nanoseconds.
const CYCLE_HZ: u64 = 1_000_000_000;
const RAM_BYTES: u64 = 96 << 20;
const FLASH_BYTES: u64 = 32 << 20;

const UART: usize = 0x1000_0000;
const UART_LSR: usize = UART + 5;
const MTIME: usize = 0x0200_BFF8;

extern "C" {
    static mut _sbss: u64;
    static mut _ebss: u64;
    static _sdata: u8;
    static _edata: u8;
    static _image_start: u8;
    static _model_start: u8;
    static _model_len: u8;
    static _stack_top: u64;
}

core::arch::global_asm!(
    ".section .text.start",
    ".globl _start",
    "_start:",
    "  la sp, _stack_top",
    // mstatus.FS = initial: floating point on, before any Rust code runs.
    "  li t0, 0x2000",
    "  csrs mstatus, t0",
    "  call rv_main",
    "1: j 1b",
);

/// Room for the inference state: the K210 class has megabytes; the BL602 class has 276 KB of
/// SRAM in all, so its arena is what is left after firmware data and stack.
#[cfg(target_pointer_width = "64")]
const ARENA_BYTES: usize = 5 << 20;
#[cfg(target_pointer_width = "32")]
const ARENA_BYTES: usize = 200 << 10;
#[repr(C, align(8))]
struct Arena([u8; ARENA_BYTES]);
static mut ARENA: Arena = Arena([0; ARENA_BYTES]);

#[cfg(target_pointer_width = "64")]
fn mtime() -> u64 {
    unsafe { read_volatile(MTIME as *const u64) }
}

/// A 64-bit counter read as two 32-bit halves, again if the high half moved in between.
#[cfg(target_pointer_width = "32")]
fn halves(hi: impl Fn() -> u32, lo: impl Fn() -> u32) -> u64 {
    loop {
        let (h, l, h2) = (hi(), lo(), hi());
        if h == h2 {
            return (u64::from(h) << 32) | u64::from(l);
        }
    }
}

#[cfg(target_pointer_width = "32")]
fn mtime() -> u64 {
    // SAFETY: the CLINT's timer registers.
    halves(
        || unsafe { read_volatile((MTIME + 4) as *const u32) },
        || unsafe { read_volatile(MTIME as *const u32) },
    )
}

#[cfg(target_pointer_width = "64")]
fn mcycle() -> u64 {
    let c: u64;
    // SAFETY: reads a machine-mode counter CSR; no memory access.
    unsafe { core::arch::asm!("csrr {}, mcycle", out(reg) c, options(nomem, nostack)) };
    c
}

/// RV32 reads the counter's halves from `mcycle` and `mcycleh`.
#[cfg(target_pointer_width = "32")]
fn mcycle() -> u64 {
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

unsafe fn paint_stack() {
    let sp: usize;
    core::arch::asm!("mv {}, sp", out(reg) sp);
    fwcore::stack::paint(addr_of_mut!(_ebss) as usize, sp - 128);
}

/// Deepest stack use so far: the lowest word below the stack top no longer painted.
fn stack_high_water() -> u64 {
    // SAFETY: .bss end to stack top is this image's RAM.
    unsafe { fwcore::stack::high_water(addr_of!(_ebss) as usize, addr_of!(_stack_top) as usize) }
}

struct Virt {
    static_bytes: u64,
}

impl Clock for Virt {
    fn cycles(&mut self) -> u64 {
        mcycle()
    }
}

impl Port for Virt {
    fn read_byte(&mut self) -> Option<u8> {
        unsafe {
            while read_volatile(UART_LSR as *const u8) & 1 == 0 {}
            Some(read_volatile(UART as *const u8))
        }
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            unsafe {
                while read_volatile(UART_LSR as *const u8) & 0x20 == 0 {}
                write_volatile(UART as *mut u8, b);
            }
        }
    }
    fn micros(&mut self) -> u64 {
        mtime() / (MTIME_HZ / 1_000_000)
    }
    fn memory(&mut self) -> (u64, u64, u64) {
        (self.static_bytes, 0, stack_high_water())
    }
    fn code_bytes(&self) -> u64 {
        // The image QEMU loads (as a boot flash would hold it): .text, .rodata and .data.
        (addr_of!(_edata) as usize - addr_of!(_image_start) as usize) as u64
    }
    fn platform(&self) -> &str {
        if cfg!(target_pointer_width = "64") {
            "riscv64-virt"
        } else {
            "riscv32-virt"
        }
    }
    fn clock_hz(&self) -> u64 {
        CYCLE_HZ
    }
    fn ram_bytes(&self) -> u64 {
        RAM_BYTES
    }
    fn flash_bytes(&self) -> u64 {
        FLASH_BYTES
    }
}

#[no_mangle]
extern "C" fn rv_main() -> ! {
    unsafe {
        let mut p = addr_of_mut!(_sbss);
        while p < addr_of_mut!(_ebss) {
            write_volatile(p, 0);
            p = p.add(1);
        }
        paint_stack();
    }
    let data_bss = (addr_of!(_ebss) as usize - addr_of!(_sdata) as usize) as u64;
    let mut port = Virt {
        static_bytes: data_bss,
    };
    // The model partition (QEMU's -device loader put the model there) and the static arena; the
    // arena is part of .bss, so `static_bytes` (.data + .bss) already counts it, as linked.
    let partition = unsafe {
        core::slice::from_raw_parts(addr_of!(_model_start), addr_of!(_model_len) as usize)
    };
    let arena = unsafe { &mut (*addr_of_mut!(ARENA)).0 };
    fw::boot(&mut port, partition, arena)
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    let mut port = Virt { static_bytes: 0 };
    fw::halt(&mut port, "panic")
}
