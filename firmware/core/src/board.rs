//! The firmware's [`Port`] for a bare-metal chip with a polled byte console, written once for
//! every silicon port: what a chip provides ([`Console`]: its UART, identity, memories and
//! temperature sensor), what its core provides ([`Counter`]: the cycle counter), and what the
//! linker says ([`Linked`]: static RAM, the stack's high-water mark, the image's size in flash).
//! Microseconds come from the counter at the core clock.

use crate::{fw::Port, infer::Clock};

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
    /// The die temperature, where the chip has a sensor that answers.
    fn temperature_c(&mut self) -> Option<f32> {
        None
    }
}

/// The core's cycle counter, 64 bits wide.
pub trait Counter {
    fn cycles(&mut self) -> u64;
    /// Where a measured stretch starts (after serial I/O, at a compute phase): a counter with a
    /// tick phase restarts it there, so that a stretch counts its own cycles only.
    fn restart(&mut self) {}
}

/// The image's figures from its linker symbols.
#[derive(Clone, Copy)]
pub struct Linked {
    /// .data + .bss.
    pub static_bytes: u64,
    /// Bytes the image takes in flash.
    pub code_bytes: u64,
    /// The deepest stack use so far (the painted stack's lowest overwritten word).
    pub stack_high_water: fn() -> u64,
}

/// A chip's console, its core's counter and its linker figures: the firmware's port.
pub struct Board<C, K> {
    pub chip: C,
    counter: K,
    linked: Linked,
}

impl<C: Console, K: Counter> Board<C, K> {
    pub fn new(chip: C, counter: K, linked: Linked) -> Board<C, K> {
        Board {
            chip,
            counter,
            linked,
        }
    }
}

impl<C: Console, K: Counter> Clock for Board<C, K> {
    fn cycles(&mut self) -> u64 {
        self.counter.cycles()
    }
}

impl<C: Console, K: Counter> Port for Board<C, K> {
    fn read_byte(&mut self) -> Option<u8> {
        while !self.chip.byte_ready() {
            // Keep a wrapping counter's count current through long waits.
            self.counter.cycles();
        }
        Some(self.chip.read())
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.chip.write(b);
        }
        self.counter.restart();
    }
    fn phase(&mut self, computing: bool) {
        if computing {
            self.counter.restart();
        }
    }
    fn micros(&mut self) -> u64 {
        self.counter.cycles() / (self.chip.clock_hz() / 1_000_000).max(1)
    }
    fn memory(&mut self) -> (u64, u64, u64) {
        (
            self.linked.static_bytes,
            0,
            (self.linked.stack_high_water)(),
        )
    }
    fn code_bytes(&self) -> u64 {
        self.linked.code_bytes
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

/// A static arena of `$bytes` bytes, 8-aligned, for the model's buffers (KV cache,
/// activations): `&'static mut [u8]`. Use once, at boot (the link fails if it does not fit).
#[macro_export]
macro_rules! static_arena {
    ($bytes:expr) => {{
        #[repr(C, align(8))]
        struct Arena([u8; $bytes]);
        static mut ARENA: Arena = Arena([0; $bytes]);
        // SAFETY: evaluated once, at boot; nothing else names this static.
        unsafe { &mut (*core::ptr::addr_of_mut!(ARENA)).0 }
    }};
}
