//! The STM32F4's clock tree: 168 MHz from the internal 16 MHz HSI through the main PLL
//! (M = 16, N = 336, P = 2; APB1 = 42 MHz, APB2 = 84 MHz, five flash wait states), every wait for
//! a ready bit bounded. A chip whose RCC reads all zeros is an emulator without an RCC model
//! (QEMU's netduinoplus2): nothing is configured and the emulator's own clock is reported.

use core::ptr::{read_volatile, write_volatile};

const RCC: usize = 0x4002_3800;
const RCC_CR: usize = RCC;
const RCC_PLLCFGR: usize = RCC + 0x04;
const RCC_CFGR: usize = RCC + 0x08;
const FLASH_ACR: usize = 0x4002_3C00;

const HSI_HZ: u64 = 16_000_000;
const PLL_HZ: u64 = 168_000_000;
/// QEMU's netduinoplus2 clocks the CPU (and SysTick) at 168 MHz whatever the RCC is told.
const QEMU_HZ: u64 = 168_000_000;
/// Polls of a ready bit before giving up (milliseconds at HSI speed).
const WAIT: u32 = 200_000;

/// What the clock setup ended with.
#[derive(Clone, Copy)]
pub struct Clocks {
    /// The core clock (SysTick counts it).
    pub sysclk: u64,
    /// The clock of the APB2 bus (USART1 and USART6).
    pub apb2: u64,
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
    // After reset HSION and HSIRDY are set: a zero RCC_CR is no RCC at all.
    if rd(RCC_CR) == 0 {
        return Clocks {
            sysclk: QEMU_HZ,
            apb2: QEMU_HZ / 2,
            emulated: true,
        };
    }
    let hsi = Clocks {
        sysclk: HSI_HZ,
        apb2: HSI_HZ,
        emulated: false,
    };
    // PLL from HSI: VCO in = 16 MHz / 16 = 1 MHz, VCO = ×336, SYSCLK = VCO / 2, Q = 7 (48 MHz).
    wr(RCC_CR, rd(RCC_CR) & !(1 << 24)); // PLL off while it is configured
    if !wait_for(RCC_CR, 1 << 25, 0) {
        return hsi;
    }
    wr(RCC_PLLCFGR, 16 | (336 << 6) | (7 << 24));
    wr(RCC_CR, rd(RCC_CR) | (1 << 24));
    if !wait_for(RCC_CR, 1 << 25, 1 << 25) {
        return hsi;
    }
    // Flash: five wait states, prefetch and caches, before the core speeds up.
    wr(FLASH_ACR, 5 | (1 << 8) | (1 << 9) | (1 << 10));
    if !wait_for(FLASH_ACR, 0xF, 5) {
        return hsi;
    }
    // AHB /1, APB1 /4, APB2 /2, then SYSCLK from the PLL.
    wr(RCC_CFGR, (0b101 << 10) | (0b100 << 13));
    wr(RCC_CFGR, rd(RCC_CFGR) | 0b10);
    if !wait_for(RCC_CFGR, 0b1100, 0b1000) {
        return hsi;
    }
    Clocks {
        sysclk: PLL_HZ,
        apb2: PLL_HZ / 2,
        emulated: false,
    }
}
