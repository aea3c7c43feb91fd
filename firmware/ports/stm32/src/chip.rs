//! The chip this image is built for (cargo feature `f405`, the default, or `f411`): memory,
//! clock tree, the console USART and its pins, and the temperature sensor's ADC channel. Figures
//! from ST's reference manuals (RM0090 for the F405, RM0383 for the F411) and datasheets.

/// A USART on GPIOA with its pins in alternate function 7.
pub struct Usart {
    pub base: usize,
    /// On APB2 (`true`) or APB1: which enable register and which bus clock.
    pub apb2: bool,
    /// Its enable bit in RCC_APB2ENR / RCC_APB1ENR.
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
    /// RCC_CFGR PPRE1 / PPRE2 codes and the bus clocks they give.
    pub ppre1: u32,
    pub ppre2: u32,
    pub apb1: u64,
    pub apb2: u64,
    pub console: Usart,
    /// ADC1 channel of the internal temperature sensor.
    pub temp_channel: u32,
}

#[cfg(not(feature = "f411"))]
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
    ppre1: 0b101,
    ppre2: 0b100,
    apb1: 42_000_000,
    apb2: 84_000_000,
    // USART1 on PA9/PA10 (what QEMU's netduinoplus2 puts first).
    console: Usart {
        base: 0x4001_1000,
        apb2: true,
        enable_bit: 4,
        tx: 9,
        rx: 10,
    },
    temp_channel: 16,
};

#[cfg(feature = "f411")]
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
    ppre1: 0b100,
    ppre2: 0b000,
    apb1: 50_000_000,
    apb2: 100_000_000,
    // USART2 on PA2/PA3: the ST-LINK/V2-1's virtual COM port on a Nucleo-F411RE.
    console: Usart {
        base: 0x4000_4400,
        apb2: false,
        enable_bit: 17,
        tx: 2,
        rx: 3,
    },
    temp_channel: 18,
};
