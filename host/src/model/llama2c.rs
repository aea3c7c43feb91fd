//! Reading llama2.c checkpoints (Karpathy's `run.c`/`runq.c` formats) into a [`Source`]:
//!
//! - **v0** (legacy): seven i32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
//!   seq_len; a negative vocab_size means a separate classifier), then f32 tensors grouped by
//!   kind across layers: embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, the
//!   RoPE table's real and imaginary halves (skipped: labctl computes its own), classifier;
//! - **v1**: a 256-byte header (magic `ak42` as u32 0x616b3432, version 1, the seven i32, a
//!   shared-classifier byte), then f32: rms_att ×L, rms_ffn ×L, rms_final, embedding, wq ×L, wk ×L,
//!   wv ×L, wo ×L, w1 ×L, w2 ×L, w3 ×L, classifier unless shared;
//! - **v2** (Q8_0, `runq`): the v1 header plus an i32 group size at byte 37, the norms in f32,
//!   then every matrix of the v1 order (embedding first) as its i8 values followed by its f32
//!   scales, one per group.
//!
//! llama2.c models use RMSNorm ε = 1e-5 and RoPE θ = 10000 over whole heads.

use super::source::{Encoding, Hyper, Layer, Source, Tensor};

const MAGIC: u32 = 0x616b_3432;
const HEADER_V1: usize = 256;

fn i32_at(b: &[u8], i: usize) -> i32 {
    i32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Sequential tensor slices over the checkpoint, every length checked.
struct Cur<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.b.len() - self.at < n {
            return Err(format!(
                "the file ends inside {what} (byte {}: {n} bytes needed, {} left): truncated, or not a llama2.c checkpoint",
                self.at,
                self.b.len() - self.at
            ));
        }
        self.at += n;
        Ok(&self.b[self.at - n..self.at])
    }
    fn tensor(
        &mut self,
        name: String,
        enc: Encoding,
        rows: usize,
        cols: usize,
    ) -> Result<Tensor<'a>, String> {
        let n = enc
            .bytes(rows, cols)
            .ok_or_else(|| format!("tensor {name}: {rows} x {cols} does not fit {}", enc.name()))?;
        let data = self.take(n, &name)?;
        Tensor::new(name, enc, rows, cols, data)
    }
    /// The classifier unless it is shared with the embedding, and then the end of the file:
    /// bytes after the last tensor mean the header does not describe the file.
    fn classifier_and_end(
        &mut self,
        shared: bool,
        enc: Encoding,
        vocab: usize,
        dim: usize,
    ) -> Result<Option<Tensor<'a>>, String> {
        let out = if shared {
            None
        } else {
            Some(self.tensor("classifier".into(), enc, vocab, dim)?)
        };
        if self.at != self.b.len() {
            return Err(format!(
                "{} bytes after the last tensor: the header does not describe this file",
                self.b.len() - self.at
            ));
        }
        Ok(out)
    }

    /// One tensor per layer, named `name.L`.
    fn per_layer(
        &mut self,
        name: &str,
        enc: Encoding,
        layers: usize,
        rows: usize,
        cols: usize,
    ) -> Result<Vec<Tensor<'a>>, String> {
        (0..layers)
            .map(|l| self.tensor(format!("{name}.{l}"), enc, rows, cols))
            .collect()
    }
}

fn hyper(b: &[u8], at: usize) -> Result<(Hyper, bool), String> {
    if b.len() < at + 28 {
        return Err("shorter than a llama2.c header".into());
    }
    let v: Vec<i32> = (0..7).map(|i| i32_at(b, at + 4 * i)).collect();
    let shared = v[5] > 0;
    let vocab = v[5].unsigned_abs() as usize;
    let (dim, hidden, layers, heads, kv, seq) = (v[0], v[1], v[2], v[3], v[4], v[6]);
    let sane = |x: i32, max: i32| x > 0 && x <= max;
    if !(sane(dim, 8192)
        && sane(hidden, 65536)
        && sane(layers, 256)
        && sane(heads, 256)
        && sane(kv, 256)
        && vocab > 0
        && vocab <= 1 << 20
        && sane(seq, 1 << 20))
    {
        return Err(format!(
            "header (dim {dim}, hidden {hidden}, layers {layers}, heads {heads}, kv heads {kv}, vocab {}, context {seq}) is not a llama2.c model",
            v[5]
        ));
    }
    if dim % heads != 0 || heads % kv != 0 {
        return Err(format!(
            "heads {heads} do not divide dim {dim}, or kv heads {kv} do not divide heads"
        ));
    }
    let hd = (dim / heads) as usize;
    Ok((
        Hyper {
            dim: dim as usize,
            hidden_dim: hidden as usize,
            n_layers: layers as usize,
            n_heads: heads as usize,
            n_kv_heads: kv as usize,
            vocab_size: vocab,
            seq_len: seq as usize,
            norm_eps: 1e-5,
            rope_dim: hd,
            rope_base: 10000.0,
        },
        shared,
    ))
}

struct Mats<'a> {
    wq: Vec<Tensor<'a>>,
    wk: Vec<Tensor<'a>>,
    wv: Vec<Tensor<'a>>,
    wo: Vec<Tensor<'a>>,
    w1: Vec<Tensor<'a>>,
    w2: Vec<Tensor<'a>>,
    w3: Vec<Tensor<'a>>,
}

fn mats<'a>(c: &mut Cur<'a>, h: &Hyper, enc: Encoding) -> Result<Mats<'a>, String> {
    let (d, hid, l) = (h.dim, h.hidden_dim, h.n_layers);
    let kv = d / h.n_heads * h.n_kv_heads;
    Ok(Mats {
        wq: c.per_layer("wq", enc, l, d, d)?,
        wk: c.per_layer("wk", enc, l, kv, d)?,
        wv: c.per_layer("wv", enc, l, kv, d)?,
        wo: c.per_layer("wo", enc, l, d, d)?,
        w1: c.per_layer("w1", enc, l, hid, d)?,
        w2: c.per_layer("w2", enc, l, d, hid)?,
        w3: c.per_layer("w3", enc, l, hid, d)?,
    })
}

/// The tensors of a checkpoint as read, before they are grouped by layer.
struct Parts<'a> {
    embedding: Tensor<'a>,
    att: Vec<Tensor<'a>>,
    ffn: Vec<Tensor<'a>>,
    m: Mats<'a>,
    norm: Tensor<'a>,
    output: Option<Tensor<'a>>,
}

fn assemble<'a>(format: &'static str, hyper: Hyper, p: Parts<'a>) -> Source<'a> {
    let Parts {
        embedding,
        att,
        ffn,
        m,
        norm,
        output,
    } = p;
    let mut layers = Vec::with_capacity(hyper.n_layers);
    let mut it = (
        att.into_iter(),
        ffn.into_iter(),
        m.wq.into_iter(),
        m.wk.into_iter(),
        m.wv.into_iter(),
        m.wo.into_iter(),
        m.w1.into_iter(),
        m.w2.into_iter(),
        m.w3.into_iter(),
    );
    while let (
        Some(att_norm),
        Some(ffn_norm),
        Some(wq),
        Some(wk),
        Some(wv),
        Some(wo),
        Some(w1),
        Some(w2),
        Some(w3),
    ) = (
        it.0.next(),
        it.1.next(),
        it.2.next(),
        it.3.next(),
        it.4.next(),
        it.5.next(),
        it.6.next(),
        it.7.next(),
        it.8.next(),
    ) {
        layers.push(Layer {
            att_norm,
            wq,
            wk,
            wv,
            wo,
            ffn_norm,
            w1,
            w2,
            w3,
        });
    }
    Source {
        format,
        hyper,
        embedding,
        layers,
        norm,
        output,
        vocab: None,
        name: None,
    }
}

/// Whether `b` starts like a llama2.c checkpoint of any version (v0 has no magic: its first
/// field is a plausible dim).
pub fn looks_like(b: &[u8]) -> bool {
    b.len() >= 28 && (i32_at(b, 0) as u32 == MAGIC || hyper(b, 0).is_ok())
}

/// Reads a llama2.c checkpoint of version 0, 1 or 2.
pub fn read(b: &[u8]) -> Result<Source<'_>, String> {
    if b.len() < 8 {
        return Err("shorter than a llama2.c header".into());
    }
    if i32_at(b, 0) as u32 != MAGIC {
        return read_v0(b);
    }
    let version = i32_at(b, 4);
    if b.len() < HEADER_V1 {
        return Err("shorter than the 256-byte llama2.c v1/v2 header".into());
    }
    let (h, _) = hyper(b, 8)?;
    let shared = match b[36] {
        0 => false,
        1 => true,
        x => return Err(format!("shared-classifier byte is {x} (0 or 1 expected)")),
    };
    let (d, l) = (h.dim, h.n_layers);
    let mut c = Cur { b, at: HEADER_V1 };
    let att = c.per_layer("rms_att", Encoding::F32, l, 1, d)?;
    let ffn = c.per_layer("rms_ffn", Encoding::F32, l, 1, d)?;
    let norm = c.tensor("rms_final".into(), Encoding::F32, 1, d)?;
    let (format, enc) = match version {
        1 => ("llama2c-v1", Encoding::F32),
        2 => {
            let g = i32_at(b, 37);
            if !(1..=4096).contains(&g) {
                return Err(format!("v2 group size {g} (1..4096 expected)"));
            }
            ("llama2c-v2", Encoding::Llama2cQ8 { group: g as usize })
        }
        v => {
            return Err(format!(
                "llama2.c checkpoint version {v} is not supported (0, 1 and 2 are)"
            ))
        }
    };
    let emb = c.tensor("embedding".into(), enc, h.vocab_size, d)?;
    let m = mats(&mut c, &h, enc)?;
    let out = c.classifier_and_end(shared, enc, h.vocab_size, d)?;
    let parts = Parts {
        embedding: emb,
        att,
        ffn,
        m,
        norm,
        output: out,
    };
    Ok(assemble(format, h, parts))
}

fn read_v0(b: &[u8]) -> Result<Source<'_>, String> {
    let (h, shared) = hyper(b, 0)?;
    let (d, l) = (h.dim, h.n_layers);
    let mut c = Cur { b, at: 28 };
    let f = Encoding::F32;
    let emb = c.tensor("embedding".into(), f, h.vocab_size, d)?;
    let att = c.per_layer("rms_att", f, l, 1, d)?;
    let (d, hid, kv) = (h.dim, h.hidden_dim, h.dim / h.n_heads * h.n_kv_heads);
    let wq = c.per_layer("wq", f, l, d, d)?;
    let wk = c.per_layer("wk", f, l, kv, d)?;
    let wv = c.per_layer("wv", f, l, kv, d)?;
    let wo = c.per_layer("wo", f, l, d, d)?;
    let ffn = c.per_layer("rms_ffn", f, l, 1, d)?;
    let w1 = c.per_layer("w1", f, l, hid, d)?;
    let w2 = c.per_layer("w2", f, l, d, hid)?;
    let w3 = c.per_layer("w3", f, l, hid, d)?;
    let norm = c.tensor("rms_final".into(), f, 1, d)?;
    let rope = h.seq_len * (d / h.n_heads) / 2 * 4;
    c.take(rope, "freq_cis_real")?;
    c.take(rope, "freq_cis_imag")?;
    let out = c.classifier_and_end(shared, f, h.vocab_size, d)?;
    let m = Mats {
        wq,
        wk,
        wv,
        wo,
        w1,
        w2,
        w3,
    };
    let parts = Parts {
        embedding: emb,
        att,
        ffn,
        m,
        norm,
        output: out,
    };
    Ok(assemble("llama2c-v0", h, parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v0 checkpoint of a tiny shape with weights `k * 0.001`.
    fn v0(shared: bool) -> Vec<u8> {
        let (d, hid, l, nh, kv, v, seq) = (8i32, 16, 1, 2, 1, 4, 4);
        let mut b = vec![];
        for x in [d, hid, l, nh, kv, if shared { v } else { -v }, seq] {
            b.extend_from_slice(&x.to_le_bytes());
        }
        let kvd = d / nh * kv;
        let floats = v * d
            + l * (2 * d + 2 * d * d + 2 * kvd * d + 3 * hid * d)
            + d
            + seq * (d / nh)
            + if shared { 0 } else { v * d };
        for k in 0..floats {
            b.extend_from_slice(&(k as f32 * 0.001).to_le_bytes());
        }
        b
    }

    #[test]
    fn reads_v0_and_refuses_bad_lengths() {
        let b = v0(false);
        assert!(looks_like(&b));
        let s = read(&b).unwrap();
        assert_eq!(s.format, "llama2c-v0");
        assert!(s.output.is_some());
        s.check_shapes().unwrap();
        let mut row = [0f32; 8];
        s.embedding.row_f32(1, &mut row);
        assert_eq!(row[0], 8.0 * 0.001);
        // rms_att follows the embedding (4 x 8 floats).
        s.layers[0].att_norm.row_f32(0, &mut row);
        assert_eq!(row[0], 32.0 * 0.001);
        assert!(read(&v0(true)).unwrap().output.is_none());
        let e = read(&b[..b.len() - 4]).unwrap_err();
        assert!(e.contains("ends inside classifier"), "{e}");
        let mut long = b.clone();
        long.extend_from_slice(&[0; 4]);
        assert!(read(&long).unwrap_err().contains("after the last tensor"));
        let mut bad = b.clone();
        bad[0..4].copy_from_slice(&(-3i32).to_le_bytes());
        assert!(read(&bad).unwrap_err().contains("not a llama2.c model"));
    }
}
