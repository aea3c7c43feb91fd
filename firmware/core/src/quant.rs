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

/// Round half away from zero (core has no `f32::round` without std). Through i32, not i64: a
/// 32-bit core converts f32 ↔ i64 in library calls of dozens of instructions, and this runs for
/// every activation of every matrix-vector product and every `exp`. Values of 2^23 and more are
/// integers already (and NaN stays NaN).
#[inline]
pub fn round(x: f32) -> f32 {
    if x.is_nan() || x.abs() >= 8_388_608.0 {
        return x;
    }
    if x >= 0.0 {
        (x + 0.5) as i32 as f32
    } else {
        (x - 0.5) as i32 as f32
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
        let amax = x[lo..hi]
            .iter()
            .fold(0f32, |m, &v| crate::math::max(m, v.abs()));
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
#[inline(always)]
fn dot_i8(w: &[u8; GROUP], x: &[i8; GROUP]) -> i32 {
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
#[inline(always)]
fn dot_i8(w: &[u8; GROUP], x: &[i8; GROUP]) -> i32 {
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
/// nibble − 8) with 32 quantized activations whose sum is `xsum`. The nibbles are used unsigned
/// and the −8 offset is applied once as −8·Σx: exact integer algebra, one subtraction per block
/// instead of one per weight.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn dot_q4_portable(w: &[u8; GROUP / 2], x: &[i8; GROUP], xsum: i32) -> i32 {
    let mut s = 0i32;
    for j in 0..GROUP / 2 {
        let byte = w[j];
        s += i32::from(byte & 0xF) * i32::from(x[2 * j]);
        s += i32::from(byte >> 4) * i32::from(x[2 * j + 1]);
    }
    s - 8 * xsum
}

/// Every core but x86-64 runs the portable loop; on Cortex-M4 it needs fewer instructions than
/// an SMLAD version, whose nibble and activation pairing (UXTB16, SXTB16, PKHBT/PKHTB) ran out
/// of registers (docs/simulation.md has the counts).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn dot_q4(w: &[u8; GROUP / 2], x: &[i8; GROUP], xsum: i32) -> i32 {
    dot_q4_portable(w, x, xsum)
}

/// The same with SSE2 (part of every x86-64 CPU, so always there on a 64-bit PC host): the
/// nibbles are split with masks and interleaved back into weight order with byte unpacks,
/// widened to 16 bits beside the sign-extended activations, and `PMADDWD` multiplies and adds
/// pairs into 32-bit lanes. Integer arithmetic, bit-exact with the portable loop.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn dot_q4(w: &[u8; GROUP / 2], x: &[i8; GROUP], xsum: i32) -> i32 {
    use core::arch::x86_64::*;
    // SAFETY: SSE2 is in the x86-64 baseline; every load reads inside the arrays it is given.
    unsafe {
        let v = _mm_loadu_si128(w.as_ptr().cast());
        let m = _mm_set1_epi8(0x0f);
        let lo = _mm_and_si128(v, m);
        let hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
        let (w0, w1) = (_mm_unpacklo_epi8(lo, hi), _mm_unpackhi_epi8(lo, hi));
        let z = _mm_setzero_si128();
        let x0 = _mm_loadu_si128(x.as_ptr().cast());
        let x1 = _mm_loadu_si128(x.as_ptr().add(16).cast());
        let sx = |v: __m128i| {
            (
                _mm_srai_epi16(_mm_unpacklo_epi8(v, v), 8),
                _mm_srai_epi16(_mm_unpackhi_epi8(v, v), 8),
            )
        };
        let ((a0, a1), (a2, a3)) = (sx(x0), sx(x1));
        let p = _mm_add_epi32(
            _mm_add_epi32(
                _mm_madd_epi16(_mm_unpacklo_epi8(w0, z), a0),
                _mm_madd_epi16(_mm_unpackhi_epi8(w0, z), a1),
            ),
            _mm_add_epi32(
                _mm_madd_epi16(_mm_unpacklo_epi8(w1, z), a2),
                _mm_madd_epi16(_mm_unpackhi_epi8(w1, z), a3),
            ),
        );
        let p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0x4e));
        let p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0xb1));
        _mm_cvtsi128_si32(p) - 8 * xsum
    }
}

/// 32 f32 weights dotted with 32 activations: eight partial sums (lane l starts with the product
/// of element l and adds those of l+8, l+16, l+24), then t_l = s_l + s_{l+4} and (t_0 + t_2) + (t_1 + t_3) — the order a
/// 4-wide vector unit reduces in. The fixed order keeps every port bit-exact; the independent
/// lanes let a core overlap its multiply-adds instead of waiting on one accumulator.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn dot_f32_block_portable(w: &[f32; GROUP], x: &[f32; GROUP]) -> f32 {
    let mut s = [0f32; 8];
    for l in 0..8 {
        s[l] = w[l] * x[l];
    }
    for (wc, xc) in w[8..].chunks_exact(8).zip(x[8..].chunks_exact(8)) {
        for l in 0..8 {
            s[l] += wc[l] * xc[l];
        }
    }
    let t = [s[0] + s[4], s[1] + s[5], s[2] + s[6], s[3] + s[7]];
    (t[0] + t[2]) + (t[1] + t[3])
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn dot_f32_block(w: &[f32; GROUP], x: &[f32; GROUP]) -> f32 {
    dot_f32_block_portable(w, x)
}

/// The same with SSE2: lanes 0–3 and 4–7 are two vectors, the same products and sums in the
/// same order (IEEE single precision per lane, no fused multiply-add), so bit-exact with the
/// portable loop. LLVM vectorises that loop only two lanes wide.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn dot_f32_block(w: &[f32; GROUP], x: &[f32; GROUP]) -> f32 {
    use core::arch::x86_64::*;
    // SAFETY: SSE2 is in the x86-64 baseline; every load reads inside the arrays it is given.
    unsafe {
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        let mut a = _mm_mul_ps(_mm_loadu_ps(wp), _mm_loadu_ps(xp));
        let mut b = _mm_mul_ps(_mm_loadu_ps(wp.add(4)), _mm_loadu_ps(xp.add(4)));
        for c in 1..GROUP / 8 {
            let (wp, xp) = (w.as_ptr().add(8 * c), x.as_ptr().add(8 * c));
            a = _mm_add_ps(a, _mm_mul_ps(_mm_loadu_ps(wp), _mm_loadu_ps(xp)));
            b = _mm_add_ps(
                b,
                _mm_mul_ps(_mm_loadu_ps(wp.add(4)), _mm_loadu_ps(xp.add(4))),
            );
        }
        let t = _mm_add_ps(a, b);
        let u = _mm_add_ps(t, _mm_movehl_ps(t, t));
        _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)))
    }
}

/// The f32 path of [`dot_row`]: weights read in place when the row is 4-aligned (always in
/// labctl's model files, whose tensors start at multiples of 4), copied block by block
/// otherwise; a short last group of activations (rows padded to whole blocks) is padded with
/// zeros, which add nothing.
#[inline(always)]
fn dot_row_f32(row: &[u8], nb: usize, x: &[f32]) -> f32 {
    let bytes = &row[..nb * 128];
    let mut acc = 0f32;
    let mut xb = [0f32; GROUP];
    let xblock = |k: usize, xb: &mut [f32; GROUP]| -> bool {
        let lo = (k * GROUP).min(x.len());
        let hi = (lo + GROUP).min(x.len());
        xb.fill(0.0);
        xb[..hi - lo].copy_from_slice(&x[lo..hi]);
        hi - lo == GROUP
    };
    // SAFETY: f32 accepts any bit pattern; align_to only hands out the aligned middle.
    let (pre, ws, post) = unsafe { bytes.align_to::<f32>() };
    let aligned = cfg!(target_endian = "little") && pre.is_empty() && post.is_empty();
    if aligned && x.len() >= nb * GROUP {
        // The common case: weights in place, every group of activations whole.
        for (wb, xs) in ws.chunks_exact(GROUP).zip(x.chunks_exact(GROUP)) {
            let wb: &[f32; GROUP] = wb.try_into().expect("chunks of GROUP");
            let xs: &[f32; GROUP] = xs.try_into().expect("chunks of GROUP");
            acc += dot_f32_block(wb, xs);
        }
    } else if aligned {
        for (k, wb) in ws.chunks_exact(GROUP).enumerate() {
            let wb: &[f32; GROUP] = wb.try_into().expect("chunks of GROUP");
            let full = (k + 1) * GROUP <= x.len();
            let xs: &[f32; GROUP] = if full {
                x[k * GROUP..(k + 1) * GROUP].try_into().expect("GROUP")
            } else {
                xblock(k, &mut xb);
                &xb
            };
            acc += dot_f32_block(wb, xs);
        }
    } else {
        let mut wb = [0f32; GROUP];
        for (k, b) in bytes.chunks_exact(128).enumerate() {
            for (w, c) in wb.iter_mut().zip(b.chunks_exact(4)) {
                *w = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
            xblock(k, &mut xb);
            acc += dot_f32_block(&wb, &xb);
        }
    }
    acc
}

/// The quantized activations as whole groups with their scales and sums, for `nb` blocks.
#[inline(always)]
fn act_groups<'a>(
    a: &'a QAct<'_>,
    nb: usize,
) -> impl Iterator<Item = (&'a [i8; GROUP], f32, i32)> + 'a {
    a.q[..nb * GROUP]
        .chunks_exact(GROUP)
        .map(|g| <&[i8; GROUP]>::try_from(g).expect("GROUP"))
        .zip(a.scale[..nb].iter().copied())
        .zip(a.sum[..nb].iter().copied())
        .map(|((g, s), m)| (g, s, m))
}

#[inline(always)]
fn row_q8_0(row: &[u8], nb: usize, a: &QAct<'_>) -> f32 {
    let mut acc = 0f32;
    for (b, (xq, xs, _)) in row[..nb * 36].chunks_exact(36).zip(act_groups(a, nb)) {
        let w: &[u8; GROUP] = b[4..4 + GROUP].try_into().expect("q8_0 block");
        acc += dot_i8(w, xq) as f32 * f32_at(b, 0) * xs;
    }
    acc
}

#[inline(always)]
fn row_q4_0(row: &[u8], nb: usize, a: &QAct<'_>) -> f32 {
    let mut acc = 0f32;
    for (b, (xq, xs, sum)) in row[..nb * 20].chunks_exact(20).zip(act_groups(a, nb)) {
        let w: &[u8; GROUP / 2] = b[4..4 + GROUP / 2].try_into().expect("q4_0 block");
        acc += dot_q4(w, xq, sum) as f32 * f32_at(b, 0) * xs;
    }
    acc
}

/// Integer dot product of a q3 block's 32 3-bit fields with 32 activations summing to `xsum`:
/// three bytes hold eight fields, so each 24-bit group is read as one 32-bit word (no 128-bit
/// shifts, which a 32-bit core does in several instructions each); the −4 offset is applied
/// once as −4·Σx. Exact integer algebra.
#[inline(always)]
fn dot_q3(b: &[u8; 12], x: &[i8; GROUP], xsum: i32) -> i32 {
    let mut s = 0i32;
    for (g, xg) in x.chunks_exact(8).enumerate() {
        let v = u32::from(b[3 * g]) | u32::from(b[3 * g + 1]) << 8 | u32::from(b[3 * g + 2]) << 16;
        for (k, &xv) in xg.iter().enumerate() {
            s += ((v >> (3 * k)) & 7) as i32 * i32::from(xv);
        }
    }
    s - 4 * xsum
}

/// Integer dot product of a q2 block's 32 2-bit fields with 32 activations, a byte (four
/// fields) at a time.
#[inline(always)]
fn dot_q2(b: &[u8; 8], x: &[i8; GROUP]) -> i32 {
    let mut s = 0i32;
    for (&v, xg) in b.iter().zip(x.chunks_exact(4)) {
        for (k, &xv) in xg.iter().enumerate() {
            s += ((v >> (2 * k)) & 3) as i32 * i32::from(xv);
        }
    }
    s
}

#[inline(always)]
fn row_q3(row: &[u8], nb: usize, a: &QAct<'_>) -> f32 {
    let mut acc = 0f32;
    for (b, (xq, xs, sum)) in row[..nb * 16].chunks_exact(16).zip(act_groups(a, nb)) {
        let w: &[u8; 12] = b[4..16].try_into().expect("q3 block");
        acc += dot_q3(w, xq, sum) as f32 * f32_at(b, 0) * xs;
    }
    acc
}

#[inline(always)]
fn row_q2(row: &[u8], nb: usize, a: &QAct<'_>) -> f32 {
    let mut acc = 0f32;
    for (b, (xq, xs, sum)) in row[..nb * 16].chunks_exact(16).zip(act_groups(a, nb)) {
        let w: &[u8; 8] = b[8..16].try_into().expect("q2 block");
        acc += (dot_q2(w, xq) as f32 * f32_at(b, 0) + sum as f32 * f32_at(b, 4)) * xs;
    }
    acc
}

/// Dot product of one weight row (`nb` blocks starting at `row`) with a quantized activation, or
/// with the f32 activation `x` for `f32` weights (the reference path). Integer sums are exact,
/// so their order is free; the floating-point steps are in a fixed order, the same on every
/// port.
pub fn dot_row(q: Quant, row: &[u8], nb: usize, a: &QAct<'_>, x: &[f32]) -> f32 {
    match q {
        Quant::F32 => dot_row_f32(row, nb, x),
        Quant::Q8_0 => row_q8_0(row, nb, a),
        Quant::Q4_0 => row_q4_0(row, nb, a),
        Quant::Q3 => row_q3(row, nb, a),
        Quant::Q2 => row_q2(row, nb, a),
    }
}

/// `out[r] = W[r,:] · x` for the `out.len()` rows of `w` (each `nb` blocks): [`dot_row`] for
/// every row with the format chosen once, so each format's row loop compiles to its own tight
/// code with the activations' setup outside it (blocks and groups are fixed-size arrays, so the
/// inner loops carry no bounds checks).
pub fn matvec(q: Quant, w: &[u8], nb: usize, a: &QAct<'_>, x: &[f32], out: &mut [f32]) {
    let rb = nb * q.block_bytes();
    let rows = w[..out.len() * rb].chunks_exact(rb);
    match q {
        Quant::F32 => out
            .iter_mut()
            .zip(rows)
            .for_each(|(o, r)| *o = dot_row_f32(r, nb, x)),
        Quant::Q8_0 => out
            .iter_mut()
            .zip(rows)
            .for_each(|(o, r)| *o = row_q8_0(r, nb, a)),
        Quant::Q4_0 => out
            .iter_mut()
            .zip(rows)
            .for_each(|(o, r)| *o = row_q4_0(r, nb, a)),
        Quant::Q3 => out
            .iter_mut()
            .zip(rows)
            .for_each(|(o, r)| *o = row_q3(r, nb, a)),
        Quant::Q2 => out
            .iter_mut()
            .zip(rows)
            .for_each(|(o, r)| *o = row_q2(r, nb, a)),
    }
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
    fn vector_kernels_equal_the_portable_loops_bit_for_bit() {
        let mut seed = 0x1234_5678_u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            (seed >> 33) as u32
        };
        for _ in 0..2000 {
            let mut w = [0u8; GROUP / 2];
            let mut x = [0i8; GROUP];
            w.iter_mut().for_each(|b| *b = next() as u8);
            x.iter_mut().for_each(|b| *b = next() as i8);
            let sum: i32 = x.iter().map(|&v| i32::from(v)).sum();
            assert_eq!(dot_q4(&w, &x, sum), dot_q4_portable(&w, &x, sum));
            let mut wf = [0f32; GROUP];
            let mut xf = [0f32; GROUP];
            wf.iter_mut()
                .for_each(|v| *v = (next() as i32 as f32) / 1e9 * 3.0);
            xf.iter_mut()
                .for_each(|v| *v = (next() as i32 as f32) / 1e9 * 0.7);
            assert_eq!(
                dot_f32_block(&wf, &xf).to_bits(),
                dot_f32_block_portable(&wf, &xf).to_bits()
            );
        }
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
