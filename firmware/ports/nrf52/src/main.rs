//! The `nrf52` port of the profiling firmware, for the nRF52840 (Cortex-M4F at 64 MHz, 1 MiB
//! flash, 256 KiB RAM; an nRF52840-DK). Startup (vector table, .data/.bss, FPU), the crystal
//! started as the high-frequency clock (the UART's accuracy; the core runs at 64 MHz either
//! way), UARTE0 on the DK's virtual COM port as the console ([`uarte`]), SysTick on the core
//! clock as the cycle counter, the die temperature from the TEMP peripheral, and the model read
//! in place from its flash partition at 0x20000.

#![no_std]
#![no_main]

mod uarte;

use core::{
    panic::PanicInfo,
    ptr::{read_volatile, write_volatile},
};

use fwcore::{board::Console, fw};

const CLOCK_HZ: u64 = 64_000_000;
const TASKS_HFCLKSTART: usize = 0x4000_0000;
const EVENTS_HFCLKSTARTED: usize = 0x4000_0100;
const TEMP_START: usize = 0x4000_C000;
const TEMP_DATARDY: usize = 0x4000_C100;
const TEMP_VALUE: usize = 0x4000_C508;

/// The static arena for the model's buffers: the RAM left after the statics and the stack's
/// reserve.
const ARENA_BYTES: usize = 224 << 10;

start::entry!(main);

fn rd(a: usize) -> u32 {
    // SAFETY: a CLOCK/TEMP register.
    unsafe { read_volatile(a as *const u32) }
}
fn wr(a: usize, v: u32) {
    // SAFETY: as above.
    unsafe { write_volatile(a as *mut u32, v) }
}

struct Nrf52;

impl Console for Nrf52 {
    fn byte_ready(&mut self) -> bool {
        uarte::byte_ready()
    }
    fn read(&mut self) -> u8 {
        uarte::read()
    }
    fn write(&mut self, b: u8) {
        uarte::write(b)
    }
    /// The TEMP peripheral: one measurement in 0.25 °C steps, waited for a bounded time.
    fn temperature_c(&mut self) -> Option<f32> {
        wr(TEMP_DATARDY, 0);
        wr(TEMP_START, 1);
        for _ in 0..1_000_000 {
            if rd(TEMP_DATARDY) != 0 {
                return Some(rd(TEMP_VALUE) as i32 as f32 * 0.25);
            }
        }
        None
    }
    fn platform(&self) -> &str {
        "nrf52840"
    }
    fn clock_hz(&self) -> u64 {
        CLOCK_HZ
    }
    fn ram_bytes(&self) -> u64 {
        256 << 10
    }
    fn flash_bytes(&self) -> u64 {
        1 << 20
    }
}

fn main() -> ! {
    wr(EVENTS_HFCLKSTARTED, 0);
    wr(TASKS_HFCLKSTART, 1);
    for _ in 0..1_000_000 {
        if rd(EVENTS_HFCLKSTARTED) != 0 {
            break;
        }
    }
    uarte::init();
    let mut port = start::board(Nrf52, 0);
    let arena = fwcore::static_arena!(ARENA_BYTES);
    fw::boot(&mut port, start::model_partition(), arena)
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    fw::halt(&mut start::halted(Nrf52), "panic")
}
