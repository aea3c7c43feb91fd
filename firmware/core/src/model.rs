//! The model file: a 64-byte header followed by tensors in a fixed order, read in place (the
//! firmware maps the file, nothing is copied). `labctl model gen` writes files with the same
//! [`Layout`], so writer and reader cannot disagree.
//!
//! Header (little-endian):
//!
//! | offset | field |
//! |---|---|
//! | 0 | magic `LTLM` |
//! | 4 | format version (1) |
//! | 8 | dim |
//! | 12 | hidden_dim |
//! | 16 | n_layers |
//! | 20 | n_heads |
//! | 24 | n_kv_heads |
//! | 28 | vocab_size |
//! | 32 | seq_len (longest context) |
//! | 36 | quant (0 f32, 1 q8_0, 2 q4_0, 3 q3, 4 q2) |
//! | 40 | group size (32) |
//! | 44 | flags (bit 0: classifier shares the token embedding) |
//! | 48 | norm epsilon (f32) |
//! | 52 | total file length in bytes |
//! | 56 | reserved (0) |
//! | 60 | CRC-16 of bytes 0..60 in the low half, 0 in the high half |
//!
//! Tensors, in order (matrices are `rows × cols`, each row quantized in whole blocks of 32,
//! zero-padded; vectors are f32):
//! 1. RoPE table: `seq_len × head_dim/2` pairs (cos, sin), f32
//! 2. token embedding `vocab × dim`
//! 3. per layer: `rms_att[dim]`, `wq dim×dim`, `wk kv_dim×dim`, `wv kv_dim×dim`, `wo dim×dim`,
//!    `rms_ffn[dim]`, `w1 hidden×dim`, `w2 dim×hidden`, `w3 hidden×dim`
//! 4. `rms_final[dim]`
//! 5. classifier `vocab × dim` (absent when flag bit 0 is set)

use crate::crc::crc16;
use crate::quant::{blocks_per_row, Quant, GROUP};

pub const MAGIC: [u8; 4] = *b"LTLM";
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 64;
pub const FLAG_SHARED_CLASSIFIER: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    pub dim: u32,
    pub hidden_dim: u32,
    pub n_layers: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub vocab_size: u32,
    pub seq_len: u32,
    pub quant: Quant,
    pub shared_classifier: bool,
    pub norm_eps: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelError {
    TooShort,
    BadMagic,
    UnsupportedVersion(u32),
    BadHeaderChecksum,
    BadQuant(u32),
    BadGroupSize(u32),
    /// A dimension is zero, too large, or inconsistent (e.g. heads do not divide dim).
    BadShape(&'static str),
    /// The header's length does not match the data.
    LengthMismatch {
        header: u32,
        actual: usize,
    },
}

impl core::fmt::Display for ModelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ModelError::TooShort => write!(f, "shorter than the 64-byte model header"),
            ModelError::BadMagic => write!(f, "not a labctl model file (magic is not LTLM)"),
            ModelError::UnsupportedVersion(v) => write!(
                f,
                "model format version {v} is not supported (expected {FORMAT_VERSION})"
            ),
            ModelError::BadHeaderChecksum => {
                write!(f, "model header checksum mismatch (corrupted file)")
            }
            ModelError::BadQuant(q) => write!(f, "unknown quantization code {q}"),
            ModelError::BadGroupSize(g) => write!(f, "group size {g} (expected {GROUP})"),
            ModelError::BadShape(why) => write!(f, "bad model shape: {why}"),
            ModelError::LengthMismatch { header, actual } => {
                write!(f, "header says {header} bytes, file has {actual}")
            }
        }
    }
}

/// Byte offsets of every tensor, computed from a [`Config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub rope: usize,
    pub embedding: usize,
    pub layers: usize,
    pub layer_bytes: usize,
    pub rms_final: usize,
    pub classifier: usize,
    pub total: usize,
}

/// Offsets of one layer's tensors relative to the layer's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerLayout {
    pub rms_att: usize,
    pub wq: usize,
    pub wk: usize,
    pub wv: usize,
    pub wo: usize,
    pub rms_ffn: usize,
    pub w1: usize,
    pub w2: usize,
    pub w3: usize,
}

impl Config {
    pub const fn head_dim(&self) -> usize {
        (self.dim / self.n_heads) as usize
    }
    pub const fn kv_dim(&self) -> usize {
        self.head_dim() * self.n_kv_heads as usize
    }
    /// Bytes of a `rows × cols` matrix in this model's quantization.
    pub const fn matrix_bytes(&self, rows: usize, cols: usize) -> usize {
        rows * blocks_per_row(cols) * self.quant.block_bytes()
    }

    pub fn layer_layout(&self) -> LayerLayout {
        let (d, h, kv) = (self.dim as usize, self.hidden_dim as usize, self.kv_dim());
        let rms_att = 0;
        let wq = rms_att + 4 * d;
        let wk = wq + self.matrix_bytes(d, d);
        let wv = wk + self.matrix_bytes(kv, d);
        let wo = wv + self.matrix_bytes(kv, d);
        let rms_ffn = wo + self.matrix_bytes(d, d);
        let w1 = rms_ffn + 4 * d;
        let w2 = w1 + self.matrix_bytes(h, d);
        let w3 = w2 + self.matrix_bytes(d, h);
        LayerLayout {
            rms_att,
            wq,
            wk,
            wv,
            wo,
            rms_ffn,
            w1,
            w2,
            w3,
        }
    }

    pub fn layout(&self) -> Layout {
        let (d, h) = (self.dim as usize, self.hidden_dim as usize);
        let rope = HEADER_LEN;
        let embedding = rope + self.seq_len as usize * self.head_dim() / 2 * 8;
        let layers = embedding + self.matrix_bytes(self.vocab_size as usize, d);
        let layer_bytes = self.layer_layout().w3 + self.matrix_bytes(h, d);
        let rms_final = layers + layer_bytes * self.n_layers as usize;
        let classifier = rms_final + 4 * d;
        let total = if self.shared_classifier {
            classifier
        } else {
            classifier + self.matrix_bytes(self.vocab_size as usize, d)
        };
        Layout {
            rope,
            embedding,
            layers,
            layer_bytes,
            rms_final,
            classifier,
            total,
        }
    }

    /// Weights (parameters) in the model, excluding the RoPE table.
    pub fn parameters(&self) -> u64 {
        let (d, h, kv, v) = (
            u64::from(self.dim),
            u64::from(self.hidden_dim),
            self.kv_dim() as u64,
            u64::from(self.vocab_size),
        );
        let layer = 2 * d + d * d * 2 + 2 * kv * d + 3 * h * d;
        v * d
            + u64::from(self.n_layers) * layer
            + d
            + if self.shared_classifier { 0 } else { v * d }
    }

    fn check(&self) -> Result<(), ModelError> {
        let bad = |w| Err(ModelError::BadShape(w));
        if self.dim == 0 || self.dim > 8192 {
            return bad("dim must be 1..8192");
        }
        if self.hidden_dim == 0 || self.hidden_dim > 32768 {
            return bad("hidden_dim must be 1..32768");
        }
        if self.n_layers == 0 || self.n_layers > 128 {
            return bad("n_layers must be 1..128");
        }
        if self.n_heads == 0 || !self.dim.is_multiple_of(self.n_heads) {
            return bad("n_heads must divide dim");
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad("head_dim must be even (RoPE rotates pairs)");
        }
        if self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad("n_kv_heads must divide n_heads");
        }
        if self.vocab_size < 2 || self.vocab_size > 1 << 20 {
            return bad("vocab_size must be 2..2^20");
        }
        if self.seq_len == 0 || self.seq_len > 1 << 16 {
            return bad("seq_len must be 1..65536");
        }
        if !(self.norm_eps > 0.0 && self.norm_eps < 1.0) {
            return bad("norm_eps must be in (0, 1)");
        }
        Ok(())
    }

    /// The 64-byte header for this configuration.
    pub fn header(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        let words = [
            FORMAT_VERSION,
            self.dim,
            self.hidden_dim,
            self.n_layers,
            self.n_heads,
            self.n_kv_heads,
            self.vocab_size,
            self.seq_len,
            self.quant as u32,
            GROUP as u32,
            if self.shared_classifier {
                FLAG_SHARED_CLASSIFIER
            } else {
                0
            },
            self.norm_eps.to_bits(),
            self.layout().total as u32,
            0,
        ];
        for (i, w) in words.iter().enumerate() {
            h[4 + 4 * i..8 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        let sum = crc16(&h[..60]);
        h[60..64].copy_from_slice(&u32::from(sum).to_le_bytes());
        h
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Reads and checks a header; `file_len` is the length of the whole model data.
pub fn parse_header(b: &[u8], file_len: usize) -> Result<Config, ModelError> {
    if b.len() < HEADER_LEN {
        return Err(ModelError::TooShort);
    }
    if b[0..4] != MAGIC {
        return Err(ModelError::BadMagic);
    }
    let version = u32_at(b, 4);
    if version != FORMAT_VERSION {
        return Err(ModelError::UnsupportedVersion(version));
    }
    if u32_at(b, 60) != u32::from(crc16(&b[..60])) {
        return Err(ModelError::BadHeaderChecksum);
    }
    let q = u32_at(b, 36);
    let quant = Quant::from_u32(q).ok_or(ModelError::BadQuant(q))?;
    let g = u32_at(b, 40);
    if g as usize != GROUP {
        return Err(ModelError::BadGroupSize(g));
    }
    let cfg = Config {
        dim: u32_at(b, 8),
        hidden_dim: u32_at(b, 12),
        n_layers: u32_at(b, 16),
        n_heads: u32_at(b, 20),
        n_kv_heads: u32_at(b, 24),
        vocab_size: u32_at(b, 28),
        seq_len: u32_at(b, 32),
        quant,
        shared_classifier: u32_at(b, 44) & FLAG_SHARED_CLASSIFIER != 0,
        norm_eps: f32::from_bits(u32_at(b, 48)),
    };
    cfg.check()?;
    let total = cfg.layout().total;
    let header_total = u32_at(b, 52);
    if header_total as usize != total || total != file_len {
        return Err(ModelError::LengthMismatch {
            header: header_total,
            actual: file_len,
        });
    }
    Ok(cfg)
}

/// A model mapped in place.
#[derive(Clone, Copy)]
pub struct Model<'m> {
    pub cfg: Config,
    pub layout: Layout,
    pub ll: LayerLayout,
    pub bytes: &'m [u8],
}

impl<'m> Model<'m> {
    pub fn from_bytes(bytes: &'m [u8]) -> Result<Model<'m>, ModelError> {
        let cfg = parse_header(bytes, bytes.len())?;
        Ok(Model {
            cfg,
            layout: cfg.layout(),
            ll: cfg.layer_layout(),
            bytes,
        })
    }

    pub fn layer(&self, l: usize) -> &'m [u8] {
        let start = self.layout.layers + l * self.layout.layer_bytes;
        &self.bytes[start..start + self.layout.layer_bytes]
    }

    pub fn classifier(&self) -> &'m [u8] {
        if self.cfg.shared_classifier {
            &self.bytes[self.layout.embedding..self.layout.layers]
        } else {
            &self.bytes[self.layout.classifier..self.layout.total]
        }
    }

    /// (cos, sin) of RoPE pair `i` at position `pos`.
    pub fn rope(&self, pos: usize, i: usize) -> (f32, f32) {
        let off = self.layout.rope + (pos * self.cfg.head_dim() / 2 + i) * 8;
        (f32_le(self.bytes, off), f32_le(self.bytes, off + 4))
    }
}

pub fn f32_le(b: &[u8], off: usize) -> f32 {
    f32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}
