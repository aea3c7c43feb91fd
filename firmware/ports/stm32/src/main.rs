//! The `stm32` port of the profiling firmware, for the STM32F405 (Cortex-M4F, 1 MiB flash,
//! 192 KiB SRAM of which the 128 KiB main SRAM is used; the same image runs on a real board and
//! on QEMU's `netduinoplus2`) and, with the `f411` feature, the STM32F411 (512 KiB flash,
//! 128 KiB SRAM, 100 MHz: a Nucleo-F411RE, console on its ST-LINK's virtual COM port) and, with
//! `f746`, the STM32F746 (Cortex-M7, 1 MiB flash, 320 KiB SRAM, 180 MHz: a Nucleo-F746ZG) and,
//! with `h743`, the STM32H743 (Cortex-M7, 2 MiB flash, 512 KiB AXI SRAM used, on its 64 MHz
//! HSI: a Nucleo-H743ZI). Startup (vector table, .data/.bss, FPU), the clock tree
//! ([`clock`]: 168 MHz from the HSI through the PLL, bounded waits, the emulator's clock where no
//! RCC answers), USART1 as the console ([`usart`]), SysTick on the processor clock as the cycle
//! counter (the count DWT's CYCCNT would give, which QEMU does not model), the die temperature
//! from the internal sensor ([`temp`]), the model read in place from its flash partition
//! (sectors 5–11), and a painted stack for the high-water mark.

#![no_std]
#![no_main]

mod chip;
mod clock;
mod temp;
mod usart;

use core::panic::PanicInfo;

use fwcore::{board::Console, fw};

use chip::CHIP;

/// The firmware's static arena for the model's buffers (KV cache, activations): what the main
/// SRAM has left after the firmware's statics and the stack's reserve (the link fails if it
/// does not fit).
const ARENA_BYTES: usize = CHIP.arena_bytes;

start::entry!(main);

/// The chip as the firmware's console: its USART, identity and memories, temperature sensor.
struct Stm32 {
    clocks: clock::Clocks,
}

impl Console for Stm32 {
    fn byte_ready(&mut self) -> bool {
        usart::byte_ready()
    }
    fn read(&mut self) -> u8 {
        usart::read()
    }
    fn write(&mut self, b: u8) {
        usart::write(b)
    }
    fn temperature_c(&mut self) -> Option<f32> {
        // An emulator without an RCC models no ADC either: don't wait for one.
        if self.clocks.emulated {
            return None;
        }
        temp::read_c()
    }
    fn platform(&self) -> &str {
        if self.clocks.emulated {
            "stm32f405-qemu"
        } else {
            CHIP.name
        }
    }
    fn clock_hz(&self) -> u64 {
        self.clocks.sysclk
    }
    fn ram_bytes(&self) -> u64 {
        CHIP.ram_bytes
    }
    fn flash_bytes(&self) -> u64 {
        CHIP.flash_bytes
    }
}

fn main() -> ! {
    let clocks = clock::init();
    usart::init(clocks.usart);
    let mut port = start::board(Stm32 { clocks }, 0x0800_0000);
    let arena = fwcore::static_arena!(ARENA_BYTES);
    fw::boot(&mut port, start::model_partition(), arena)
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    let mut port = start::halted(Stm32 {
        clocks: clock::Clocks {
            sysclk: 16_000_000,
            usart: 16_000_000,
            emulated: false,
        },
    });
    fw::halt(&mut port, "panic")
}
