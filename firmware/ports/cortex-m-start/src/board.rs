//! The firmware's [`Port`] for a Cortex-M chip with a polled byte console: what a chip port
//! provides ([`Console`]: its UART, its identity and memories, its temperature sensor) and what
//! every chip does alike — SysTick as the cycle counter (restarted where measured stretches
//! begin), microseconds from it at the core clock, the static and stack figures from the linker
//! symbols.

use fwcore::{fw::Port, infer::Clock};

use crate::SysTick;

/// What a chip port provides.
pub trait Console {
    /// A received byte is waiting.
    fn byte_ready(&mut self) -> bool;
    fn read(&mut self) -> u8;
    /// Sends one byte, waiting for room.
    fn write(&mut self, b: u8);
    /// What `READY platform=` says.
    fn platform(&self) -> &str;
    fn clock_hz(&self) -> u64;
    fn ram_bytes(&self) -> u64;
    fn flash_bytes(&self) -> u64;
    /// Where flash starts (the image's code size counts from there).
    fn flash_base(&self) -> usize;
    /// The die temperature, where the chip has a sensor that answers.
    fn temperature_c(&mut self) -> Option<f32> {
        None
    }
}

/// A chip's console with the core's counters: the firmware's port.
pub struct Board<C> {
    pub chip: C,
    tick: SysTick,
    static_bytes: u64,
}

impl<C: Console> Board<C> {
    /// Starts SysTick; call after [`crate::init`].
    pub fn new(chip: C) -> Board<C> {
        Board {
            chip,
            tick: SysTick::start(),
            static_bytes: crate::static_bytes(),
        }
    }

    /// A port for the panic handler: nothing counted, nothing started.
    pub fn halted(chip: C) -> Board<C> {
        Board {
            chip,
            tick: SysTick::idle(),
            static_bytes: 0,
        }
    }
}

impl<C: Console> Clock for Board<C> {
    fn cycles(&mut self) -> u64 {
        self.tick.cycles()
    }
}

impl<C: Console> Port for Board<C> {
    fn read_byte(&mut self) -> Option<u8> {
        while !self.chip.byte_ready() {
            // Keep the tick count current through long waits.
            self.tick.cycles();
        }
        Some(self.chip.read())
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.chip.write(b);
        }
        self.tick.restart();
    }
    fn phase(&mut self, computing: bool) {
        if computing {
            self.tick.restart();
        }
    }
    fn micros(&mut self) -> u64 {
        self.tick.cycles() / (self.chip.clock_hz() / 1_000_000).max(1)
    }
    fn memory(&mut self) -> (u64, u64, u64) {
        (self.static_bytes, 0, crate::stack_high_water())
    }
    fn code_bytes(&self) -> u64 {
        crate::code_bytes(self.chip.flash_base())
    }
    fn temperature_c(&mut self) -> Option<f32> {
        self.chip.temperature_c()
    }
    fn platform(&self) -> &str {
        self.chip.platform()
    }
    fn clock_hz(&self) -> u64 {
        self.chip.clock_hz()
    }
    fn ram_bytes(&self) -> u64 {
        self.chip.ram_bytes()
    }
    fn flash_bytes(&self) -> u64 {
        self.chip.flash_bytes()
    }
}
