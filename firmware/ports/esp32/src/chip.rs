//! The ESP32-C3's system registers this port touches (ESP32-C3 Technical Reference Manual):
//! the watchdogs the ROM and bootloader leave running, the CPU clock, the model's flash mapping
//! through the ROM's cache functions, and the cycle counter.

use core::ptr::{read_volatile, write_volatile};

fn rd(a: usize) -> u32 {
    // SAFETY: a system register of the ESP32-C3.
    unsafe { read_volatile(a as *const u32) }
}
fn wr(a: usize, v: u32) {
    // SAFETY: as above.
    unsafe { write_volatile(a as *mut u32, v) }
}

const RTC_CNTL: usize = 0x6000_8000;
const WDT_KEY: u32 = 0x50D8_3AA1;
const SWD_KEY: u32 = 0x8F1D_312A;
const TIMG0: usize = 0x6001_F000;
const TIMG1: usize = 0x6002_0000;

/// The RTC watchdog (the bootloader arms it), the super watchdog (fed automatically instead)
/// and both timer groups' watchdogs off: a long run must not be reset under the firmware.
pub fn watchdogs_off() {
    wr(RTC_CNTL + 0xA8, WDT_KEY);
    wr(RTC_CNTL + 0x90, 0);
    wr(RTC_CNTL + 0xA8, 0);
    wr(RTC_CNTL + 0xB0, SWD_KEY);
    wr(RTC_CNTL + 0xAC, rd(RTC_CNTL + 0xAC) | (1 << 31));
    wr(RTC_CNTL + 0xB0, 0);
    for t in [TIMG0, TIMG1] {
        wr(t + 0x64, WDT_KEY);
        wr(t + 0x48, 0);
        wr(t + 0x64, 0);
    }
}

const SYSCLK_CONF: usize = 0x600C_0058;
const CPU_PER_CONF: usize = 0x600C_0008;

/// On the PLL (the bootloader leaves it running, the CPU at 80 MHz), the CPU goes to 160 MHz;
/// the APB clock, and with it the UART's baud rate, stays at 80 MHz either way. The clock the
/// CPU ends on, read back from the registers.
pub fn cpu_clock() -> u64 {
    let src = (rd(SYSCLK_CONF) >> 10) & 0b11;
    if src == 1 {
        // PLL_FREQ_SEL = 480 MHz, CPUPERIOD_SEL = 160 MHz.
        wr(CPU_PER_CONF, (rd(CPU_PER_CONF) & !0b111) | 0b101);
        return if rd(CPU_PER_CONF) & 0b11 == 1 {
            160_000_000
        } else {
            80_000_000
        };
    }
    // On the 40 MHz crystal, divided by PRE_DIV_CNT + 1.
    40_000_000 / u64::from((rd(SYSCLK_CONF) & 0x3FF) + 1)
}

extern "C" {
    fn Cache_Suspend_ICache() -> u32;
    fn Cache_Resume_ICache(autoload: u32);
    fn Cache_Invalidate_ICache_All();
    fn Cache_Dbus_MMU_Set(
        ext_ram: u32,
        vaddr: u32,
        paddr: u32,
        psize: u32,
        num: u32,
        fixed: u32,
    ) -> i32;
}

/// Maps `len` bytes of flash from `flash` (64 KiB aligned) at `vaddr` on the data bus through
/// the ROM's MMU function, the cache suspended meanwhile (this code runs from IRAM, the model
/// is only read after). False when the ROM refuses the mapping.
pub fn map_flash(vaddr: u32, flash: u32, len: u32) -> bool {
    // SAFETY: ROM functions of the ESP32-C3 (addresses in link-esp32c3.x's PROVIDEs); the
    // mapped range is the model partition, which nothing else uses.
    unsafe {
        let state = Cache_Suspend_ICache();
        let r = Cache_Dbus_MMU_Set(0, vaddr, flash, 64, len.div_ceil(64 << 10), 0);
        Cache_Resume_ICache(state);
        Cache_Invalidate_ICache_All();
        r == 0
    }
}

/// The core's performance counter counting clock cycles (the ESP32-C3 has no `mcycle`: its
/// machine performance counter CSRs are mpcer 0x7E0, mpcmr 0x7E1, mpccr 0x7E2).
pub fn counter_start() {
    // SAFETY: writes the core's counter-control CSRs; no memory access.
    unsafe {
        core::arch::asm!("csrw 0x7E0, {}", in(reg) 1u32, options(nomem, nostack));
        core::arch::asm!("csrw 0x7E1, {}", in(reg) 1u32, options(nomem, nostack));
    }
}

pub fn counter() -> u32 {
    let v: u32;
    // SAFETY: reads the core's cycle-count CSR; no memory access.
    unsafe { core::arch::asm!("csrr {}, 0x7E2", out(reg) v, options(nomem, nostack)) };
    v
}
