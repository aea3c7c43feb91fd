//! The STM32F4's clock tree: the chip's SYSCLK from the internal 16 MHz HSI through the main PLL
//! (F405: M 16, N 336, P 2 = 168 MHz, APB2 84 MHz, five flash wait states; F411: N 200 = 100 MHz,
//! APB2 100 MHz, three; F746: N 360 = 180 MHz, the fastest without over-drive, six; see
//! [`crate::chip`]; the H743 stays on its 64 MHz HSI), every wait for a ready bit bounded. A chip whose RCC reads all zeros is an emulator without an RCC model
//! (QEMU's netduinoplus2): nothing is configured and the emulator's own clock is reported.

use core::ptr::{read_volatile, write_volatile};

const RCC: usize = 0x4002_3800;
const RCC_CR: usize = RCC;
const RCC_PLLCFGR: usize = RCC + 0x04;
const RCC_CFGR: usize = RCC + 0x08;
const FLASH_ACR: usize = 0x4002_3C00;

use crate::chip::CHIP;

const HSI_HZ: u64 = 16_000_000;
/// QEMU's netduinoplus2 clocks the CPU (and SysTick) at 168 MHz whatever the RCC is told.
const QEMU_HZ: u64 = 168_000_000;
/// Polls of a ready bit before giving up (milliseconds at HSI speed).
const WAIT: u32 = 200_000;

/// What the clock setup ended with.
#[derive(Clone, Copy)]
pub struct Clocks {
    /// The core clock (SysTick counts it).
    pub sysclk: u64,
    /// The clock of the console USART's bus.
    pub usart: u64,
    /// No RCC model answered: an emulator.
    pub emulated: bool,
}

fn rd(a: usize) -> u32 {
    // SAFETY: an RCC/flash-interface register of this chip.
    unsafe { read_volatile(a as *const u32) }
}
fn wr(a: usize, v: u32) {
    // SAFETY: as above.
    unsafe { write_volatile(a as *mut u32, v) }
}

fn wait_for(addr: usize, mask: u32, want: u32) -> bool {
    for _ in 0..WAIT {
        if rd(addr) & mask == want {
            return true;
        }
    }
    false
}

pub fn init() -> Clocks {
    if !CHIP.pll {
        // The chip stays on its reset clock (the H743's RCC is elsewhere and is not touched).
        return Clocks {
            sysclk: CHIP.sysclk,
            usart: CHIP.apb1,
            emulated: false,
        };
    }
    // After reset HSION and HSIRDY are set: a zero RCC_CR is no RCC at all.
    if rd(RCC_CR) == 0 {
        return Clocks {
            sysclk: QEMU_HZ,
            usart: QEMU_HZ / 2,
            emulated: true,
        };
    }
    let hsi = Clocks {
        sysclk: HSI_HZ,
        usart: HSI_HZ,
        emulated: false,
    };
    // PLL from HSI: VCO in = 16 MHz / M = 1 MHz, VCO = × N, SYSCLK = VCO / P.
    wr(RCC_CR, rd(RCC_CR) & !(1 << 24)); // PLL off while it is configured
    if !wait_for(RCC_CR, 1 << 25, 0) {
        return hsi;
    }
    wr(
        RCC_PLLCFGR,
        CHIP.pll_m | (CHIP.pll_n << 6) | (CHIP.pll_p_code << 16) | (CHIP.pll_q << 24),
    );
    wr(RCC_CR, rd(RCC_CR) | (1 << 24));
    if !wait_for(RCC_CR, 1 << 25, 1 << 25) {
        return hsi;
    }
    // Flash wait states, prefetch and caches, before the core speeds up.
    wr(FLASH_ACR, CHIP.latency | CHIP.acr_flags);
    if !wait_for(FLASH_ACR, 0xF, CHIP.latency) {
        return hsi;
    }
    // AHB /1, the APB prescalers, then SYSCLK from the PLL.
    wr(RCC_CFGR, (CHIP.ppre1 << 10) | (CHIP.ppre2 << 13));
    wr(RCC_CFGR, rd(RCC_CFGR) | 0b10);
    if !wait_for(RCC_CFGR, 0b1100, 0b1000) {
        return hsi;
    }
    Clocks {
        sysclk: CHIP.sysclk,
        usart: if CHIP.console.apb2 {
            CHIP.apb2
        } else {
            CHIP.apb1
        },
        emulated: false,
    }
}
