//! The K210 (Kendryte K210 datasheet and standalone SDK's register maps): UARTHS, the
//! high-speed UART the boot ROM and the Maix boards' USB-serial bridge use, at 115200 8N1 from
//! the CPU clock, which is read back from SYSCTL (ACLK: PLL0 divided, or the 26 MHz crystal) —
//! the PLL is left as the boot ROM set it; `mcycle` counts cycles (riscv-start's `Mcycle`).

use core::ptr::{read_volatile, write_volatile};

const UARTHS: usize = 0x3800_0000;
const TXDATA: usize = UARTHS;
const RXDATA: usize = UARTHS + 0x04;
const TXCTRL: usize = UARTHS + 0x08;
const RXCTRL: usize = UARTHS + 0x0C;
const DIV: usize = UARTHS + 0x18;
const SYSCTL: usize = 0x5044_0000;
const PLL0: usize = SYSCTL + 0x08;
const CLK_SEL0: usize = SYSCTL + 0x20;
const XTAL_HZ: u64 = 26_000_000;

fn rd(a: usize) -> u32 {
    // SAFETY: a UARTHS/SYSCTL register of the K210.
    unsafe { read_volatile(a as *const u32) }
}
fn wr(a: usize, v: u32) {
    // SAFETY: as above.
    unsafe { write_volatile(a as *mut u32, v) }
}

/// The CPU clock: ACLK from PLL0 (26 MHz × (clkf + 1) / (clkr + 1) / (clkod + 1), or the
/// crystal when bypassed) divided by 2^(divider + 1), or the crystal.
pub fn cpu_hz() -> u64 {
    let sel = rd(CLK_SEL0);
    if sel & 1 == 0 {
        return XTAL_HZ;
    }
    let p = rd(PLL0);
    let pll = if p & (1 << 23) != 0 {
        XTAL_HZ
    } else {
        let (clkr, clkf, clkod) = (p & 0xF, (p >> 4) & 0x3F, (p >> 10) & 0xF);
        XTAL_HZ * u64::from(clkf + 1) / u64::from(clkr + 1) / u64::from(clkod + 1)
    };
    pll / (2 << ((sel >> 1) & 0b11))
}

pub fn uart_init(cpu_hz: u64) {
    wr(DIV, (cpu_hz / 115_200 - 1) as u32);
    wr(TXCTRL, 1);
    wr(RXCTRL, 1);
}

/// Reading RXDATA pops the byte: a read that found one hands it back.
pub fn try_read() -> Option<u8> {
    let v = rd(RXDATA);
    if v & (1 << 31) != 0 {
        None
    } else {
        Some(v as u8)
    }
}

pub fn write(b: u8) {
    while rd(TXDATA) & (1 << 31) != 0 {}
    wr(TXDATA, u32::from(b));
}
