//! The chip this image is built for (cargo feature `rp2040`, the default, or `rp2350`): where its
//! peripherals are, which reset bits they have, its clocks and memories. Figures from the RP2040
//! and RP2350 datasheets (Raspberry Pi Ltd; their register lists and address maps).

pub struct Chip {
    /// What `READY platform=` says.
    pub name: &'static str,
    pub flash_bytes: u64,
    pub ram_bytes: u64,
    pub resets: usize,
    pub clocks: usize,
    pub xosc: usize,
    pub pll_sys: usize,
    pub io_bank0: usize,
    pub pads_bank0: usize,
    pub uart0: usize,
    pub adc: usize,
    /// RESETS bits.
    pub reset_adc: u32,
    pub reset_io_bank0: u32,
    pub reset_pads_bank0: u32,
    pub reset_pll_sys: u32,
    pub reset_uart0: u32,
    /// CLK_ADC_CTRL's offset in CLOCKS (the RP2350 adds clk_peri's divider and clk_hstx).
    pub clk_adc_ctrl: usize,
    /// PLL_SYS from the 12 MHz crystal: VCO = 12 MHz × fbdiv, SYSCLK = VCO / postdiv1 / postdiv2.
    pub fbdiv: u32,
    pub postdiv1: u32,
    pub postdiv2: u32,
    pub sysclk: u64,
    /// The ring oscillator's nominal speed, where the crystal does not start.
    pub rosc_hz: u64,
    /// ADC input of the temperature sensor, and the width of ADC_CS.AINSEL's field.
    pub temp_input: u32,
    pub ainsel_mask: u32,
    /// The static arena for the model's buffers.
    pub arena_bytes: usize,
}

#[cfg(not(feature = "rp2350"))]
pub const CHIP: Chip = Chip {
    name: "rp2040",
    flash_bytes: 2 << 20,
    ram_bytes: 264 << 10,
    resets: 0x4000_C000,
    clocks: 0x4000_8000,
    xosc: 0x4002_4000,
    pll_sys: 0x4002_8000,
    io_bank0: 0x4001_4000,
    pads_bank0: 0x4001_C000,
    uart0: 0x4003_4000,
    adc: 0x4004_C000,
    reset_adc: 0,
    reset_io_bank0: 5,
    reset_pads_bank0: 8,
    reset_pll_sys: 12,
    reset_uart0: 22,
    clk_adc_ctrl: 0x60,
    // 1500 MHz / 6 / 2 = 125 MHz, the SDK's default.
    fbdiv: 125,
    postdiv1: 6,
    postdiv2: 2,
    sysclk: 125_000_000,
    rosc_hz: 6_500_000,
    temp_input: 4,
    ainsel_mask: 0x7,
    arena_bytes: 232 << 10,
};

#[cfg(feature = "rp2350")]
pub const CHIP: Chip = Chip {
    name: "rp2350",
    flash_bytes: 4 << 20,
    ram_bytes: 520 << 10,
    resets: 0x4002_0000,
    clocks: 0x4001_0000,
    xosc: 0x4004_8000,
    pll_sys: 0x4005_0000,
    io_bank0: 0x4002_8000,
    pads_bank0: 0x4003_8000,
    uart0: 0x4007_0000,
    adc: 0x400A_0000,
    reset_adc: 0,
    reset_io_bank0: 6,
    reset_pads_bank0: 9,
    reset_pll_sys: 14,
    reset_uart0: 26,
    clk_adc_ctrl: 0x6C,
    // 1500 MHz / 5 / 2 = 150 MHz, the chip's rated speed.
    fbdiv: 125,
    postdiv1: 5,
    postdiv2: 2,
    sysclk: 150_000_000,
    rosc_hz: 11_000_000,
    // The RP2350A (QFN-60, the Pico 2's) has four ADC inputs; the sensor is the fifth.
    temp_input: 4,
    ainsel_mask: 0xF,
    arena_bytes: 480 << 10,
};
