//! The `rp2040` port of the profiling firmware, for the RP2040 (dual Cortex-M0+, no FPU; a
//! Raspberry Pi Pico: 2 MiB flash, 264 KiB SRAM) and, with the `rp2350` feature, the RP2350
//! (Cortex-M33F; a Pico 2: 4 MiB flash, 520 KiB SRAM), on core 0. Boot: the RP2040's
//! second-stage bootloader from the `rp2040-boot2` crate at the start of flash, or the
//! RP2350's IMAGE_DEF block after the vector table; then the clocks ([`clock`]), UART0 on
//! GP0/GP1 as the console ([`uart`]), SysTick on the core clock as the cycle counter, the die
//! temperature from the ADC ([`temp`]), and the model read in place (XIP) from its flash
//! partition at 0x10040000.

#![no_std]
#![no_main]

mod chip;
mod clock;
mod regs;
mod temp;
mod uart;

use core::panic::PanicInfo;

use fwcore::{board::Console, fw};

use chip::CHIP;

/// The RP2040's second stage: configures the QSPI flash for execute-in-place and enters the
/// vector table that follows it.
#[cfg(not(feature = "rp2350"))]
#[link_section = ".boot2"]
#[used]
static BOOT2: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

/// The RP2350's IMAGE_DEF block (RP2350 datasheet §5.9): the block markers around an
/// IMAGE_TYPE item (executable, Arm, RP2350, secure) and the last-item marker, the link to
/// itself (a block loop of one).
#[cfg(feature = "rp2350")]
#[link_section = ".start_block"]
#[used]
static IMAGE_DEF: [u32; 5] = [0xFFFF_DED3, 0x1021_0142, 0x0000_01FF, 0, 0xAB12_3579];

/// The static arena for the model's buffers (KV cache, activations): what the SRAM has left
/// after the statics and the stack's reserve (the link fails if it does not fit).
const ARENA_BYTES: usize = CHIP.arena_bytes;

start::entry!(main);

/// The chip as the firmware's console.
struct Rp {
    sysclk: u64,
}

impl Console for Rp {
    fn byte_ready(&mut self) -> bool {
        uart::byte_ready()
    }
    fn read(&mut self) -> u8 {
        uart::read()
    }
    fn write(&mut self, b: u8) {
        uart::write(b)
    }
    fn temperature_c(&mut self) -> Option<f32> {
        temp::read_c()
    }
    fn platform(&self) -> &str {
        CHIP.name
    }
    fn clock_hz(&self) -> u64 {
        self.sysclk
    }
    fn ram_bytes(&self) -> u64 {
        CHIP.ram_bytes
    }
    fn flash_bytes(&self) -> u64 {
        CHIP.flash_bytes
    }
}

fn main() -> ! {
    let sysclk = clock::init();
    uart::init(sysclk);
    let mut port = start::board(Rp { sysclk }, 0x1000_0000);
    let arena = fwcore::static_arena!(ARENA_BYTES);
    fw::boot(&mut port, start::model_partition(), arena)
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    fw::halt(
        &mut start::halted(Rp {
            sysclk: CHIP.rosc_hz,
        }),
        "panic",
    )
}
