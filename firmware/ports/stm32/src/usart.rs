//! The console: the chip's console USART ([`crate::chip`]: USART1 on PA9/PA10 for the F405,
//! USART2 on PA2/PA3 — the Nucleo's ST-LINK virtual COM port — for the F411), 115200 8N1,
//! polled. On QEMU's netduinoplus2 USART1 is the first `-serial` (QEMU's serial N is USART
//! N+1), whose model transmits synchronously and drops what arrives before the receiver is
//! enabled.

use core::ptr::{read_volatile, write_volatile};

use crate::chip::CHIP;

const RCC_AHB1ENR: usize = 0x4002_3830;
const RCC_APB1ENR: usize = 0x4002_3840;
const RCC_APB2ENR: usize = 0x4002_3844;
const GPIOA_MODER: usize = 0x4002_0000;
const GPIOA_AFRL: usize = 0x4002_0020;
const U: usize = CHIP.console.base;
const SR: usize = U;
const DR: usize = U + 0x04;
const BRR: usize = U + 0x08;
const CR1: usize = U + 0x0C;
const SR_RXNE: u32 = 1 << 5;
const SR_TXE: u32 = 1 << 7;
pub const BAUD: u64 = 115_200;

fn rd(a: usize) -> u32 {
    // SAFETY: an RCC/GPIO/USART register of this chip.
    unsafe { read_volatile(a as *const u32) }
}
fn wr(a: usize, v: u32) {
    // SAFETY: as above.
    unsafe { write_volatile(a as *mut u32, v) }
}

/// Clocks GPIOA and the USART, muxes its pins to AF7 and enables it at [`BAUD`] from its bus
/// clock.
pub fn init(bus_hz: u64) {
    let c = &CHIP.console;
    wr(RCC_AHB1ENR, rd(RCC_AHB1ENR) | 1);
    let en = if c.apb2 { RCC_APB2ENR } else { RCC_APB1ENR };
    wr(en, rd(en) | (1 << c.enable_bit));
    for pin in [c.tx, c.rx] {
        wr(
            GPIOA_MODER,
            (rd(GPIOA_MODER) & !(0b11 << (2 * pin))) | (0b10 << (2 * pin)),
        );
        // AFRL holds pins 0-7, AFRH (the next word) 8-15; four bits each.
        let (reg, shift) = (GPIOA_AFRL + 4 * (pin as usize / 8), 4 * (pin % 8));
        wr(reg, (rd(reg) & !(0xF << shift)) | (7 << shift));
    }
    wr(BRR, ((bus_hz + BAUD / 2) / BAUD) as u32);
    // UE, TE, RE.
    wr(CR1, (1 << 13) | (1 << 3) | (1 << 2));
}

pub fn byte_ready() -> bool {
    rd(SR) & SR_RXNE != 0
}

pub fn read() -> u8 {
    rd(DR) as u8
}

pub fn write(b: u8) {
    while rd(SR) & SR_TXE == 0 {}
    wr(DR, u32::from(b));
}
