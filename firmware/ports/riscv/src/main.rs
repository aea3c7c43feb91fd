//! The `riscv` port of the profiling firmware for RISC-V silicon: the Kendryte K210 (dual
//! RV64GC at up to 400 MHz, 6 MiB general SRAM; Sipeed Maix boards) and, with the `bl602`
//! feature, the Bouffalo BL602 (SiFive E24 RV32IMAC core at 160 MHz, 276 KiB SRAM, XIP flash;
//! PineCone). Machine mode on hart 0; the chip's console UART ([`k210`], [`bl602`]), `mcycle` as
//! the cycle counter, and the model read in place: from SRAM on the K210 (the boot ROM copied it
//! there with the image), from XIP flash on the BL602. Neither chip has a temperature sensor
//! the firmware reads.

#![no_std]
#![no_main]

#[cfg(feature = "bl602")]
mod bl602;
#[cfg(not(feature = "bl602"))]
mod k210;

use core::{panic::PanicInfo, ptr::addr_of};

use fwcore::{board::Console, fw};
use start::Mcycle;

extern "C" {
    static _image_start: u8;
}

#[cfg(not(feature = "bl602"))]
const ARENA_BYTES: usize = 1792 << 10;
#[cfg(feature = "bl602")]
const ARENA_BYTES: usize = 144 << 10;

start::entry!(rv_main);

struct Chip {
    hz: u64,
    /// A byte the K210's UARTHS handed over while being asked whether one was there.
    #[cfg(not(feature = "bl602"))]
    pending: Option<u8>,
}

#[cfg(not(feature = "bl602"))]
impl Console for Chip {
    fn byte_ready(&mut self) -> bool {
        if self.pending.is_none() {
            self.pending = k210::try_read();
        }
        self.pending.is_some()
    }
    fn read(&mut self) -> u8 {
        self.pending.take().unwrap_or(0)
    }
    fn write(&mut self, b: u8) {
        k210::write(b)
    }
    fn platform(&self) -> &str {
        "k210"
    }
    fn clock_hz(&self) -> u64 {
        self.hz
    }
    fn ram_bytes(&self) -> u64 {
        6 << 20
    }
    fn flash_bytes(&self) -> u64 {
        16 << 20
    }
}

#[cfg(feature = "bl602")]
impl Console for Chip {
    fn byte_ready(&mut self) -> bool {
        bl602::byte_ready()
    }
    fn read(&mut self) -> u8 {
        bl602::read()
    }
    fn write(&mut self, b: u8) {
        bl602::write(b)
    }
    fn platform(&self) -> &str {
        "bl602"
    }
    fn clock_hz(&self) -> u64 {
        self.hz
    }
    fn ram_bytes(&self) -> u64 {
        276 << 10
    }
    fn flash_bytes(&self) -> u64 {
        2 << 20
    }
}

/// The image's bytes in flash: code and read-only data up to where .data's initial values are
/// stored, and those.
fn code_bytes() -> u64 {
    fwcore::linked::code_bytes(addr_of!(_image_start) as usize)
}

fn chip() -> Chip {
    #[cfg(not(feature = "bl602"))]
    return Chip {
        hz: k210::cpu_hz(),
        pending: None,
    };
    #[cfg(feature = "bl602")]
    Chip { hz: bl602::CPU_HZ }
}

#[no_mangle]
extern "C" fn rv_main() -> ! {
    // SAFETY: first thing after the entry, once.
    unsafe { start::init() };
    let chip = chip();
    #[cfg(not(feature = "bl602"))]
    k210::uart_init(chip.hz);
    #[cfg(feature = "bl602")]
    bl602::uart_init();
    let mut port = start::board(chip, Mcycle, code_bytes());
    let arena = fwcore::static_arena!(ARENA_BYTES);
    fw::boot(&mut port, start::model_partition(), arena)
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    fw::halt(&mut start::board(chip(), Mcycle, 0), "panic")
}
