//! The `qemu-mps2` port of the profiling firmware: Cortex-M4F (`mps2-an386`) and Cortex-M7
//! (`mps2-an500`) under QEMU. Startup (vector table, .data/.bss, FPU), the CMSDK UART0 as the
//! serial line, SysTick as the cycle counter (with `-icount`, QEMU's virtual time follows the
//! instruction count, so counts are deterministic), the model read in place from its own flash
//! partition (placed there by QEMU's `-device loader`), and a painted stack for the high-water
//! mark (RAM set-up, stack and SysTick are `cortex-m-start`'s, shared with the stm32 port). No
//! crates besides the firmware's own: nothing host-only can creep in.

#![no_std]
#![no_main]

use core::{
    panic::PanicInfo,
    ptr::{read_volatile, write_volatile},
};

use fwcore::{board::Console, fw};

/// The machine's SysTick reference: QEMU's mps2 boards clock the CPU at 25 MHz.
const CLOCK_HZ: u64 = 25_000_000;
const RAM_BYTES: u64 = 4 << 20;
const FLASH_BYTES: u64 = 4 << 20;

const UART0: usize = 0x4000_4000;
const UART_DATA: usize = UART0;
const UART_STATE: usize = UART0 + 4;
const UART_CTRL: usize = UART0 + 8;
const UART_BAUDDIV: usize = UART0 + 0x10;

/// The firmware's static arena for the model's buffers (KV cache, activations).
const ARENA_BYTES: usize = 3 << 20;

start::entry!(main);

fn uart_init() {
    // SAFETY: the CMSDK UART's registers.
    unsafe {
        write_volatile(UART_BAUDDIV as *mut u32, 16);
        write_volatile(UART_CTRL as *mut u32, 0b11);
    }
}

/// The machine as the firmware's console: the CMSDK UART.
struct Mps2;

impl Console for Mps2 {
    fn byte_ready(&mut self) -> bool {
        // SAFETY: the UART's state register.
        unsafe { read_volatile(UART_STATE as *const u32) & 0b10 != 0 }
    }
    fn read(&mut self) -> u8 {
        // SAFETY: the UART's data register.
        unsafe { read_volatile(UART_DATA as *const u32) as u8 }
    }
    fn write(&mut self, b: u8) {
        // SAFETY: the UART's state and data registers.
        unsafe {
            while read_volatile(UART_STATE as *const u32) & 0b1 != 0 {}
            write_volatile(UART_DATA as *mut u32, u32::from(b));
        }
    }
    fn platform(&self) -> &str {
        "mps2-cortex-m"
    }
    fn clock_hz(&self) -> u64 {
        CLOCK_HZ
    }
    fn ram_bytes(&self) -> u64 {
        RAM_BYTES
    }
    fn flash_bytes(&self) -> u64 {
        FLASH_BYTES
    }
}

fn main() -> ! {
    uart_init();
    // Flash starts at 0. The model partition is where QEMU's -device loader put the model; the
    // arena is part of .bss, so the static figure (.data + .bss) already counts it, as linked.
    let mut port = start::board(Mps2, 0);
    let arena = fwcore::static_arena!(ARENA_BYTES);
    fw::boot(&mut port, start::model_partition(), arena)
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    fw::halt(&mut start::halted(Mps2), "panic")
}
