//! A reader of GGUF files (the llama.cpp ecosystem's model container, versions 2 and 3): header,
//! metadata key/values and tensor directory, parsed from bytes with every length checked against
//! what is left of the file, so a hostile or truncated file is refused with the byte offset and
//! never makes the reader allocate more than the file holds.

use std::collections::BTreeMap;

use super::source::{Encoding, Hyper, Layer, Source, Tensor};
use super::tokenizer::Vocab;

/// What is wrong with a GGUF file, and where.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GgufError {
    #[error("not a GGUF file (magic is not GGUF)")]
    BadMagic,
    #[error("GGUF version {0} is not supported (2 and 3 are)")]
    Version(u32),
    #[error("at byte {at}: {what}")]
    At { at: usize, what: String },
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Uint(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Uint(v) => Some(v),
            Value::Int(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Uint(v) => i64::try_from(v).ok(),
            Value::Int(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Float(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// GGML tensor types this importer reads; others are named in refusals by [`type_name`].
pub const GGML_F32: u32 = 0;
pub const GGML_F16: u32 = 1;
pub const GGML_Q4_0: u32 = 2;
pub const GGML_Q8_0: u32 = 8;
pub const GGML_BF16: u32 = 30;

/// The name llama.cpp gives a GGML tensor type.
pub fn type_name(t: u32) -> String {
    let n = match t {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return format!("type {t}"),
    };
    n.to_string()
}

/// Bytes of `n` elements of a supported type (`None` for other types or a partial block).
pub fn type_bytes(t: u32, n: u64) -> Option<u64> {
    match t {
        GGML_F32 => n.checked_mul(4),
        GGML_F16 | GGML_BF16 => n.checked_mul(2),
        GGML_Q8_0 if n.is_multiple_of(32) => (n / 32).checked_mul(34),
        GGML_Q4_0 if n.is_multiple_of(32) => (n / 32).checked_mul(18),
        _ => None,
    }
}

/// One entry of the tensor directory. `dims[0]` is the fastest-varying (a row's length).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    /// Offset from the start of the data section.
    pub offset: u64,
}

/// A parsed GGUF file borrowing its bytes.
#[derive(Debug)]
pub struct Gguf<'a> {
    pub kv: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    /// The data section (tensor offsets are relative to its start).
    pub data: &'a [u8],
}

/// Longest key or string value accepted (a vocabulary piece is a few bytes; a chat template a few
/// KB). Longer is refused rather than trusted.
const MAX_STRING: u64 = 1 << 20;
const MAX_DIMS: u32 = 4;

struct Cur<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cur<'a> {
    fn err(&self, what: impl Into<String>) -> GgufError {
        GgufError::At {
            at: self.at,
            what: what.into(),
        }
    }
    fn left(&self) -> usize {
        self.b.len() - self.at
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], GgufError> {
        if n > self.left() {
            return Err(self.err(format!(
                "file ends inside {what} ({n} bytes needed, {} left)",
                self.left()
            )));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        let s = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    /// A count of items each at least `min` bytes long: never more than the rest of the file holds.
    fn count(&mut self, min: usize, what: &str) -> Result<usize, GgufError> {
        let at = self.at;
        let n = self.u64(what)?;
        if n > (self.left() / min.max(1)) as u64 {
            return Err(GgufError::At {
                at,
                what: format!(
                    "{what} is {n}, more than the {} bytes left can hold",
                    self.left()
                ),
            });
        }
        Ok(n as usize)
    }
    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let at = self.at;
        let n = self.u64(what)?;
        if n > MAX_STRING {
            return Err(GgufError::At {
                at,
                what: format!("{what} is {n} bytes long (at most {MAX_STRING} accepted)"),
            });
        }
        let s = self.take(n as usize, what)?;
        // Vocabulary pieces of some models are not valid UTF-8 on their own; keep them readable.
        Ok(String::from_utf8_lossy(s).into_owned())
    }
    fn value(&mut self, ty: u32, key: &str, depth: u8) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::Uint(u64::from(self.take(1, key)?[0])),
            1 => Value::Int(i64::from(self.take(1, key)?[0] as i8)),
            2 => {
                let s = self.take(2, key)?;
                Value::Uint(u64::from(u16::from_le_bytes([s[0], s[1]])))
            }
            3 => {
                let s = self.take(2, key)?;
                Value::Int(i64::from(i16::from_le_bytes([s[0], s[1]])))
            }
            4 => Value::Uint(u64::from(self.u32(key)?)),
            5 => Value::Int(i64::from(self.u32(key)? as i32)),
            6 => Value::Float(f64::from(f32::from_bits(self.u32(key)?))),
            7 => match self.take(1, key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(format!("{key}: boolean byte {b} (0 or 1 expected)"))),
            },
            8 => Value::Str(self.string(key)?),
            9 => {
                if depth > 0 {
                    return Err(self.err(format!("{key}: arrays of arrays are not supported")));
                }
                let ety = self.u32(key)?;
                let min = match ety {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    _ => return Err(self.err(format!("{key}: unknown array element type {ety}"))),
                };
                let n = self.count(min, key)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.value(ety, key, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::Uint(self.u64(key)?),
            11 => Value::Int(self.u64(key)? as i64),
            12 => Value::Float(f64::from_bits(self.u64(key)?)),
            _ => return Err(self.err(format!("{key}: unknown value type {ty}"))),
        })
    }
}

/// Parses the header, metadata and tensor directory of a GGUF file held in `bytes`, and checks
/// that every tensor of a supported type lies inside the file.
pub fn parse(bytes: &[u8]) -> Result<Gguf<'_>, GgufError> {
    let mut c = Cur { b: bytes, at: 0 };
    if bytes.len() < 4 || &bytes[..4] != b"GGUF" {
        return Err(GgufError::BadMagic);
    }
    c.at = 4;
    let version = c.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::Version(version));
    }
    // A tensor entry is at least 8 (name) + 4 + 8 + 4 + 8 bytes, a key/value at least 8 + 4 + 1.
    let n_tensors = {
        let at = c.at;
        let n = c.u64("tensor count")?;
        if n > (c.left() / 32) as u64 {
            return Err(GgufError::At {
                at,
                what: format!("tensor count {n} is more than the file can hold"),
            });
        }
        n as usize
    };
    let n_kv = c.count(13, "metadata count")?;
    let mut kv = BTreeMap::new();
    for _ in 0..n_kv {
        let key = c.string("metadata key")?;
        let ty = c.u32(&key)?;
        let v = c.value(ty, &key, 0)?;
        if kv.insert(key.clone(), v).is_some() {
            return Err(c.err(format!("metadata key {key:?} appears twice")));
        }
    }
    let mut tensors = Vec::with_capacity(n_tensors);
    for _ in 0..n_tensors {
        let name = c.string("tensor name")?;
        let nd = c.u32(&name)?;
        if nd == 0 || nd > MAX_DIMS {
            return Err(c.err(format!(
                "tensor {name}: {nd} dimensions (1..{MAX_DIMS} expected)"
            )));
        }
        let mut dims = Vec::with_capacity(nd as usize);
        for _ in 0..nd {
            dims.push(c.u64(&name)?);
        }
        let ggml_type = c.u32(&name)?;
        let offset = c.u64(&name)?;
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
        });
    }
    let align = match kv.get("general.alignment") {
        None => 32,
        Some(v) => match v.as_u64() {
            Some(a) if a.is_power_of_two() && a <= 1 << 16 => a as usize,
            _ => {
                return Err(c.err(format!(
                    "general.alignment {v:?} is not a power of two up to 65536"
                )))
            }
        },
    };
    // A file without tensors may end before the aligned start of its (empty) data section;
    // every tensor's bytes are checked against what is there.
    let data_start = c.at.div_ceil(align) * align;
    let data = bytes.get(data_start..).unwrap_or(&[]);
    for t in &tensors {
        let n = t
            .dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| GgufError::At {
                at: data_start,
                what: format!("tensor {}: element count overflows", t.name),
            })?;
        if let Some(size) = type_bytes(t.ggml_type, n) {
            let end = t.offset.checked_add(size);
            if end.is_none_or(|e| e > data.len() as u64) {
                return Err(GgufError::At {
                    at: data_start,
                    what: format!(
                        "tensor {} ({} bytes at data offset {}) runs past the end of the file ({} data bytes): truncated?",
                        t.name,
                        size,
                        t.offset,
                        data.len()
                    ),
                });
            }
        }
    }
    Ok(Gguf { kv, tensors, data })
}

impl<'a> Gguf<'a> {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.kv.get(key)
    }
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
    /// The bytes of a tensor of a supported type (bounds were checked by [`parse`]).
    pub fn tensor_bytes(&self, t: &TensorInfo) -> Option<&'a [u8]> {
        let n = t.dims.iter().product::<u64>();
        let size = type_bytes(t.ggml_type, n)?;
        Some(&self.data[t.offset as usize..(t.offset + size) as usize])
    }
}

/// The encoding of a tensor of a supported GGML type, or a refusal naming the type.
fn encoding(t: &TensorInfo) -> Result<Encoding, String> {
    Ok(match t.ggml_type {
        GGML_F32 => Encoding::F32,
        GGML_F16 => Encoding::F16,
        GGML_BF16 => Encoding::Bf16,
        GGML_Q8_0 => Encoding::GgmlQ8_0,
        GGML_Q4_0 => Encoding::GgmlQ4_0,
        other => {
            return Err(format!(
                "tensor {} is {}: labctl imports F32, F16, BF16, Q8_0 and Q4_0 tensors",
                t.name,
                type_name(other)
            ))
        }
    })
}

impl<'a> Gguf<'a> {
    fn need_u(&self, key: &str) -> Result<usize, String> {
        match self.get(key) {
            Some(v) => v
                .as_u64()
                .and_then(|x| usize::try_from(x).ok())
                .ok_or_else(|| format!("metadata {key} is {v:?}, not a count")),
            None => Err(format!("metadata {key} is missing")),
        }
    }
    fn opt_u(&self, key: &str) -> Result<Option<usize>, String> {
        self.get(key).map(|_| self.need_u(key)).transpose()
    }
    fn opt_f(&self, key: &str) -> Result<Option<f64>, String> {
        self.get(key)
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| format!("metadata {key} is {v:?}, not a number"))
            })
            .transpose()
    }

    fn tensor_of(&self, name: &str) -> Result<Tensor<'a>, String> {
        let t = self
            .tensor(name)
            .ok_or_else(|| format!("tensor {name} is missing"))?;
        let enc = encoding(t)?;
        let (cols, rows) = match t.dims.as_slice() {
            [c] => (*c, 1),
            [c, r] => (*c, *r),
            d => {
                return Err(format!(
                    "tensor {name} has {} dimensions (1 or 2 expected)",
                    d.len()
                ))
            }
        };
        let data = self
            .tensor_bytes(t)
            .ok_or_else(|| format!("tensor {name}: rows of {cols} are not whole blocks"))?;
        Tensor::new(name, enc, rows as usize, cols as usize, data)
    }

    /// The model as a [`Source`]: a llama-architecture GGUF with its hyperparameters checked
    /// against its tensors, and its SentencePiece vocabulary when it has one.
    pub fn to_source(&self) -> Result<Source<'a>, String> {
        let arch = self
            .get("general.architecture")
            .and_then(Value::as_str)
            .ok_or("metadata general.architecture is missing")?;
        if arch != "llama" {
            return Err(format!(
                "architecture {arch:?}: labctl's firmware runs the llama architecture only"
            ));
        }
        let k = |s: &str| format!("llama.{s}");
        if self.opt_u(&k("expert_count"))?.unwrap_or(0) > 0 {
            return Err(
                "a mixture-of-experts model (llama.expert_count > 0) is not supported".into(),
            );
        }
        if let Some(t) = self.get(&k("rope.scaling.type")).and_then(Value::as_str) {
            let factor = self.opt_f(&k("rope.scaling.factor"))?.unwrap_or(1.0);
            if t != "none" && !(t == "linear" && factor == 1.0) {
                return Err(format!(
                    "RoPE scaling {t:?} (factor {factor}) is not supported"
                ));
            }
        }
        let dim = self.need_u(&k("embedding_length"))?;
        let heads = self.need_u(&k("attention.head_count"))?;
        if heads == 0 || !dim.is_multiple_of(heads) {
            return Err(format!(
                "{heads} attention heads do not divide the embedding length {dim}"
            ));
        }
        let n_layers = self.need_u(&k("block_count"))?;
        if n_layers == 0 || n_layers > 1024 {
            return Err(format!("llama.block_count {n_layers} (1..1024 expected)"));
        }
        let hyper = Hyper {
            dim,
            hidden_dim: self.need_u(&k("feed_forward_length"))?,
            n_layers,
            n_heads: heads,
            n_kv_heads: self.opt_u(&k("attention.head_count_kv"))?.unwrap_or(heads),
            vocab_size: 0,
            seq_len: self.need_u(&k("context_length"))?,
            norm_eps: self
                .opt_f(&k("attention.layer_norm_rms_epsilon"))?
                .ok_or("metadata llama.attention.layer_norm_rms_epsilon is missing")?
                as f32,
            rope_dim: self
                .opt_u(&k("rope.dimension_count"))?
                .unwrap_or(dim / heads),
            rope_base: self.opt_f(&k("rope.freq_base"))?.unwrap_or(10000.0),
        };
        let embedding = self.tensor_of("token_embd.weight")?;
        let hyper = Hyper {
            vocab_size: embedding.rows,
            ..hyper
        };
        if let Some(v) = self.opt_u(&k("vocab_size"))? {
            if v != hyper.vocab_size {
                return Err(format!(
                    "llama.vocab_size {v} but token_embd.weight has {} rows",
                    hyper.vocab_size
                ));
            }
        }
        let hd = dim / heads;
        if hyper.rope_dim > hd || !hyper.rope_dim.is_multiple_of(2) {
            return Err(format!(
                "llama.rope.dimension_count {} for heads of {hd}",
                hyper.rope_dim
            ));
        }
        let mut known: Vec<String> = vec![
            "token_embd.weight".into(),
            "output_norm.weight".into(),
            "output.weight".into(),
        ];
        let mut layers = Vec::with_capacity(n_layers);
        for l in 0..n_layers {
            let t = |s: &str| format!("blk.{l}.{s}.weight");
            for s in [
                "attn_norm",
                "attn_q",
                "attn_k",
                "attn_v",
                "attn_output",
                "ffn_norm",
                "ffn_gate",
                "ffn_down",
                "ffn_up",
            ] {
                known.push(t(s));
            }
            layers.push(Layer {
                att_norm: self.tensor_of(&t("attn_norm"))?,
                wq: self.tensor_of(&t("attn_q"))?,
                wk: self.tensor_of(&t("attn_k"))?,
                wv: self.tensor_of(&t("attn_v"))?,
                wo: self.tensor_of(&t("attn_output"))?,
                ffn_norm: self.tensor_of(&t("ffn_norm"))?,
                w1: self.tensor_of(&t("ffn_gate"))?,
                w2: self.tensor_of(&t("ffn_down"))?,
                w3: self.tensor_of(&t("ffn_up"))?,
            });
        }
        if let Some(extra) = self.tensors.iter().find(|t| !known.contains(&t.name)) {
            return Err(format!(
                "tensor {} is not part of the llama architecture the firmware runs (biases, RoPE factors and adapters are not supported)",
                extra.name
            ));
        }
        let output = match self.tensor("output.weight") {
            Some(_) => Some(self.tensor_of("output.weight")?),
            None => None,
        };
        let src = Source {
            format: "gguf",
            hyper,
            embedding,
            layers,
            norm: self.tensor_of("output_norm.weight")?,
            output,
            vocab: self.vocab()?,
            name: self
                .get("general.name")
                .and_then(|v| v.as_str().map(String::from)),
        };
        src.check_shapes()?;
        Ok(src)
    }

    /// The SentencePiece vocabulary (`tokenizer.ggml.model = "llama"`); `None` for other
    /// tokenizers or none.
    pub fn vocab(&self) -> Result<Option<Vocab>, String> {
        match self.get("tokenizer.ggml.model").and_then(Value::as_str) {
            Some("llama") => {}
            _ => return Ok(None),
        }
        let arr = |key: &str| self.get(key).and_then(Value::as_array);
        let tokens: Vec<String> = arr("tokenizer.ggml.tokens")
            .ok_or("metadata tokenizer.ggml.tokens is missing")?
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or("tokenizer.ggml.tokens holds a value that is not a string")?;
        let n = tokens.len();
        let scores: Vec<f32> = match arr("tokenizer.ggml.scores") {
            Some(a) => a
                .iter()
                .map(|v| v.as_f64().map(|x| x as f32))
                .collect::<Option<_>>()
                .ok_or("tokenizer.ggml.scores holds a value that is not a number")?,
            None => vec![0.0; n],
        };
        let types: Vec<i32> = match arr("tokenizer.ggml.token_type") {
            Some(a) => a
                .iter()
                .map(|v| v.as_i64().and_then(|x| i32::try_from(x).ok()))
                .collect::<Option<_>>()
                .ok_or("tokenizer.ggml.token_type holds a value that is not an integer")?,
            None => vec![super::tokenizer::TYPE_NORMAL; n],
        };
        let id = |key: &str, default: Option<u32>| -> Result<Option<u32>, String> {
            match self.get(key) {
                None => Ok(default),
                Some(v) => v
                    .as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .map(Some)
                    .ok_or_else(|| format!("metadata {key} is {v:?}, not a token id")),
            }
        };
        let flag =
            |key: &str, default: bool| self.get(key).and_then(Value::as_bool).unwrap_or(default);
        Ok(Some(Vocab {
            source: "gguf".into(),
            tokens,
            scores,
            types,
            bos: id("tokenizer.ggml.bos_token_id", Some(1))?.unwrap_or(1),
            eos: id("tokenizer.ggml.eos_token_id", Some(2))?.unwrap_or(2),
            unk: id("tokenizer.ggml.unknown_token_id", None)?,
            add_bos: flag("tokenizer.ggml.add_bos_token", true),
            add_space_prefix: flag("tokenizer.ggml.add_space_prefix", true),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&n_tensors.to_le_bytes());
        b.extend_from_slice(&n_kv.to_le_bytes());
        b
    }
    fn string(b: &mut Vec<u8>, s: &str) {
        b.extend_from_slice(&(s.len() as u64).to_le_bytes());
        b.extend_from_slice(s.as_bytes());
    }

    #[test]
    fn reads_metadata_and_a_tensor() {
        let mut b = header(1, 2);
        string(&mut b, "general.architecture");
        b.extend_from_slice(&8u32.to_le_bytes());
        string(&mut b, "llama");
        string(&mut b, "tokenizer.ggml.scores");
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&6u32.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes());
        b.extend_from_slice(&1.5f32.to_le_bytes());
        b.extend_from_slice(&(-2.0f32).to_le_bytes());
        string(&mut b, "w");
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&4u64.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes());
        b.extend_from_slice(&GGML_F32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        while !b.len().is_multiple_of(32) {
            b.push(0);
        }
        b.extend(std::iter::repeat_n(0u8, 32));
        let g = parse(&b).unwrap();
        assert_eq!(
            g.get("general.architecture").unwrap().as_str(),
            Some("llama")
        );
        let s = g.get("tokenizer.ggml.scores").unwrap().as_array().unwrap();
        assert_eq!(s[1].as_f64(), Some(-2.0));
        let t = g.tensor("w").unwrap();
        assert_eq!(g.tensor_bytes(t).unwrap().len(), 32);
        // One byte short: the tensor runs past the end.
        let e = parse(&b[..b.len() - 1]).unwrap_err();
        assert!(e.to_string().contains("runs past the end"), "{e}");
    }

    #[test]
    fn hostile_counts_are_refused_without_allocating() {
        let b = header(u64::MAX, 0);
        assert!(parse(&b).unwrap_err().to_string().contains("tensor count"));
        let mut b = header(0, 1);
        string(&mut b, "k");
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&(1u64 << 60).to_le_bytes());
        let e = parse(&b).unwrap_err().to_string();
        assert!(e.contains("more than the"), "{e}");
        let mut b = header(0, 1);
        b.extend_from_slice(&(1u64 << 40).to_le_bytes());
        b.extend_from_slice(&[0; 16]);
        let e = parse(&b).unwrap_err().to_string();
        assert!(e.contains("at most"), "{e}");
        assert_eq!(parse(b"GGUX").unwrap_err(), GgufError::BadMagic);
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&1u32.to_le_bytes());
        assert_eq!(parse(&b).unwrap_err(), GgufError::Version(1));
        // Every prefix of a valid file is refused cleanly, never a panic.
        let mut ok = header(0, 1);
        string(&mut ok, "a");
        ok.extend_from_slice(&4u32.to_le_bytes());
        ok.extend_from_slice(&7u32.to_le_bytes());
        for n in 0..ok.len() {
            assert!(parse(&ok[..n]).is_err());
        }
    }
}
