//! The console: the chip's console USART ([`crate::chip`]: USART1 on PA9/PA10 for the F405,
//! USART2 on PA2/PA3 for the F411 and USART3 on PD8/PD9 for the F746 and H743 — on the Nucleos the
//! ST-LINK's virtual COM port), 115200 8N1,
//! polled. On QEMU's netduinoplus2 USART1 is the first `-serial` (QEMU's serial N is USART
//! N+1), whose model transmits synchronously and drops what arrives before the receiver is
//! enabled.

use core::ptr::{read_volatile, write_volatile};

use crate::chip::{UsartKind, CHIP};

const GPIO_MODER: usize = CHIP.console.gpio;
const GPIO_AFRL: usize = CHIP.console.gpio + 0x20;
const U: usize = CHIP.console.base;
const F7: bool = matches!(CHIP.console.kind, UsartKind::F7);
/// Status, receive and transmit data, baud rate and control 1, per register layout.
const SR: usize = if F7 { U + 0x1C } else { U };
const RDR: usize = if F7 { U + 0x24 } else { U + 0x04 };
const TDR: usize = if F7 { U + 0x28 } else { U + 0x04 };
const BRR: usize = if F7 { U + 0x0C } else { U + 0x08 };
const CR1: usize = if F7 { U } else { U + 0x0C };
const SR_RXNE: u32 = 1 << 5;
const SR_TXE: u32 = 1 << 7;
/// UE, TE, RE (UE is bit 0 on the F7, bit 13 on the F4).
const CR1_ON: u32 = if F7 {
    1 | (1 << 3) | (1 << 2)
} else {
    (1 << 13) | (1 << 3) | (1 << 2)
};
pub const BAUD: u64 = 115_200;

fn rd(a: usize) -> u32 {
    // SAFETY: an RCC/GPIO/USART register of this chip.
    unsafe { read_volatile(a as *const u32) }
}
fn wr(a: usize, v: u32) {
    // SAFETY: as above.
    unsafe { write_volatile(a as *mut u32, v) }
}

/// Clocks the GPIO port and the USART, muxes its pins to AF7 and enables it at [`BAUD`] from
/// its bus clock.
pub fn init(bus_hz: u64) {
    let c = &CHIP.console;
    wr(c.gpio_enr, rd(c.gpio_enr) | (1 << c.gpio_bit));
    wr(c.enr, rd(c.enr) | (1 << c.enable_bit));
    for pin in [c.tx, c.rx] {
        wr(
            GPIO_MODER,
            (rd(GPIO_MODER) & !(0b11 << (2 * pin))) | (0b10 << (2 * pin)),
        );
        // AFRL holds pins 0-7, AFRH (the next word) 8-15; four bits each.
        let (reg, shift) = (GPIO_AFRL + 4 * (pin as usize / 8), 4 * (pin % 8));
        wr(reg, (rd(reg) & !(0xF << shift)) | (7 << shift));
    }
    wr(BRR, ((bus_hz + BAUD / 2) / BAUD) as u32);
    wr(CR1, CR1_ON);
}

pub fn byte_ready() -> bool {
    rd(SR) & SR_RXNE != 0
}

pub fn read() -> u8 {
    rd(RDR) as u8
}

pub fn write(b: u8) {
    while rd(SR) & SR_TXE == 0 {}
    wr(TDR, u32::from(b));
}
