//! The console: UART0 (an Arm PL011) on GP0 (TX) and GP1 (RX), the Pico's and Pico 2's default
//! UART pins — wired to a Raspberry Pi Debug Probe's UART or any USB-serial adapter — at 115200
//! 8N1, polled, from clk_peri (= clk_sys).

use crate::{
    chip::CHIP,
    regs::{rd, unreset, wr},
};

const U: usize = CHIP.uart0;
const DR: usize = U;
const FR: usize = U + 0x18;
const IBRD: usize = U + 0x24;
const FBRD: usize = U + 0x28;
const LCR_H: usize = U + 0x2C;
const CR: usize = U + 0x30;
const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;
pub const BAUD: u64 = 115_200;

/// Takes UART0 and the GPIO banks out of reset, muxes GP0/GP1 to the UART (FUNCSEL 2) with their
/// pads' inputs on (and, on the RP2350, their isolation off), and enables it at [`BAUD`].
pub fn init(clk_peri: u64) {
    unreset(
        CHIP.resets,
        (1 << CHIP.reset_io_bank0) | (1 << CHIP.reset_pads_bank0) | (1 << CHIP.reset_uart0),
    );
    for pin in 0..2usize {
        let pad = CHIP.pads_bank0 + 4 + 4 * pin;
        // IE on, OD off, ISO off (bit 8 is the RP2350's isolation latch, reserved on the RP2040).
        wr(pad, (rd(pad) | (1 << 6)) & !((1 << 7) | (1 << 8)));
        wr(CHIP.io_bank0 + 8 * pin + 4, 2);
    }
    // The baud divisor in 1/64ths, rounded: 64 × clk / (16 × baud).
    let div = (8 * clk_peri / BAUD).div_ceil(2);
    wr(IBRD, (div >> 6) as u32);
    wr(FBRD, (div & 0x3F) as u32);
    // 8 bits, FIFOs on; writing LCR_H latches the divisors.
    wr(LCR_H, (0b11 << 5) | (1 << 4));
    wr(CR, 1 | (1 << 8) | (1 << 9));
}

pub fn byte_ready() -> bool {
    rd(FR) & FR_RXFE == 0
}

pub fn read() -> u8 {
    rd(DR) as u8
}

pub fn write(b: u8) {
    while rd(FR) & FR_TXFF != 0 {}
    wr(DR, u32::from(b));
}
