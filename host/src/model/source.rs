//! A model read from another format (GGUF, llama2.c), before it becomes a labctl model file:
//! its hyperparameters, its tensors by role (borrowing the source file's bytes, in their own
//! encoding), and its vocabulary. Readers build a [`Source`]; the importer consumes it.

use super::tokenizer::Vocab;

/// How a source tensor's elements are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    F32,
    F16,
    Bf16,
    /// GGML Q8_0: blocks of 32 as an f16 scale then 32 × i8.
    GgmlQ8_0,
    /// GGML Q4_0: blocks of 32 as an f16 scale then 16 bytes, weight j in the low nibble of byte
    /// j and weight j + 16 in its high nibble, value (nibble − 8) · scale.
    GgmlQ4_0,
    /// llama2.c v2 (`runq`): all of a tensor's i8 values, then one f32 scale per `group` values.
    Llama2cQ8 {
        group: usize,
    },
}

impl Encoding {
    pub fn name(self) -> String {
        match self {
            Encoding::F32 => "F32".into(),
            Encoding::F16 => "F16".into(),
            Encoding::Bf16 => "BF16".into(),
            Encoding::GgmlQ8_0 => "Q8_0".into(),
            Encoding::GgmlQ4_0 => "Q4_0".into(),
            Encoding::Llama2cQ8 { group } => format!("Q8_0 (llama2.c, groups of {group})"),
        }
    }
    /// Whether the values are already quantized (so another quantization is a requantization).
    pub fn quantized(self) -> bool {
        matches!(
            self,
            Encoding::GgmlQ8_0 | Encoding::GgmlQ4_0 | Encoding::Llama2cQ8 { .. }
        )
    }
    /// Bytes of a `rows × cols` tensor (`None` when a row is not whole blocks or it overflows).
    pub fn bytes(self, rows: usize, cols: usize) -> Option<usize> {
        let n = rows.checked_mul(cols)?;
        match self {
            Encoding::F32 => n.checked_mul(4),
            Encoding::F16 | Encoding::Bf16 => n.checked_mul(2),
            Encoding::GgmlQ8_0 if cols.is_multiple_of(32) => (n / 32).checked_mul(34),
            Encoding::GgmlQ4_0 if cols.is_multiple_of(32) => (n / 32).checked_mul(18),
            Encoding::Llama2cQ8 { group } if group > 0 && n.is_multiple_of(group) => {
                n.checked_add((n / group).checked_mul(4)?)
            }
            _ => None,
        }
    }
}

/// IEEE half to single precision (exact: every f16 is an f32).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalise the mantissa.
            let shift = m.leading_zeros() - 21;
            let m = (m << shift) & 0x3ff;
            sign | ((127 - 15 - shift + 1) << 23) | (m << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}
fn f32_at(b: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// One tensor of the source: `rows × cols`, row-major, in `enc`. Vectors have one row.
#[derive(Debug, Clone)]
pub struct Tensor<'a> {
    pub name: String,
    pub enc: Encoding,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl<'a> Tensor<'a> {
    /// A tensor over `data`, which must hold exactly its bytes.
    pub fn new(
        name: impl Into<String>,
        enc: Encoding,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Tensor<'a>, String> {
        let name = name.into();
        match enc.bytes(rows, cols) {
            Some(n) if n == data.len() => Ok(Tensor {
                name,
                enc,
                rows,
                cols,
                data,
            }),
            Some(n) => Err(format!(
                "tensor {name}: {} bytes where {rows} x {cols} in {} takes {n}",
                data.len(),
                enc.name()
            )),
            None => Err(format!(
                "tensor {name}: {rows} x {cols} cannot be stored in {} (rows must be whole blocks)",
                enc.name()
            )),
        }
    }

    /// Row `r` as f32 values: the source's own dequantization (`out.len() == cols`).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        let c = self.cols;
        match self.enc {
            Encoding::F32 => {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = f32_at(self.data, 4 * (r * c + i));
                }
            }
            Encoding::F16 => {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = f16_to_f32(u16_at(self.data, 2 * (r * c + i)));
                }
            }
            Encoding::Bf16 => {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = f32::from_bits(u32::from(u16_at(self.data, 2 * (r * c + i))) << 16);
                }
            }
            Encoding::GgmlQ8_0 => {
                let row = &self.data[r * (c / 32) * 34..];
                for (b, chunk) in out.chunks_mut(32).enumerate() {
                    let blk = &row[b * 34..b * 34 + 34];
                    let d = f16_to_f32(u16_at(blk, 0));
                    for (j, o) in chunk.iter_mut().enumerate() {
                        *o = f32::from(blk[2 + j] as i8) * d;
                    }
                }
            }
            Encoding::GgmlQ4_0 => {
                let row = &self.data[r * (c / 32) * 18..];
                for (b, chunk) in out.chunks_mut(32).enumerate() {
                    let blk = &row[b * 18..b * 18 + 18];
                    let d = f16_to_f32(u16_at(blk, 0));
                    for j in 0..16 {
                        chunk[j] = (i32::from(blk[2 + j] & 0x0f) - 8) as f32 * d;
                        chunk[j + 16] = (i32::from(blk[2 + j] >> 4) - 8) as f32 * d;
                    }
                }
            }
            Encoding::Llama2cQ8 { group } => {
                let n = self.rows * c;
                let (q, s) = self.data.split_at(n);
                for (i, o) in out.iter_mut().enumerate() {
                    let k = r * c + i;
                    *o = f32::from(q[k] as i8) * f32_at(s, 4 * (k / group));
                }
            }
        }
    }
}

/// The hyperparameters the firmware's transformer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Hyper {
    pub dim: usize,
    pub hidden_dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub vocab_size: usize,
    pub seq_len: usize,
    pub norm_eps: f32,
    /// Dimensions of each head that RoPE rotates (the rest pass through).
    pub rope_dim: usize,
    pub rope_base: f64,
}

/// One transformer layer's tensors.
#[derive(Debug, Clone)]
pub struct Layer<'a> {
    pub att_norm: Tensor<'a>,
    pub wq: Tensor<'a>,
    pub wk: Tensor<'a>,
    pub wv: Tensor<'a>,
    pub wo: Tensor<'a>,
    pub ffn_norm: Tensor<'a>,
    /// Gate (llama.cpp `ffn_gate`, llama2.c `w1`).
    pub w1: Tensor<'a>,
    /// Down (`ffn_down`, `w2`).
    pub w2: Tensor<'a>,
    /// Up (`ffn_up`, `w3`).
    pub w3: Tensor<'a>,
}

/// A whole source model.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    /// `gguf`, `llama2c-v0`, `llama2c-v1` or `llama2c-v2`.
    pub format: &'static str,
    pub hyper: Hyper,
    pub embedding: Tensor<'a>,
    pub layers: Vec<Layer<'a>>,
    pub norm: Tensor<'a>,
    /// The classifier; `None` when it is the embedding (tied weights).
    pub output: Option<Tensor<'a>>,
    pub vocab: Option<Vocab>,
    /// The model's own name, where the format carries one (GGUF `general.name`).
    pub name: Option<String>,
}

impl Source<'_> {
    /// Every tensor with the shape the hyperparameters give it, or the first that differs.
    pub fn check_shapes(&self) -> Result<(), String> {
        let h = &self.hyper;
        let hd = h.dim / h.n_heads.max(1);
        let kv = hd * h.n_kv_heads;
        let want = |t: &Tensor<'_>, rows: usize, cols: usize| {
            if (t.rows, t.cols) == (rows, cols) {
                Ok(())
            } else {
                Err(format!(
                    "tensor {} is {} x {}; the hyperparameters make it {rows} x {cols}",
                    t.name, t.rows, t.cols
                ))
            }
        };
        want(&self.embedding, h.vocab_size, h.dim)?;
        for l in &self.layers {
            want(&l.att_norm, 1, h.dim)?;
            want(&l.wq, h.dim, h.dim)?;
            want(&l.wk, kv, h.dim)?;
            want(&l.wv, kv, h.dim)?;
            want(&l.wo, h.dim, h.dim)?;
            want(&l.ffn_norm, 1, h.dim)?;
            want(&l.w1, h.hidden_dim, h.dim)?;
            want(&l.w2, h.dim, h.hidden_dim)?;
            want(&l.w3, h.hidden_dim, h.dim)?;
        }
        want(&self.norm, 1, h.dim)?;
        if let Some(o) = &self.output {
            want(o, h.vocab_size, h.dim)?;
        }
        Ok(())
    }

    /// Every tensor in file order of the labctl format.
    pub fn tensors(&self) -> Vec<&Tensor<'_>> {
        let mut v = vec![&self.embedding];
        for l in &self.layers {
            v.extend([
                &l.att_norm,
                &l.wq,
                &l.wk,
                &l.wv,
                &l.wo,
                &l.ffn_norm,
                &l.w1,
                &l.w2,
                &l.w3,
            ]);
        }
        v.push(&self.norm);
        if let Some(o) = &self.output {
            v.push(o);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_converts_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14));
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
    }
}
