//! Turning a [`Source`] into a labctl model file. Q8_0 and Q4_0 tensors are **repacked** (GGML's
//! f16 scale becomes an f32 one, Q4_0 nibbles move from weights j / j+16 to 2j / 2j+1) and every
//! repacked row is checked to dequantize bit-for-bit as the source's own dequantization; f16 and
//! bf16 widen exactly to f32; anything else is a quantization (from floats) or a requantization
//! (from another quantization), and the report says which tensors went which way.

use fwcore::model::{Config, Model};
use fwcore::quant::{blocks_per_row, dequantize_block, quantize_block, Quant, GROUP};

use super::source::{Encoding, Source, Tensor};

/// How one tensor reached the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    /// The same bytes (f32 → f32).
    Copied,
    /// f16/bf16 → f32: every value exactly.
    Widened,
    /// Same quantization, new block layout, identical values.
    Repacked,
    /// Floats quantized.
    Quantized,
    /// Values of one quantization quantized again (lossy twice).
    Requantized,
}

/// Tensors that went one way, counted.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Conversion {
    pub from: String,
    pub to: String,
    pub how: How,
    pub tensors: usize,
    /// The first tensor of the group, for the report.
    pub example: String,
}

/// The imported model file and what happened to each tensor.
#[derive(Debug)]
pub struct Imported {
    pub bytes: Vec<u8>,
    pub cfg: Config,
    pub conversions: Vec<Conversion>,
    pub notes: Vec<String>,
}

impl Imported {
    pub fn requantized(&self) -> bool {
        self.conversions.iter().any(|c| c.how == How::Requantized)
    }
}

/// The quantization a source keeps without loss when none is asked for: its matrices' own when
/// they share one, f32 for float models. Mixed quantizations need an explicit choice.
pub fn natural_quant(src: &Source<'_>) -> Result<Quant, String> {
    let mut q: Option<Quant> = None;
    for t in src.tensors().into_iter().filter(|t| t.rows > 1) {
        let this = match t.enc {
            Encoding::GgmlQ8_0 | Encoding::Llama2cQ8 { .. } => Quant::Q8_0,
            Encoding::GgmlQ4_0 => Quant::Q4_0,
            _ => continue,
        };
        match q {
            Some(p) if p != this => {
                return Err(format!(
                    "the model mixes {} and {} matrices: say which one to store with --quant",
                    p.name(),
                    this.name()
                ))
            }
            _ => q = Some(this),
        }
    }
    Ok(q.unwrap_or(Quant::F32))
}

fn push_f32s(out: &mut Vec<u8>, v: impl IntoIterator<Item = f32>) {
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn how(enc: Encoding, q: Quant, cols: usize) -> How {
    match (enc, q) {
        (Encoding::F32, Quant::F32) => How::Copied,
        (Encoding::F16 | Encoding::Bf16, Quant::F32) => How::Widened,
        (Encoding::GgmlQ8_0, Quant::Q8_0) | (Encoding::GgmlQ4_0, Quant::Q4_0) => How::Repacked,
        (Encoding::Llama2cQ8 { group: 32 }, Quant::Q8_0) if cols.is_multiple_of(32) => {
            How::Repacked
        }
        (e, _) if e.quantized() => How::Requantized,
        _ => How::Quantized,
    }
}

/// Writes block `b` of row `r` of a repackable tensor into `out` (one block of `q`).
fn repack_block(t: &Tensor<'_>, r: usize, b: usize, out: &mut [u8]) {
    let nb = t.cols / 32;
    match t.enc {
        Encoding::GgmlQ8_0 => {
            let blk = &t.data[(r * nb + b) * 34..][..34];
            let d = super::source::f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
            out[..4].copy_from_slice(&d.to_le_bytes());
            out[4..36].copy_from_slice(&blk[2..34]);
        }
        Encoding::GgmlQ4_0 => {
            let blk = &t.data[(r * nb + b) * 18..][..18];
            let d = super::source::f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
            out[..4].copy_from_slice(&d.to_le_bytes());
            let nib = |i: usize| {
                if i < 16 {
                    blk[2 + i] & 0x0f
                } else {
                    blk[2 + i - 16] >> 4
                }
            };
            for j in 0..16 {
                out[4 + j] = nib(2 * j) | (nib(2 * j + 1) << 4);
            }
        }
        Encoding::Llama2cQ8 { group } => {
            let n = t.rows * t.cols;
            let k = r * t.cols + b * 32;
            let s = &t.data[n + 4 * (k / group)..][..4];
            out[..4].copy_from_slice(s);
            out[4..36].copy_from_slice(&t.data[k..k + 32]);
        }
        _ => unreachable!("only quantized encodings are repacked"),
    }
}

/// Appends a matrix in quantization `q`, row by row in whole blocks.
fn push_matrix(out: &mut Vec<u8>, t: &Tensor<'_>, q: Quant, h: How) -> Result<(), String> {
    let nb = blocks_per_row(t.cols);
    let bb = q.block_bytes();
    let mut row = vec![0f32; nb * GROUP];
    let mut blk = [0f32; GROUP];
    for r in 0..t.rows {
        t.row_f32(r, &mut row[..t.cols]);
        let start = out.len();
        out.resize(start + nb * bb, 0);
        let dst = &mut out[start..];
        for b in 0..nb {
            let o = &mut dst[b * bb..(b + 1) * bb];
            let src = &row[b * GROUP..(b + 1) * GROUP];
            match h {
                How::Repacked => {
                    repack_block(t, r, b, o);
                    dequantize_block(q, o, &mut blk);
                    // Bit-equal to the source's own dequantization, or the repack is wrong.
                    if blk.iter().zip(src).any(|(a, b)| a.to_bits() != b.to_bits()) {
                        return Err(format!(
                            "internal error: repacking {} row {r} block {b} changed its values",
                            t.name
                        ));
                    }
                }
                _ => quantize_block(q, src, o),
            }
        }
    }
    Ok(())
}

fn push_vector(out: &mut Vec<u8>, t: &Tensor<'_>) {
    let mut v = vec![0f32; t.cols];
    t.row_f32(0, &mut v);
    push_f32s(out, v);
}

/// The RoPE table as llama.cpp computes it: θ_i = pos · base^(−2i/rope_dim), by repeated f32
/// multiplication; pairs beyond `rope_dim` are not rotated (cos 1, sin 0).
fn push_rope(out: &mut Vec<u8>, seq_len: usize, head_dim: usize, rope_dim: usize, base: f64) {
    let scale = (base as f32).powf(-2.0 / rope_dim as f32);
    for pos in 0..seq_len {
        let mut theta = pos as f32;
        for i in 0..head_dim / 2 {
            if 2 * i < rope_dim {
                push_f32s(out, [theta.cos(), theta.sin()]);
                theta *= scale;
            } else {
                push_f32s(out, [1.0, 0.0]);
            }
        }
    }
}

/// Imports `src` as quantization `quant` (default [`natural_quant`]) with at most `ctx` tokens
/// of context (default the model's).
pub fn import(
    src: &Source<'_>,
    quant: Option<Quant>,
    ctx: Option<usize>,
) -> Result<Imported, String> {
    src.check_shapes()?;
    let h = &src.hyper;
    let q = match quant {
        Some(q) => q,
        None => natural_quant(src)?,
    };
    let mut notes = vec![];
    let seq_len = match ctx {
        Some(0) => return Err("--ctx 0: the context must hold at least one token".into()),
        Some(c) if c < h.seq_len => {
            notes.push(format!(
                "context cut from {} to {c} tokens (--ctx)",
                h.seq_len
            ));
            c
        }
        _ => h.seq_len,
    };
    let u = |x: usize, what: &str| u32::try_from(x).map_err(|_| format!("{what} {x} is too large"));
    let cfg = Config {
        dim: u(h.dim, "dim")?,
        hidden_dim: u(h.hidden_dim, "hidden_dim")?,
        n_layers: u(h.n_layers, "n_layers")?,
        n_heads: u(h.n_heads, "n_heads")?,
        n_kv_heads: u(h.n_kv_heads, "n_kv_heads")?,
        vocab_size: u(h.vocab_size, "vocab_size")?,
        seq_len: u(seq_len, "context")?,
        quant: q,
        shared_classifier: src.output.is_none(),
        norm_eps: h.norm_eps,
    };
    let total = cfg.layout().total;
    if total > u32::MAX as usize {
        return Err(format!(
            "the imported model would be {total} bytes; labctl model files hold at most 4 GiB"
        ));
    }
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&cfg.header());
    push_rope(&mut out, seq_len, cfg.head_dim(), h.rope_dim, h.rope_base);
    let mut conversions: Vec<Conversion> = vec![];
    let mut matrix = |out: &mut Vec<u8>, t: &Tensor<'_>| -> Result<(), String> {
        let hw = how(t.enc, q, t.cols);
        push_matrix(out, t, q, hw)?;
        let (from, to) = (t.enc.name(), q.name().to_string());
        match conversions
            .iter_mut()
            .find(|c| c.from == from && c.to == to && c.how == hw)
        {
            Some(c) => c.tensors += 1,
            None => conversions.push(Conversion {
                from,
                to,
                how: hw,
                tensors: 1,
                example: t.name.clone(),
            }),
        }
        Ok(())
    };
    matrix(&mut out, &src.embedding)?;
    for l in &src.layers {
        push_vector(&mut out, &l.att_norm);
        for t in [&l.wq, &l.wk, &l.wv, &l.wo] {
            matrix(&mut out, t)?;
        }
        push_vector(&mut out, &l.ffn_norm);
        for t in [&l.w1, &l.w2, &l.w3] {
            matrix(&mut out, t)?;
        }
    }
    push_vector(&mut out, &src.norm);
    if let Some(o) = &src.output {
        matrix(&mut out, o)?;
    }
    if out.len() != total {
        return Err(format!(
            "internal error: wrote {} bytes, the layout says {total}",
            out.len()
        ));
    }
    Model::from_bytes(&out).map_err(|e| format!("the imported model does not load: {e}"))?;
    if let Some(c) = conversions.iter().find(|c| c.how == How::Requantized) {
        notes.push(format!(
            "{} tensors requantized from {} to {} (e.g. {}): quantization error on top of the source's",
            c.tensors, c.from, c.to, c.example
        ));
    }
    Ok(Imported {
        bytes: out,
        cfg,
        conversions,
        notes,
    })
}
