//! The console: USART1 on PA9 (TX) / PA10 (RX), 115200 8N1, polled. On QEMU's netduinoplus2 it
//! is the first `-serial` (QEMU's serial N is USART N+1), whose model transmits synchronously
//! and drops what arrives before the receiver is enabled.

use core::ptr::{read_volatile, write_volatile};

const RCC_AHB1ENR: usize = 0x4002_3830;
const RCC_APB2ENR: usize = 0x4002_3844;
const GPIOA_MODER: usize = 0x4002_0000;
const GPIOA_AFRH: usize = 0x4002_0024;
const USART1: usize = 0x4001_1000;
const SR: usize = USART1;
const DR: usize = USART1 + 0x04;
const BRR: usize = USART1 + 0x08;
const CR1: usize = USART1 + 0x0C;
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

/// Clocks GPIOA and USART1, muxes PA9/PA10 to AF7 and enables the USART at [`BAUD`] from the
/// APB2 clock.
pub fn init(apb2_hz: u64) {
    wr(RCC_AHB1ENR, rd(RCC_AHB1ENR) | 1);
    wr(RCC_APB2ENR, rd(RCC_APB2ENR) | (1 << 4));
    wr(
        GPIOA_MODER,
        (rd(GPIOA_MODER) & !(0xF << 18)) | (0b1010 << 18),
    );
    wr(GPIOA_AFRH, (rd(GPIOA_AFRH) & !(0xFF << 4)) | (0x77 << 4));
    wr(BRR, ((apb2_hz + BAUD / 2) / BAUD) as u32);
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
