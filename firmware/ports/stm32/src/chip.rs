//! The chip this image is built for (cargo feature `f405`, the default, `f411`, `f746` or
//! `h743`): memory, clock tree, the console USART and its pins, and the temperature sensor's ADC
//! channel. Figures from ST's reference manuals (RM0090 for the F405, RM0383 for the F411,
//! RM0385 for the F746, RM0433 for the H743) and datasheets.

/// Which USART register layout: the F4's (SR, DR, BRR, CR1) or the F7's (CR1, BRR, ISR, RDR,
/// TDR).
#[derive(Clone, Copy, PartialEq, Eq)]
// Each build is for one chip, which uses one of them.
#[allow(dead_code)]
pub enum UsartKind {
    F4,
    F7,
}

/// A USART with its pins (on one GPIO port) in alternate function 7.
pub struct Usart {
    pub kind: UsartKind,
    pub base: usize,
    /// The GPIO port's base, the RCC register that clocks it (RCC_AHB1ENR; the H7's
    /// RCC_AHB4ENR) and its bit there (A = 0, D = 3).
    pub gpio: usize,
    pub gpio_enr: usize,
    pub gpio_bit: u32,
    /// On APB2 (`true`) or APB1: which bus clock.
    pub apb2: bool,
    /// The RCC register that clocks the USART (RCC_APB2ENR / RCC_APB1ENR; the H7's
    /// RCC_APB1LENR) and its bit there.
    pub enr: usize,
    pub enable_bit: u32,
    /// GPIOA pin numbers.
    pub tx: u32,
    pub rx: u32,
}

pub struct Chip {
    /// What `READY platform=` says on silicon.
    pub name: &'static str,
    pub flash_bytes: u64,
    pub ram_bytes: u64,
    /// Main PLL from the 16 MHz HSI: SYSCLK = 16 MHz / m × n / p.
    pub pll_m: u32,
    pub pll_n: u32,
    /// PLLP as its register code (0 = /2, 1 = /4, 2 = /6, 3 = /8).
    pub pll_p_code: u32,
    pub pll_q: u32,
    pub sysclk: u64,
    /// Flash wait states at `sysclk` and 3.3 V.
    pub latency: u32,
    /// FLASH_ACR's other bits: prefetch and the caches (F4: PRFTEN, ICEN, DCEN) or the ART
    /// accelerator (F7: PRFTEN, ARTEN).
    pub acr_flags: u32,
    /// RCC_CFGR PPRE1 / PPRE2 codes and the bus clocks they give.
    pub ppre1: u32,
    pub ppre2: u32,
    pub apb1: u64,
    pub apb2: u64,
    pub console: Usart,
    /// The clock tree is set up through the main PLL (F4, F7); `false`: the chip runs on its
    /// reset clock, the HSI at `sysclk` (the H743's 64 MHz: its 480 MHz needs the power supply's
    /// voltage scaling and PLL1, which the port does not configure).
    pub pll: bool,
    /// ADC1 channel of the internal temperature sensor (`None`: not read; the H7's ADC3 sensor
    /// needs its calibration and is not).
    pub temp_channel: Option<u32>,
    /// The static arena for the model's buffers: what the SRAM leaves after the firmware's
    /// statics and the stack's reserve.
    pub arena_bytes: usize,
}

#[cfg(not(any(feature = "f411", feature = "f746", feature = "h743")))]
pub const CHIP: Chip = Chip {
    name: "stm32f405",
    flash_bytes: 1 << 20,
    ram_bytes: 128 << 10,
    pll_m: 16,
    pll_n: 336,
    pll_p_code: 0,
    pll_q: 7,
    sysclk: 168_000_000,
    latency: 5,
    acr_flags: (1 << 8) | (1 << 9) | (1 << 10),
    ppre1: 0b101,
    ppre2: 0b100,
    apb1: 42_000_000,
    apb2: 84_000_000,
    // USART1 on PA9/PA10 (what QEMU's netduinoplus2 puts first).
    console: Usart {
        kind: UsartKind::F4,
        base: 0x4001_1000,
        gpio: 0x4002_0000,
        gpio_enr: 0x4002_3830,
        gpio_bit: 0,
        apb2: true,
        enr: 0x4002_3844,
        enable_bit: 4,
        tx: 9,
        rx: 10,
    },
    temp_channel: Some(16),
    pll: true,
    arena_bytes: 100 << 10,
};

#[cfg(all(feature = "f411", not(feature = "f746"), not(feature = "h743")))]
pub const CHIP: Chip = Chip {
    name: "stm32f411",
    flash_bytes: 512 << 10,
    ram_bytes: 128 << 10,
    // 100 MHz: VCO 200 MHz, /2.
    pll_m: 16,
    pll_n: 200,
    pll_p_code: 0,
    pll_q: 4,
    sysclk: 100_000_000,
    latency: 3,
    acr_flags: (1 << 8) | (1 << 9) | (1 << 10),
    ppre1: 0b100,
    ppre2: 0b000,
    apb1: 50_000_000,
    apb2: 100_000_000,
    // USART2 on PA2/PA3: the ST-LINK/V2-1's virtual COM port on a Nucleo-F411RE.
    console: Usart {
        kind: UsartKind::F4,
        base: 0x4000_4400,
        gpio: 0x4002_0000,
        gpio_enr: 0x4002_3830,
        gpio_bit: 0,
        apb2: false,
        enr: 0x4002_3840,
        enable_bit: 17,
        tx: 2,
        rx: 3,
    },
    temp_channel: Some(18),
    pll: true,
    arena_bytes: 100 << 10,
};

#[cfg(all(feature = "f746", not(feature = "h743")))]
pub const CHIP: Chip = Chip {
    name: "stm32f746",
    flash_bytes: 1 << 20,
    // DTCM (64 KiB) + SRAM1 (240 KiB) + SRAM2 (16 KiB), contiguous from 0x20000000.
    ram_bytes: 320 << 10,
    // 180 MHz: the fastest without the regulator's over-drive mode (216 MHz needs it).
    pll_m: 16,
    pll_n: 360,
    pll_p_code: 0,
    pll_q: 8,
    sysclk: 180_000_000,
    latency: 6,
    acr_flags: (1 << 8) | (1 << 9),
    ppre1: 0b101,
    ppre2: 0b100,
    apb1: 45_000_000,
    apb2: 90_000_000,
    // USART3 on PD8/PD9: the ST-LINK/V2-1's virtual COM port on a Nucleo-F746ZG.
    console: Usart {
        kind: UsartKind::F7,
        base: 0x4000_4800,
        gpio: 0x4002_0C00,
        gpio_enr: 0x4002_3830,
        gpio_bit: 3,
        apb2: false,
        enr: 0x4002_3840,
        enable_bit: 18,
        tx: 8,
        rx: 9,
    },
    temp_channel: Some(18),
    pll: true,
    arena_bytes: 288 << 10,
};

#[cfg(feature = "h743")]
pub const CHIP: Chip = Chip {
    name: "stm32h743",
    flash_bytes: 2 << 20,
    // The 512 KiB AXI SRAM at 0x24000000 (DTCM and the D2/D3 SRAMs are not used).
    ram_bytes: 512 << 10,
    pll_m: 0,
    pll_n: 0,
    pll_p_code: 0,
    pll_q: 0,
    // The HSI's 64 MHz: SYSCLK, the bus clocks and USART3's kernel clock (PCLK1) after reset.
    sysclk: 64_000_000,
    latency: 0,
    acr_flags: 0,
    ppre1: 0,
    ppre2: 0,
    apb1: 64_000_000,
    apb2: 64_000_000,
    // USART3 on PD8/PD9: the STLINK-V3's virtual COM port on a Nucleo-H743ZI(2).
    console: Usart {
        kind: UsartKind::F7,
        base: 0x4000_4800,
        gpio: 0x5802_0C00,
        gpio_enr: 0x5802_44E0,
        gpio_bit: 3,
        apb2: false,
        enr: 0x5802_44E8,
        enable_bit: 18,
        tx: 8,
        rx: 9,
    },
    temp_channel: None,
    pll: false,
    arena_bytes: 448 << 10,
};
