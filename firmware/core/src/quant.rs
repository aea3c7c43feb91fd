//! Group-wise weight quantization: block layouts, quantizers (used by `labctl model gen`) and the
//! integer dot-product kernels (used by the firmware). Every block covers [`GROUP`] weights.
//!
//! | quant | block bytes | layout | weight value |
//! |---|---|---|---|
//! | `f32`  | 128 | 32 × f32 | w |
//! | `q8_0` | 36 | f32 scale d, 32 × i8 q | d·q |
//! | `q4_0` | 20 | f32 scale d, 16 bytes: weight 2j in the low nibble of byte j, 2j+1 in the high nibble, q = nibble − 8 | d·q |
//! | `q3`   | 16 | f32 scale d, 12 bytes: 32 × 3-bit fields packed little-endian (weight i at bits 3i…3i+2), q = field − 4 | d·q |
//! | `q2`   | 16 | f32 scale d, f32 offset m, 8 bytes: 32 × 2-bit fields, weight i at bits 2i…2i+1 | d·q + m |
//!
//! All numbers little-endian. Activations are quantized to 8 bits per group ([`quantize_act`]) so
//! the inner products are integer sums, identical on every core; only the per-block scaling is
//! floating point, always in the same order.

/// Which dot-product kernels this build uses (the firmware reports it in `READY`).
pub const KERNELS: &str = if cfg!(all(feature = "dsp", target_arch = "arm")) {
    "dsp"
} else {
    "plain"
};

/// Weights per block.
pub const GROUP: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Quant {
    F32 = 0,
    Q8_0 = 1,
    Q4_0 = 2,
    Q3 = 3,
    Q2 = 4,
}

impl Quant {
    pub const ALL: [Quant; 5] = [Quant::F32, Quant::Q8_0, Quant::Q4_0, Quant::Q3, Quant::Q2];

    pub const fn block_bytes(self) -> usize {
        match self {
            Quant::F32 => 4 * GROUP,
            Quant::Q8_0 => 4 + GROUP,
            Quant::Q4_0 => 4 + GROUP / 2,
            Quant::Q3 => 4 + GROUP * 3 / 8,
            Quant::Q2 => 8 + GROUP / 4,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Quant::F32 => "f32",
            Quant::Q8_0 => "q8_0",
            Quant::Q4_0 => "q4_0",
            Quant::Q3 => "q3",
            Quant::Q2 => "q2",
        }
    }

    pub fn from_name(s: &str) -> Option<Quant> {
        Quant::ALL.into_iter().find(|q| q.name() == s)
    }

    pub fn from_u32(v: u32) -> Option<Quant> {
        Quant::ALL.into_iter().find(|q| *q as u32 == v)
    }
}

/// Blocks needed for a row of `cols` weights (rows are zero-padded to whole blocks).
pub const fn blocks_per_row(cols: usize) -> usize {
    cols.div_ceil(GROUP)
}

/// Round half away from zero (core has no `f32::round` without std).
#[inline]
pub fn round(x: f32) -> f32 {
    if x >= 0.0 {
        (x + 0.5) as i64 as f32
    } else {
        (x - 0.5) as i64 as f32
    }
}

#[inline]
fn f32_at(b: &[u8], off: usize) -> f32 {
    f32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Quantizes one group of weights (`w.len() <= GROUP`, zero-padded) into `out` (one block).
pub fn quantize_block(q: Quant, w: &[f32], out: &mut [u8]) {
    let mut g = [0f32; GROUP];
    g[..w.len()].copy_from_slice(w);
    let amax = g.iter().fold(0f32, |a, &x| a.max(x.abs()));
    match q {
        Quant::F32 => {
            for (i, x) in g.iter().enumerate() {
                out[4 * i..4 * i + 4].copy_from_slice(&x.to_le_bytes());
            }
        }
        Quant::Q8_0 => {
            let d = amax / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            out[..4].copy_from_slice(&d.to_le_bytes());
            for (i, x) in g.iter().enumerate() {
                out[4 + i] = round(x * inv).clamp(-127.0, 127.0) as i8 as u8;
            }
        }
        Quant::Q4_0 => {
            let d = amax / 7.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            out[..4].copy_from_slice(&d.to_le_bytes());
            for j in 0..GROUP / 2 {
                let lo = (round(g[2 * j] * inv).clamp(-8.0, 7.0) as i32 + 8) as u8;
                let hi = (round(g[2 * j + 1] * inv).clamp(-8.0, 7.0) as i32 + 8) as u8;
                out[4 + j] = lo | (hi << 4);
            }
        }
        Quant::Q3 => {
            let d = amax / 3.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            out[..4].copy_from_slice(&d.to_le_bytes());
            let mut bits: u128 = 0;
            for (i, x) in g.iter().enumerate() {
                let f = (round(x * inv).clamp(-4.0, 3.0) as i32 + 4) as u128;
                bits |= f << (3 * i);
            }
            out[4..16].copy_from_slice(&bits.to_le_bytes()[..12]);
        }
        Quant::Q2 => {
            let (lo, hi) = g
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            let d = (hi - lo) / 3.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            out[..4].copy_from_slice(&d.to_le_bytes());
            out[4..8].copy_from_slice(&lo.to_le_bytes());
            let mut bits: u64 = 0;
            for (i, x) in g.iter().enumerate() {
                let f = round((x - lo) * inv).clamp(0.0, 3.0) as u64;
                bits |= f << (2 * i);
            }
            out[8..16].copy_from_slice(&bits.to_le_bytes());
        }
    }
}

/// Dequantizes one block into 32 weights.
pub fn dequantize_block(q: Quant, b: &[u8], out: &mut [f32; GROUP]) {
    match q {
        Quant::F32 => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = f32_at(b, 4 * i);
            }
        }
        Quant::Q8_0 => {
            let d = f32_at(b, 0);
            for (i, o) in out.iter_mut().enumerate() {
                *o = d * f32::from(b[4 + i] as i8);
            }
        }
        Quant::Q4_0 => {
            let d = f32_at(b, 0);
            for j in 0..GROUP / 2 {
                out[2 * j] = d * f32::from((b[4 + j] & 0xF) as i8 - 8);
                out[2 * j + 1] = d * f32::from((b[4 + j] >> 4) as i8 - 8);
            }
        }
        Quant::Q3 => {
            let d = f32_at(b, 0);
            let bits = q3_bits(b);
            for (i, o) in out.iter_mut().enumerate() {
                *o = d * f32::from(((bits >> (3 * i)) & 7) as i8 - 4);
            }
        }
        Quant::Q2 => {
            let (d, m) = (f32_at(b, 0), f32_at(b, 4));
            let bits = q2_bits(b);
            for (i, o) in out.iter_mut().enumerate() {
                *o = d * f32::from(((bits >> (2 * i)) & 3) as u8) + m;
            }
        }
    }
}

#[inline]
fn q3_bits(b: &[u8]) -> u128 {
    let mut raw = [0u8; 16];
    raw[..12].copy_from_slice(&b[4..16]);
    u128::from_le_bytes(raw)
}

#[inline]
fn q2_bits(b: &[u8]) -> u64 {
    u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]])
}

/// An activation vector quantized to 8 bits per group: `scale[k]` and `q[32k..32k+32]`.
pub struct QAct<'a> {
    pub q: &'a mut [i8],
    pub scale: &'a mut [f32],
    /// Σ q per group (for the q2 offset term).
    pub sum: &'a mut [i32],
}

/// Quantizes `x` (zero-padded to whole groups) into `a`.
pub fn quantize_act(x: &[f32], a: &mut QAct<'_>) {
    let nb = blocks_per_row(x.len());
    for k in 0..nb {
        let lo = k * GROUP;
        let hi = (lo + GROUP).min(x.len());
        let amax = x[lo..hi].iter().fold(0f32, |m, &v| m.max(v.abs()));
        let d = amax / 127.0;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut s = 0i32;
        for i in 0..GROUP {
            let v = if lo + i < hi {
                round(x[lo + i] * inv).clamp(-127.0, 127.0) as i8
            } else {
                0
            };
            a.q[lo + i] = v;
            s += i32::from(v);
        }
        a.scale[k] = d;
        a.sum[k] = s;
    }
}

/// Integer dot product of 32 signed bytes with 32 quantized activations (the q8_0 inner loop).
#[cfg(not(all(feature = "dsp", target_arch = "arm")))]
#[inline]
fn dot_i8(w: &[u8], x: &[i8]) -> i32 {
    let mut s = 0i32;
    for i in 0..GROUP {
        s += i32::from(w[i] as i8) * i32::from(x[i]);
    }
    s
}

/// The same with the Cortex-M4/M7 DSP extension: SXTB16 unpacks two signed bytes of a word into
/// two halfwords, SMLAD multiplies both halfword pairs and adds them to the accumulator. Integer
/// arithmetic that cannot overflow here (32 × 127 × 128 < 2^31), so it is bit-exact with the
/// plain loop.
#[cfg(all(feature = "dsp", target_arch = "arm"))]
#[inline]
fn dot_i8(w: &[u8], x: &[i8]) -> i32 {
    let mut acc = 0i32;
    for i in (0..GROUP).step_by(4) {
        let a = u32::from_le_bytes([w[i], w[i + 1], w[i + 2], w[i + 3]]);
        let b = u32::from_le_bytes([x[i] as u8, x[i + 1] as u8, x[i + 2] as u8, x[i + 3] as u8]);
        // SAFETY: register-only arithmetic, no memory access.
        unsafe {
            core::arch::asm!(
                "sxtb16 {ae}, {a}",
                "sxtb16 {ao}, {a}, ror #8",
                "sxtb16 {be}, {b}",
                "sxtb16 {bo}, {b}, ror #8",
                "smlad {acc}, {ae}, {be}, {acc}",
                "smlad {acc}, {ao}, {bo}, {acc}",
                a = in(reg) a,
                b = in(reg) b,
                ae = out(reg) _,
                ao = out(reg) _,
                be = out(reg) _,
                bo = out(reg) _,
                acc = inout(reg) acc,
                options(pure, nomem, nostack),
            );
        }
    }
    acc
}

/// Integer dot product of a q4_0 block's 32 nibbles (weight 2j low, 2j+1 high in byte j; value
/// nibble − 8) with 32 quantized activations whose sum is `xsum`.
#[cfg(not(all(feature = "dsp", target_arch = "arm")))]
#[inline]
fn dot_q4(w: &[u8], x: &[i8], _xsum: i32) -> i32 {
    let mut s = 0i32;
    for j in 0..GROUP / 2 {
        let byte = w[j];
        s += i32::from((byte & 0xF) as i8 - 8) * i32::from(x[2 * j]);
        s += i32::from((byte >> 4) as i8 - 8) * i32::from(x[2 * j + 1]);
    }
    s
}

/// The same with the DSP extension, 8 weights per step. The nibbles are used unsigned and the
/// −8 offset is applied once as −8·Σx (exact integer algebra, so bit-exact with the plain loop).
/// A weight word holds weights 0,2,4,6 in its low nibbles and 1,3,5,7 in its high ones; UXTB16
/// gives the halfword pairs (0,4), (2,6), (1,5), (3,7), and PKHBT/PKHTB pair the activations the
/// same way from two SXTB16-unpacked activation words.
#[cfg(all(feature = "dsp", target_arch = "arm"))]
#[inline]
fn dot_q4(w: &[u8], x: &[i8], xsum: i32) -> i32 {
    let mut acc = 0i32;
    for i in 0..GROUP / 8 {
        let ww = u32::from_le_bytes([w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]]);
        let xb = |o: usize| {
            u32::from_le_bytes([x[o] as u8, x[o + 1] as u8, x[o + 2] as u8, x[o + 3] as u8])
        };
        let (xa, xc) = (xb(8 * i), xb(8 * i + 4));
        let (lo, hi) = (ww & 0x0F0F_0F0F, (ww >> 4) & 0x0F0F_0F0F);
        // SAFETY: register-only arithmetic, no memory access.
        unsafe {
            core::arch::asm!(
                // activations: ae=(x0,x2) xa=(x1,x3) ce=(x4,x6) xc=(x5,x7)
                "sxtb16 {ae}, {xa}",
                "sxtb16 {xa}, {xa}, ror #8",
                "sxtb16 {ce}, {xc}",
                "sxtb16 {xc}, {xc}, ror #8",
                // even weights: (w0,w4)·(x0,x4) + (w2,w6)·(x2,x6)
                "uxtb16 {t}, {lo}",
                "pkhbt {p}, {ae}, {ce}, lsl #16",
                "smlad {acc}, {t}, {p}, {acc}",
                "uxtb16 {t}, {lo}, ror #8",
                "pkhtb {p}, {ce}, {ae}, asr #16",
                "smlad {acc}, {t}, {p}, {acc}",
                // odd weights: (w1,w5)·(x1,x5) + (w3,w7)·(x3,x7)
                "uxtb16 {t}, {hi}",
                "pkhbt {p}, {xa}, {xc}, lsl #16",
                "smlad {acc}, {t}, {p}, {acc}",
                "uxtb16 {t}, {hi}, ror #8",
                "pkhtb {p}, {xc}, {xa}, asr #16",
                "smlad {acc}, {t}, {p}, {acc}",
                xa = inout(reg) xa => _,
                xc = inout(reg) xc => _,
                lo = in(reg) lo,
                hi = in(reg) hi,
                ae = out(reg) _,
                ce = out(reg) _,
                t = out(reg) _,
                p = out(reg) _,
                acc = inout(reg) acc,
                options(pure, nomem, nostack),
            );
        }
    }
    acc - 8 * xsum
}

/// Dot product of one weight row (`nb` blocks starting at `row`) with a quantized activation, or
/// with the f32 activation `x` for `f32` weights (the reference path). One loop per format, so
/// that each compiles to its own tight code (a shared loop with a per-block `match` made a change
/// to one format's path cost another's); within each, the same operations in the same order as
/// block by block, element by element: bit-exact across ports and with earlier builds.
pub fn dot_row(q: Quant, row: &[u8], nb: usize, a: &QAct<'_>, x: &[f32]) -> f32 {
    let bb = q.block_bytes();
    let blocks = row[..nb * bb].chunks_exact(bb);
    let xq = |k: usize| &a.q[k * GROUP..(k + 1) * GROUP];
    let mut acc = 0f32;
    match q {
        Quant::F32 => {
            for (k, b) in blocks.enumerate() {
                // A padded last group just stops early.
                let xs = x.get(k * GROUP..).unwrap_or(&[]);
                for (w, xv) in b.chunks_exact(4).zip(xs.iter().take(GROUP)) {
                    acc += f32::from_le_bytes([w[0], w[1], w[2], w[3]]) * xv;
                }
            }
        }
        Quant::Q8_0 => {
            for (k, b) in blocks.enumerate() {
                let s = dot_i8(&b[4..4 + GROUP], xq(k));
                acc += s as f32 * f32_at(b, 0) * a.scale[k];
            }
        }
        Quant::Q4_0 => {
            for (k, b) in blocks.enumerate() {
                let s = dot_q4(&b[4..4 + GROUP / 2], xq(k), a.sum[k]);
                acc += s as f32 * f32_at(b, 0) * a.scale[k];
            }
        }
        Quant::Q3 => {
            for (k, b) in blocks.enumerate() {
                let bits = q3_bits(b);
                let mut s = 0i32;
                for (i, &xv) in xq(k).iter().enumerate() {
                    s += (((bits >> (3 * i)) & 7) as i32 - 4) * i32::from(xv);
                }
                acc += s as f32 * f32_at(b, 0) * a.scale[k];
            }
        }
        Quant::Q2 => {
            for (k, b) in blocks.enumerate() {
                let bits = q2_bits(b);
                let mut s = 0i32;
                for (i, &xv) in xq(k).iter().enumerate() {
                    s += ((bits >> (2 * i)) & 3) as i32 * i32::from(xv);
                }
                acc += (s as f32 * f32_at(b, 0) + a.sum[k] as f32 * f32_at(b, 4)) * a.scale[k];
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> [f32; GROUP] {
        let mut w = [0f32; GROUP];
        for (i, v) in w.iter_mut().enumerate() {
            *v = ((i as f32 * 0.37).sin() * 0.8) - 0.1;
        }
        w
    }

    #[test]
    fn round_trip_error_shrinks_with_bits() {
        let w = sample();
        let mut last = -1.0f32;
        for q in [Quant::Q2, Quant::Q3, Quant::Q4_0, Quant::Q8_0, Quant::F32]
            .iter()
            .rev()
        {
            let mut b = [0u8; 128];
            quantize_block(*q, &w, &mut b[..q.block_bytes()]);
            let mut d = [0f32; GROUP];
            dequantize_block(*q, &b[..q.block_bytes()], &mut d);
            let err = w
                .iter()
                .zip(d)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err >= last, "{}: {err} vs {last}", q.name());
            last = err;
        }
        assert!(last < 0.5);
    }

    #[test]
    fn integer_dot_matches_dequantized_dot() {
        let w = sample();
        let x: std::vec::Vec<f32> = (0..GROUP).map(|i| (i as f32 * 0.11).cos()).collect();
        let (mut q, mut s, mut sum) = ([0i8; GROUP], [0f32; 1], [0i32; 1]);
        let mut a = QAct {
            q: &mut q,
            scale: &mut s,
            sum: &mut sum,
        };
        quantize_act(&x, &mut a);
        for qt in Quant::ALL {
            let mut b = [0u8; 128];
            quantize_block(qt, &w, &mut b[..qt.block_bytes()]);
            let mut d = [0f32; GROUP];
            dequantize_block(qt, &b[..qt.block_bytes()], &mut d);
            let reference: f32 = d.iter().zip(&x).map(|(a, b)| a * b).sum();
            let got = dot_row(qt, &b, 1, &a, &x);
            assert!(
                (got - reference).abs() < 0.05,
                "{}: {got} vs {reference}",
                qt.name()
            );
        }
    }
}
