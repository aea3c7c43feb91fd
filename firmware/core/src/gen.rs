//! Deterministic model generation (host side, `std` feature): the weights of a preset come from a
//! seeded PRNG as f32 master weights and are then quantized, so every quantization of one preset
//! and seed is the same model at a different precision.

extern crate std;
use std::vec::Vec;

use crate::model::{Config, HEADER_LEN};
use crate::quant::{blocks_per_row, quantize_block, GROUP};

/// SplitMix64: small, fast, and the same on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    /// Approximately normal (sum of four uniforms), unit variance.
    pub fn normal(&mut self) -> f32 {
        (self.uniform() + self.uniform() + self.uniform() + self.uniform()) * 0.866_025_4
    }
}

fn push_f32s(out: &mut Vec<u8>, v: impl IntoIterator<Item = f32>) {
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

/// Appends a `rows × cols` matrix of normal weights with standard deviation `std`, quantized row
/// by row in whole blocks.
fn push_matrix(out: &mut Vec<u8>, cfg: &Config, rng: &mut Rng, rows: usize, cols: usize, std: f32) {
    let bb = cfg.quant.block_bytes();
    let mut row = std::vec![0f32; blocks_per_row(cols) * GROUP];
    for _ in 0..rows {
        for (i, w) in row.iter_mut().enumerate() {
            *w = if i < cols { rng.normal() * std } else { 0.0 };
        }
        for blk in row.chunks(GROUP) {
            let start = out.len();
            out.resize(start + bb, 0);
            quantize_block(cfg.quant, blk, &mut out[start..]);
        }
    }
}

/// Bumped whenever the same preset and seed would give different weights (caches of generated
/// models are kept per generator version).
pub const GENERATOR_VERSION: u32 = 2;

/// Standard deviation of embeddings that double as the classifier.
pub const EMBED_STD_SHARED: f32 = 0.2;

/// The whole model file for `cfg`, deterministic in `seed`.
pub fn generate(cfg: &Config, seed: u32) -> Vec<u8> {
    let layout = cfg.layout();
    let mut out = Vec::with_capacity(layout.total);
    out.extend_from_slice(&cfg.header_with_seed(seed));
    debug_assert_eq!(out.len(), HEADER_LEN);
    // RoPE table, theta = 10000.
    let hd = cfg.head_dim();
    for pos in 0..cfg.seq_len as usize {
        for i in 0..hd / 2 {
            let freq = 1.0 / 10000f64.powf(2.0 * i as f64 / hd as f64);
            let a = pos as f64 * freq;
            push_f32s(&mut out, [a.cos() as f32, a.sin() as f32]);
        }
    }
    let (d, h, kv, v) = (
        cfg.dim as usize,
        cfg.hidden_dim as usize,
        cfg.kv_dim(),
        cfg.vocab_size as usize,
    );
    let mut rng = Rng::new(u64::from(seed));
    let sd = 1.0 / (d as f32).sqrt();
    let sh = 1.0 / (h as f32).sqrt();
    // A shared classifier scores the residual stream against the embedding itself: embeddings
    // as large as the layers' outputs make every model predict its input token again. Small
    // ones give the layers' outputs the say, and next-token distributions that are neither flat
    // nor one-hot, so quantization error shows in the agreement figures.
    let emb_std = if cfg.shared_classifier {
        EMBED_STD_SHARED
    } else {
        1.0
    };
    push_matrix(&mut out, cfg, &mut rng, v, d, emb_std);
    for _ in 0..cfg.n_layers {
        push_f32s(&mut out, (0..d).map(|_| 1.0));
        push_matrix(&mut out, cfg, &mut rng, d, d, sd);
        push_matrix(&mut out, cfg, &mut rng, kv, d, sd);
        push_matrix(&mut out, cfg, &mut rng, kv, d, sd);
        push_matrix(&mut out, cfg, &mut rng, d, d, sd);
        push_f32s(&mut out, (0..d).map(|_| 1.0));
        push_matrix(&mut out, cfg, &mut rng, h, d, sd);
        push_matrix(&mut out, cfg, &mut rng, d, h, sh);
        push_matrix(&mut out, cfg, &mut rng, h, d, sd);
    }
    push_f32s(&mut out, (0..d).map(|_| 1.0));
    if !cfg.shared_classifier {
        push_matrix(&mut out, cfg, &mut rng, v, d, sd * 4.0);
    }
    debug_assert_eq!(out.len(), layout.total);
    out
}

/// A named model shape for `labctl model gen` (its `quant` is replaced by the one asked for).
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static str,
    pub description: &'static str,
    pub shape: Config,
}

const fn shape(
    dim: u32,
    hidden_dim: u32,
    n_layers: u32,
    heads: (u32, u32),
    vocab_size: u32,
    seq_len: u32,
) -> Config {
    Config {
        dim,
        hidden_dim,
        n_layers,
        n_heads: heads.0,
        n_kv_heads: heads.1,
        vocab_size,
        seq_len,
        quant: crate::quant::Quant::F32,
        shared_classifier: true,
        norm_eps: 1e-5,
    }
}

/// From the stories260K shape (the published microcontroller reference point) up to a
/// stories15M-sized model (9.1 MiB at q4_0, for boards with PSRAM or external flash).
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "stories260k",
        description: "the llama2.c stories260K shape: dim 64, 5 layers, 8 heads, 4 KV heads, vocab 512, context 512",
        shape: shape(64, 172, 5, (8, 4), 512, 512),
    },
    Preset {
        name: "tiny1m",
        description: "about 1.2M parameters: dim 128, 6 layers, vocab 512",
        shape: shape(128, 344, 6, (8, 4), 512, 512),
    },
    Preset {
        name: "small4m",
        description: "about 4.6M parameters: dim 256, 6 layers, vocab 1024",
        shape: shape(256, 688, 6, (8, 4), 1024, 512),
    },
    Preset {
        name: "stories15m",
        description: "the llama2.c stories15M shape (dim 288, 6 layers, 6 heads, vocab 32000), context 256: 9.1 MiB at q4_0",
        shape: shape(288, 768, 6, (6, 6), 32000, 256),
    },
];

impl Preset {
    pub fn by_name(name: &str) -> Option<&'static Preset> {
        PRESETS.iter().find(|p| p.name == name)
    }

    pub fn config(&self, quant: crate::quant::Quant) -> Config {
        Config {
            quant,
            ..self.shape
        }
    }
}

/// How closely one model follows a reference under teacher forcing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    /// Positions compared (one next-token distribution each).
    pub positions: usize,
    /// Share of positions whose most likely next token equals the reference's.
    pub top1: f64,
    /// Mean KL(reference ‖ model) of the next-token distributions, in nats.
    pub mean_kl: f64,
}

fn softmax64(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::MIN, |m, &v| m.max(v)) as f64;
    let mut p: Vec<f64> = logits.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = p.iter().sum();
    p.iter_mut().for_each(|v| *v /= sum);
    p
}

/// Heap buffers for a [`State`](crate::infer::State) on the host (the firmware's arena is static).
pub struct Arena {
    f32s: Vec<f32>,
    i8s: Vec<i8>,
    i32s: Vec<i32>,
    ctx: usize,
}

impl Arena {
    pub fn new(cfg: &Config, ctx: usize) -> Arena {
        let s = crate::infer::sizes(cfg, ctx);
        Arena {
            f32s: std::vec![0f32; s.f32s],
            i8s: std::vec![0i8; s.i8s],
            i32s: std::vec![0i32; s.i32s],
            ctx,
        }
    }

    pub fn state(
        &mut self,
        cfg: &Config,
    ) -> Result<crate::infer::State<'_>, crate::infer::InferError> {
        crate::infer::State::new(cfg, self.ctx, &mut self.f32s, &mut self.i8s, &mut self.i32s)
    }
}

struct NoClock;
impl crate::infer::Clock for NoClock {
    fn cycles(&mut self) -> u64 {
        0
    }
}

/// Feeds `len` tokens through a fresh state: token `pos` is `next(pos, logits of pos - 1)`, and
/// `seen(logits)` observes the logits after each position.
fn drive(
    m: &crate::model::Model<'_>,
    len: usize,
    mut next: impl FnMut(usize, &[f32]) -> u32,
    mut seen: impl FnMut(u32, &[f32]),
) -> Result<(), crate::infer::InferError> {
    use crate::infer::{forward, OpCycles};
    let mut arena = Arena::new(&m.cfg, len.max(1));
    let mut st = arena.state(&m.cfg)?;
    let mut ops = OpCycles::default();
    for pos in 0..len {
        let t = next(pos, st.logits);
        forward(m, &mut st, t, pos, &mut NoClock, &mut ops)?;
        seen(t, st.logits);
    }
    Ok(())
}

/// Runs `seq` through a model and returns the next-token distribution after each position.
pub fn distributions(
    m: &crate::model::Model<'_>,
    seq: &[u32],
) -> Result<Vec<Vec<f64>>, crate::infer::InferError> {
    let mut out = Vec::with_capacity(seq.len());
    drive(
        m,
        seq.len(),
        |pos, _| seq[pos],
        |_, l| out.push(softmax64(l)),
    )?;
    Ok(out)
}

/// Greedy generation: the prompt followed by `gen` tokens the model picks.
pub fn greedy(
    m: &crate::model::Model<'_>,
    prompt: &[u32],
    gen: usize,
) -> Result<Vec<u32>, crate::infer::InferError> {
    let total = prompt.len() + gen;
    let mut seq = Vec::with_capacity(total);
    let mut last = Vec::new();
    let pick = |pos: usize, logits: &[f32]| match prompt.get(pos) {
        Some(&t) => t,
        None => crate::infer::argmax(logits),
    };
    drive(m, total.saturating_sub(1), pick, |t, l| {
        seq.push(t);
        last.clear();
        last.extend_from_slice(l);
    })?;
    // The final token needs no forward pass of its own.
    if total > 0 {
        seq.push(pick(total - 1, &last));
    }
    Ok(seq)
}

/// Time to run `prompt` and generate `gen` tokens greedily, with the per-operator accounting on
/// (`instrumented`) or compiled out, on a nanosecond host clock. For the instrumentation
/// overhead benchmark: both variants live in one program.
pub fn timed_generation(
    m: &crate::model::Model<'_>,
    prompt: &[u32],
    gen: usize,
    instrumented: bool,
) -> Result<(std::time::Duration, crate::infer::OpCycles), crate::infer::InferError> {
    use crate::infer::{argmax, forward_with, OpCycles};
    struct Host(std::time::Instant);
    impl crate::infer::Clock for Host {
        fn cycles(&mut self) -> u64 {
            self.0.elapsed().as_nanos() as u64
        }
    }
    let ctx = prompt.len() + gen;
    let mut arena = Arena::new(&m.cfg, ctx);
    let mut st = arena.state(&m.cfg)?;
    let mut ops = OpCycles::default();
    let mut clock = Host(std::time::Instant::now());
    let start = std::time::Instant::now();
    let mut tok = prompt[0];
    for pos in 0..ctx - 1 {
        if instrumented {
            forward_with::<_, true>(m, &mut st, tok, pos, &mut clock, &mut ops)?;
        } else {
            forward_with::<_, false>(m, &mut st, tok, pos, &mut clock, &mut ops)?;
        }
        tok = prompt
            .get(pos + 1)
            .copied()
            .unwrap_or_else(|| argmax(st.logits));
    }
    Ok((start.elapsed(), ops))
}

/// Compares next-token distributions of `model` with `reference` (both precomputed by
/// [`distributions`] over the same sequence).
pub fn agreement(reference: &[Vec<f64>], model: &[Vec<f64>]) -> Agreement {
    let argmax = |p: &[f64]| (0..p.len()).fold(0, |b, i| if p[i] > p[b] { i } else { b });
    let n = reference.len().min(model.len());
    let mut same = 0usize;
    let mut kl = 0.0;
    for (p, q) in reference.iter().zip(model) {
        if argmax(p) == argmax(q) {
            same += 1;
        }
        kl += p
            .iter()
            .zip(q)
            .filter(|(a, _)| **a > 0.0)
            .map(|(a, b)| a * (a / b.max(1e-300)).ln())
            .sum::<f64>();
    }
    Agreement {
        positions: n,
        top1: if n == 0 { 0.0 } else { same as f64 / n as f64 },
        mean_kl: if n == 0 { 0.0 } else { kl / n as f64 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::{argmax, forward, sizes, Clock, OpCycles, State};
    use crate::model::Model;
    use crate::quant::Quant;

    struct Count(u64);
    impl Clock for Count {
        fn cycles(&mut self) -> u64 {
            self.0 += 1;
            self.0
        }
    }

    pub fn tiny(quant: Quant) -> Config {
        Config {
            dim: 64,
            hidden_dim: 172,
            n_layers: 2,
            n_heads: 8,
            n_kv_heads: 4,
            vocab_size: 512,
            seq_len: 64,
            quant,
            shared_classifier: false,
            norm_eps: 1e-5,
        }
    }

    fn run(bytes: &[u8], prompt: &[u32], n: usize) -> std::vec::Vec<u32> {
        let m = Model::from_bytes(bytes).unwrap();
        let s = sizes(&m.cfg, 32);
        let (mut f, mut i, mut j) = (
            std::vec![0f32; s.f32s],
            std::vec![0i8; s.i8s],
            std::vec![0i32; s.i32s],
        );
        let mut st = State::new(&m.cfg, 32, &mut f, &mut i, &mut j).unwrap();
        let (mut clk, mut ops) = (Count(0), OpCycles::default());
        let mut out = std::vec![];
        let mut tok = prompt[0];
        for pos in 0..prompt.len() + n - 1 {
            forward(&m, &mut st, tok, pos, &mut clk, &mut ops).unwrap();
            tok = if pos + 1 < prompt.len() {
                prompt[pos + 1]
            } else {
                argmax(st.logits)
            };
            if pos + 1 >= prompt.len() {
                out.push(tok);
            }
        }
        assert!(ops.matmul > 0 && ops.attention > 0 && ops.norm > 0);
        out
    }

    #[test]
    fn generated_models_load_and_run_deterministically() {
        for q in Quant::ALL {
            let cfg = tiny(q);
            let bytes = generate(&cfg, 7);
            assert_eq!(bytes.len(), cfg.layout().total);
            let a = run(&bytes, &[1, 2, 3], 8);
            let b = run(&bytes, &[1, 2, 3], 8);
            assert_eq!(a, b, "{}", q.name());
        }
    }

    #[test]
    fn corrupt_headers_are_rejected() {
        let bytes = generate(&tiny(Quant::Q8_0), 1);
        assert!(Model::from_bytes(&bytes[..40]).is_err());
        assert!(Model::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut b = bytes.clone();
        b[9] ^= 1;
        assert!(Model::from_bytes(&b).is_err());
        b = bytes.clone();
        b[0] = b'X';
        assert!(Model::from_bytes(&b).is_err());
    }

    #[test]
    fn q8_agrees_with_f32_under_teacher_forcing() {
        let seq: std::vec::Vec<u32> = (0..48).map(|i| (i * 37 + 11) % 512).collect();
        let top1 = |bytes: &[u8]| -> std::vec::Vec<u32> {
            let m = Model::from_bytes(bytes).unwrap();
            let s = sizes(&m.cfg, 64);
            let (mut f, mut i, mut j) = (
                std::vec![0f32; s.f32s],
                std::vec![0i8; s.i8s],
                std::vec![0i32; s.i32s],
            );
            let mut st = State::new(&m.cfg, 64, &mut f, &mut i, &mut j).unwrap();
            let (mut clk, mut ops) = (Count(0), OpCycles::default());
            seq.iter()
                .enumerate()
                .map(|(pos, &t)| {
                    forward(&m, &mut st, t, pos, &mut clk, &mut ops).unwrap();
                    argmax(st.logits)
                })
                .collect()
        };
        let reference = top1(&generate(&tiny(Quant::F32), 3));
        for q in [Quant::Q8_0, Quant::Q4_0, Quant::Q3, Quant::Q2] {
            let got = top1(&generate(&tiny(q), 3));
            let agree = got.iter().zip(&reference).filter(|(a, b)| a == b).count() as f64
                / seq.len() as f64;
            std::println!(
                "{}: top-1 agreement with f32 {:.1}%",
                q.name(),
                agree * 100.0
            );
            if q == Quant::Q8_0 {
                assert!(agree >= 0.95, "q8_0 agreement {agree}");
            }
        }
    }
}
