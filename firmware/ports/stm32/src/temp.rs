//! The STM32F4's internal temperature sensor: ADC1 channel 16 on the F405, 18 on the F411 (with
//! TSVREFE set in ADC_CCR),
//! the longest sample time (480 cycles; the sensor needs ≥ 10 µs), one conversion, and the
//! datasheet's typical curve (DS8626 §6.3.21: V25 = 0.76 V, 2.5 mV/°C) at VDDA = 3.3 V. Every
//! wait is bounded: where there is no ADC (QEMU's netduinoplus2 models none) the conversion
//! never ends and there is no reading.

use core::ptr::{read_volatile, write_volatile};

const RCC_APB2ENR: usize = 0x4002_3844;
const ADC1: usize = 0x4001_2000;
const ADC_SR: usize = ADC1;
const ADC_CR2: usize = ADC1 + 0x08;
const ADC_SMPR1: usize = ADC1 + 0x0C;
const ADC_SQR1: usize = ADC1 + 0x2C;
const ADC_SQR3: usize = ADC1 + 0x34;
const ADC_DR: usize = ADC1 + 0x4C;
const ADC_CCR: usize = 0x4001_2304;

fn rd(a: usize) -> u32 {
    // SAFETY: an RCC/ADC register of this chip.
    unsafe { read_volatile(a as *const u32) }
}
fn wr(a: usize, v: u32) {
    // SAFETY: as above.
    unsafe { write_volatile(a as *mut u32, v) }
}

/// One reading in °C, or `None` when the ADC does not answer.
pub fn read_c() -> Option<f32> {
    wr(RCC_APB2ENR, rd(RCC_APB2ENR) | (1 << 8));
    wr(ADC_CCR, rd(ADC_CCR) | (1 << 23));
    // The sensor's channel: sample time 480 cycles (its SMPx = 0b111 in SMPR1, which holds
    // channels 10-18), a sequence of one.
    let ch = crate::chip::CHIP.temp_channel?;
    wr(ADC_SMPR1, rd(ADC_SMPR1) | (0b111 << (3 * (ch - 10))));
    wr(ADC_SQR1, 0);
    wr(ADC_SQR3, ch);
    wr(ADC_CR2, 1);
    // The sensor's start-up time (≤ 10 µs) before the first conversion.
    for _ in 0..2_000 {
        core::hint::spin_loop();
    }
    wr(ADC_CR2, 1 | (1 << 30));
    for _ in 0..100_000 {
        if rd(ADC_SR) & 0b10 != 0 {
            let raw = rd(ADC_DR) & 0xFFF;
            let v = raw as f32 * 3.3 / 4095.0;
            return Some((v - 0.76) / 0.0025 + 25.0);
        }
    }
    None
}
