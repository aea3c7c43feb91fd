//! The BL602 (Bouffalo Lab BL602/BL604 reference manual's GLB, HBN and UART registers): UART0 on
//! GPIO16 (TX) and GPIO7 (RX), the pins of the PineCone's CH340 bridge and of the boot ROM's
//! flashing UART, at 115200 8N1 from the 160 MHz PLL clock. The core clock is what the boot
//! header blflash writes sets (160 MHz from the PLL).

use core::ptr::{read_volatile, write_volatile};

pub const CPU_HZ: u64 = 160_000_000;
const UART_CLK_HZ: u64 = 160_000_000;
const GLB: usize = 0x4000_0000;
const GLB_CLK_CFG2: usize = GLB + 0x08;
const GLB_UART_SIG_SEL: usize = GLB + 0xC0;
const GLB_GPIO_CFGCTL: usize = GLB + 0x100;
const HBN_GLB: usize = 0x4000_F030;
const UART0: usize = 0x4000_A000;
const UTX_CONFIG: usize = UART0;
const URX_CONFIG: usize = UART0 + 0x04;
const BIT_PRD: usize = UART0 + 0x08;
const FIFO_CONFIG_1: usize = UART0 + 0x84;
const FIFO_WDATA: usize = UART0 + 0x88;
const FIFO_RDATA: usize = UART0 + 0x8C;
const TX_PIN: usize = 16;
const RX_PIN: usize = 7;

fn rd(a: usize) -> u32 {
    // SAFETY: a GLB/HBN/UART register of the BL602.
    unsafe { read_volatile(a as *const u32) }
}
fn wr(a: usize, v: u32) {
    // SAFETY: as above.
    unsafe { write_volatile(a as *mut u32, v) }
}

/// A pin to the UART function (7) with its input and pull-up on, and its UART signal
/// (pin mod 8) to `signal` (2 = UART0 TXD, 3 = UART0 RXD).
fn uart_pin(pin: usize, signal: u32) {
    let reg = GLB_GPIO_CFGCTL + 4 * (pin / 2);
    let shift = 16 * (pin % 2);
    let cfg: u32 = 1 | (1 << 1) | (1 << 4) | (7 << 8);
    wr(reg, (rd(reg) & !(0xFFFF << shift)) | (cfg << shift));
    let s = 4 * (pin % 8);
    wr(
        GLB_UART_SIG_SEL,
        (rd(GLB_UART_SIG_SEL) & !(0xF << s)) | (signal << s),
    );
}

pub fn uart_init() {
    // The UART clock from the 160 MHz PLL (HBN_UART_CLK_SEL), undivided, enabled.
    wr(HBN_GLB, rd(HBN_GLB) | (1 << 2));
    wr(GLB_CLK_CFG2, (rd(GLB_CLK_CFG2) & !0b111) | (1 << 4));
    uart_pin(TX_PIN, 2);
    uart_pin(RX_PIN, 3);
    let prd = (UART_CLK_HZ / 115_200 - 1) as u32;
    wr(BIT_PRD, (prd << 16) | prd);
    // Enabled, free-run, 8 data bits, 1 stop bit; the receiver 8 data bits.
    wr(UTX_CONFIG, 1 | (1 << 2) | (7 << 8) | (1 << 11));
    wr(URX_CONFIG, 1 | (7 << 8));
}

pub fn byte_ready() -> bool {
    (rd(FIFO_CONFIG_1) >> 8) & 0x3F != 0
}

pub fn read() -> u8 {
    rd(FIFO_RDATA) as u8
}

pub fn write(b: u8) {
    while rd(FIFO_CONFIG_1) & 0x3F == 0 {}
    wr(FIFO_WDATA, u32::from(b));
}
