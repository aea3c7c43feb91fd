//! The firmware's [`Port`] for a RISC-V chip with a polled byte console: what a chip port
//! provides ([`Console`]: its UART, its cycle counter, its identity and memories) and what every
//! chip does alike (microseconds from the counter at the core clock, the static and stack
//! figures from the linker symbols).

use fwcore::{fw::Port, infer::Clock};

/// What a chip port provides.
pub trait Console {
    fn byte_ready(&mut self) -> bool;
    fn read(&mut self) -> u8;
    fn write(&mut self, b: u8);
    /// The core's cycle counter, 64 bits wide.
    fn cycles(&mut self) -> u64;
    fn platform(&self) -> &str;
    fn clock_hz(&self) -> u64;
    fn ram_bytes(&self) -> u64;
    fn flash_bytes(&self) -> u64;
    /// Bytes of the image as stored in flash.
    fn code_bytes(&self) -> u64;
    fn temperature_c(&mut self) -> Option<f32> {
        None
    }
}

/// A chip's console with the linker's figures: the firmware's port.
pub struct Board<C> {
    pub chip: C,
    static_bytes: u64,
}

impl<C: Console> Board<C> {
    /// Call after [`crate::init`].
    pub fn new(chip: C) -> Board<C> {
        Board {
            chip,
            static_bytes: crate::static_bytes(),
        }
    }
}

impl<C: Console> Clock for Board<C> {
    fn cycles(&mut self) -> u64 {
        self.chip.cycles()
    }
}

impl<C: Console> Port for Board<C> {
    fn read_byte(&mut self) -> Option<u8> {
        while !self.chip.byte_ready() {
            // Keep a 32-bit counter's extension current through long waits.
            self.chip.cycles();
        }
        Some(self.chip.read())
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.chip.write(b);
        }
    }
    fn micros(&mut self) -> u64 {
        self.chip.cycles() / (self.chip.clock_hz() / 1_000_000).max(1)
    }
    fn memory(&mut self) -> (u64, u64, u64) {
        (self.static_bytes, 0, crate::stack_high_water())
    }
    fn code_bytes(&self) -> u64 {
        self.chip.code_bytes()
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
