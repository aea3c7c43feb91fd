//! What every bare-metal image's linker script gives the firmware, used the same way by every
//! port: `_sbss`/`_ebss` (.bss), `_sdata`/`_edata` (.data in RAM) and `_sidata` (where .data's
//! initial values are stored; the same address when a loader put .data in place), `_stack_top`,
//! and the model partition `_model_start`/`_model_len`. Only on bare metal.

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

extern "C" {
    static mut _sbss: u32;
    static mut _ebss: u32;
    static mut _sdata: u32;
    static mut _edata: u32;
    static _sidata: u32;
    static _stack_top: u32;
    static _model_start: u8;
    static _model_len: u8;
}

/// Zeroes .bss and copies .data's initial values into place (unless a loader put them there).
///
/// # Safety
/// Only first thing after reset, once: it overwrites every static.
pub unsafe fn init_ram() {
    let mut p = addr_of_mut!(_sbss);
    while p < addr_of_mut!(_ebss) {
        write_volatile(p, 0);
        p = p.add(1);
    }
    let (mut d, mut s) = (addr_of_mut!(_sdata), addr_of!(_sidata));
    if !core::ptr::eq(d, s) {
        while d < addr_of_mut!(_edata) {
            write_volatile(d, read_volatile(s));
            d = d.add(1);
            s = s.add(1);
        }
    }
}

/// Paints the free RAM from the end of .bss to `below` for the stack high-water mark.
///
/// # Safety
/// `below` must be under the current stack pointer (nothing live is painted over).
pub unsafe fn paint_stack(below: usize) {
    crate::stack::paint(addr_of_mut!(_ebss) as usize, below);
}

/// Deepest stack use so far: the lowest word below the stack top no longer painted.
pub fn stack_high_water() -> u64 {
    // SAFETY: .bss end to stack top is this image's RAM.
    unsafe { crate::stack::high_water(addr_of!(_ebss) as usize, addr_of!(_stack_top) as usize) }
}

/// .data + .bss, as linked.
pub fn static_bytes() -> u64 {
    (addr_of!(_ebss) as usize - addr_of!(_sdata) as usize) as u64
}

/// Bytes of the image from `base`: everything up to where .data's initial values are stored,
/// and those.
pub fn code_bytes(base: usize) -> u64 {
    (addr_of!(_sidata) as usize - base + (addr_of!(_edata) as usize - addr_of!(_sdata) as usize))
        as u64
}

/// The model partition.
pub fn model_partition() -> &'static [u8] {
    // SAFETY: memory this image never writes, as its linker script says.
    unsafe { core::slice::from_raw_parts(addr_of!(_model_start), addr_of!(_model_len) as usize) }
}

/// The board's linker figures for [`crate::board::Board`], the image counted from `base`.
pub fn figures(base: usize) -> crate::board::Linked {
    crate::board::Linked {
        static_bytes: static_bytes(),
        code_bytes: code_bytes(base),
        stack_high_water,
    }
}
