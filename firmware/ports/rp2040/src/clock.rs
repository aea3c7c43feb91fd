//! The clock tree: the 12 MHz crystal (XOSC) as clk_ref, PLL_SYS from it as clk_sys
//! ([`crate::chip`]: 125 MHz on the RP2040, 150 MHz on the RP2350), clk_peri (the UART's) on
//! clk_sys, clk_adc on the crystal. The order is the SDK's (clk_sys off the PLL while it is
//! changed); every wait is bounded. A crystal that does not start leaves the chip on its ring
//! oscillator, whose nominal speed is then reported.

use crate::{
    chip::CHIP,
    regs::{clear, rd, set, unreset, wait, wr},
};

const XOSC_CTRL: usize = CHIP.xosc;
const XOSC_STATUS: usize = CHIP.xosc + 0x04;
const XOSC_STARTUP: usize = CHIP.xosc + 0x0C;
const CLK_REF_CTRL: usize = CHIP.clocks + 0x30;
const CLK_REF_SELECTED: usize = CHIP.clocks + 0x38;
const CLK_SYS_CTRL: usize = CHIP.clocks + 0x3C;
const CLK_SYS_SELECTED: usize = CHIP.clocks + 0x44;
const CLK_PERI_CTRL: usize = CHIP.clocks + 0x48;
const CLK_ADC_CTRL: usize = CHIP.clocks + CHIP.clk_adc_ctrl;
const PLL_CS: usize = CHIP.pll_sys;
const PLL_PWR: usize = CHIP.pll_sys + 0x04;
const PLL_FBDIV: usize = CHIP.pll_sys + 0x08;
const PLL_PRIM: usize = CHIP.pll_sys + 0x0C;
const ENABLE: u32 = 1 << 11;
const WAIT: u32 = 500_000;

/// Sets the clocks up; the core clock it ended with.
pub fn init() -> u64 {
    // The crystal: 1-15 MHz range, start-up delay of ~1 ms in units of 256 cycles.
    wr(XOSC_STARTUP, (12_000 + 128) / 256);
    wr(XOSC_CTRL, (0xFAB << 12) | 0xAA0);
    if !wait(XOSC_STATUS, WAIT, |s| s & (1 << 31) != 0) {
        clk_peri_on();
        return CHIP.rosc_hz;
    }
    // clk_sys and clk_ref back on their glitchless defaults while the PLL changes.
    clear(CLK_SYS_CTRL, 1);
    wait(CLK_SYS_SELECTED, WAIT, |s| s == 1);
    clear(CLK_REF_CTRL, 0b11);
    wait(CLK_REF_SELECTED, WAIT, |s| s == 1);
    // PLL_SYS: reset, reference divider 1, feedback divider, power the PLL and VCO up, lock,
    // then the post dividers and their power.
    set(CHIP.resets, 1 << CHIP.reset_pll_sys);
    if !unreset(CHIP.resets, 1 << CHIP.reset_pll_sys) {
        clk_peri_on();
        return CHIP.rosc_hz;
    }
    wr(PLL_CS, 1);
    wr(PLL_FBDIV, CHIP.fbdiv);
    clear(PLL_PWR, (1 << 0) | (1 << 5));
    let locked = wait(PLL_CS, WAIT, |s| s & (1 << 31) != 0);
    wr(PLL_PRIM, (CHIP.postdiv1 << 16) | (CHIP.postdiv2 << 12));
    clear(PLL_PWR, 1 << 3);
    // clk_ref on the crystal.
    wr(CLK_REF_CTRL, (rd(CLK_REF_CTRL) & !0b11) | 2);
    wait(CLK_REF_SELECTED, WAIT, |s| s == 1 << 2);
    let hz = if locked {
        // clk_sys from its auxiliary mux (AUXSRC 0: PLL_SYS), then switched to it.
        wr(CLK_SYS_CTRL, rd(CLK_SYS_CTRL) & !(0b111 << 5));
        set(CLK_SYS_CTRL, 1);
        wait(CLK_SYS_SELECTED, WAIT, |s| s == 1 << 1);
        CHIP.sysclk
    } else {
        // clk_sys stays on clk_ref: the crystal.
        12_000_000
    };
    clk_peri_on();
    // clk_adc from the crystal (AUXSRC 3): the ADC takes at most 48 MHz.
    wr(CLK_ADC_CTRL, ENABLE | (3 << 5));
    hz
}

/// clk_peri on clk_sys (AUXSRC 0), for the UART.
fn clk_peri_on() {
    wr(CLK_PERI_CTRL, ENABLE);
}
