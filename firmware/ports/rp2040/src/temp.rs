//! The die temperature: the ADC's temperature-sensor input (TS_EN), one conversion, and the
//! datasheet's conversion (RP2040 §4.9.5, RP2350 §12.4.6: 0.706 V at 27 °C, −1.721 mV/°C) at
//! ADC_AVDD = 3.3 V. Bounded: an ADC that never reports ready gives no reading.

use crate::{
    chip::CHIP,
    regs::{rd, unreset, wait, wr},
};

const CS: usize = CHIP.adc;
const RESULT: usize = CHIP.adc + 0x04;

/// One reading in °C, or `None` when the ADC does not answer.
pub fn read_c() -> Option<f32> {
    if !unreset(CHIP.resets, 1 << CHIP.reset_adc) {
        return None;
    }
    let ain = (CHIP.temp_input & CHIP.ainsel_mask) << 12;
    wr(CS, 1 | (1 << 1) | ain);
    if !wait(CS, 100_000, |s| s & (1 << 8) != 0) {
        return None;
    }
    wr(CS, 1 | (1 << 1) | ain | (1 << 2));
    // READY drops when the conversion starts and rises when it ends.
    for _ in 0..16 {
        core::hint::spin_loop();
    }
    if !wait(CS, 100_000, |s| s & (1 << 8) != 0) {
        return None;
    }
    let v = (rd(RESULT) & 0xFFF) as f32 * 3.3 / 4096.0;
    Some(27.0 - (v - 0.706) / 0.001721)
}
