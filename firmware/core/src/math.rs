//! The few transcendental functions the forward pass needs, in plain arithmetic so that every
//! core (with or without an FPU library) computes bit-identical results.

/// e^x, relative error below 1e-6 over the range the model uses.
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let x = x.clamp(-87.0, 88.0);
    // ln 2 split in two (Cody-Waite) so that r = x - n·ln2 keeps its precision.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let n = crate::quant::round(x * core::f32::consts::LOG2_E);
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Taylor to degree 7 on |r| <= ln2/2.
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    let bits = ((n as i32 + 127) as u32) << 23;
    p * f32::from_bits(bits)
}

/// The larger of `m` and `v`, keeping `m` when `v` is NaN: what `f32::max` gives for a running
/// maximum that starts from a number, as two instructions instead of a call to libm's `fmaxf`
/// on cores without a native max (Cortex-M4).
#[inline(always)]
pub fn max(m: f32, v: f32) -> f32 {
    if v > m {
        v
    } else {
        m
    }
}

/// √x for x ≥ 0 (Newton's method from an exponent-halving guess).
pub fn sqrt(x: f32) -> f32 {
    if x <= 0.0 || x.is_nan() {
        return 0.0;
    }
    let mut y = f32::from_bits((x.to_bits() >> 1) + 0x1FC0_0000);
    for _ in 0..4 {
        y = 0.5 * (y + x / y);
    }
    y
}

#[cfg(test)]
mod tests {
    #[test]
    fn accuracy() {
        for i in -200..200 {
            let x = i as f32 * 0.1;
            let (got, want) = (super::exp(x), (x as f64).exp() as f32);
            assert!(
                ((got - want) / want).abs() < 1e-6,
                "exp({x}) = {got}, want {want}"
            );
        }
        for x in [1e-6f32, 0.01, 0.5, 1.0, 2.0, 64.0, 1e6] {
            let (got, want) = (super::sqrt(x), (x as f64).sqrt() as f32);
            assert!(
                ((got - want) / want).abs() < 1e-6,
                "sqrt({x}) = {got}, want {want}"
            );
        }
    }
}
