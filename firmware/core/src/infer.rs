//! The forward pass of a llama-style transformer (RMSNorm, RoPE attention with grouped KV heads,
//! SwiGLU feed-forward, classifier) over a [`Model`] mapped in place, with caller-provided
//! buffers (no allocation) and optional per-operator cycle accounting.

use crate::math::{exp, sqrt};
use crate::model::{f32_le, Config, Model};
use crate::quant::{blocks_per_row, dequantize_block, matvec, quantize_act, QAct, Quant, GROUP};

/// Buffer sizes (in elements) a [`State`] needs for a context of `ctx` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub f32s: usize,
    pub i8s: usize,
    pub i32s: usize,
}

impl Sizes {
    /// Bytes of RAM the buffers take.
    pub const fn bytes(&self) -> usize {
        self.f32s * 4 + self.i8s + self.i32s * 4
    }
}

pub fn sizes(cfg: &Config, ctx: usize) -> Sizes {
    let (d, h, kv) = (cfg.dim as usize, cfg.hidden_dim as usize, cfg.kv_dim());
    let (nh, v, l) = (
        cfg.n_heads as usize,
        cfg.vocab_size as usize,
        cfg.n_layers as usize,
    );
    let widest = blocks_per_row(d.max(h)) * GROUP;
    Sizes {
        // x, xb, xb2, q, hb, hb2, att, logits, K and V caches, activation scales
        f32s: 4 * d + 2 * h + nh * ctx + v + 2 * l * ctx * kv + widest / GROUP,
        i8s: widest,
        i32s: widest / GROUP,
    }
}

/// Cycle counts per operator class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCycles {
    pub matmul: u64,
    pub attention: u64,
    pub norm: u64,
    pub other: u64,
}

/// A cycle counter provided by the port (DWT/SysTick, mcycle, or the host clock).
pub trait Clock {
    fn cycles(&mut self) -> u64;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InferError {
    /// The buffers given to [`State::new`] are smaller than [`sizes`] asks.
    BuffersTooSmall,
    /// Position beyond the context the state was sized for, or beyond the model's `seq_len`.
    ContextFull,
    /// Token id outside the vocabulary.
    BadToken(u32),
}

/// Activations and KV cache for one sequence.
pub struct State<'a> {
    ctx: usize,
    x: &'a mut [f32],
    xb: &'a mut [f32],
    xb2: &'a mut [f32],
    q: &'a mut [f32],
    hb: &'a mut [f32],
    hb2: &'a mut [f32],
    att: &'a mut [f32],
    pub logits: &'a mut [f32],
    kc: &'a mut [f32],
    vc: &'a mut [f32],
    aq: &'a mut [i8],
    ascale: &'a mut [f32],
    asum: &'a mut [i32],
}

fn take<'a, T>(buf: &mut &'a mut [T], n: usize) -> &'a mut [T] {
    let (head, tail) = core::mem::take(buf).split_at_mut(n);
    *buf = tail;
    head
}

impl<'a> State<'a> {
    pub fn new(
        cfg: &Config,
        ctx: usize,
        f: &'a mut [f32],
        i: &'a mut [i8],
        s: &'a mut [i32],
    ) -> Result<State<'a>, InferError> {
        let need = sizes(cfg, ctx);
        if f.len() < need.f32s || i.len() < need.i8s || s.len() < need.i32s || ctx == 0 {
            return Err(InferError::BuffersTooSmall);
        }
        let (d, h, kv) = (cfg.dim as usize, cfg.hidden_dim as usize, cfg.kv_dim());
        let (nh, v, l) = (
            cfg.n_heads as usize,
            cfg.vocab_size as usize,
            cfg.n_layers as usize,
        );
        let mut f = f;
        Ok(State {
            ctx: ctx.min(cfg.seq_len as usize),
            x: take(&mut f, d),
            xb: take(&mut f, d),
            xb2: take(&mut f, d),
            q: take(&mut f, d),
            hb: take(&mut f, h),
            hb2: take(&mut f, h),
            att: take(&mut f, nh * ctx),
            logits: take(&mut f, v),
            kc: take(&mut f, l * ctx * kv),
            vc: take(&mut f, l * ctx * kv),
            ascale: take(&mut f, need.i32s),
            aq: i,
            asum: s,
        })
    }

    /// A state carved out of one byte arena (a bare-metal port's static buffer), for the longest
    /// context up to the model's that fits in it. The arena must be 4-byte aligned.
    pub fn in_arena(cfg: &Config, arena: &'a mut [u8]) -> Result<State<'a>, InferError> {
        if !(arena.as_ptr() as usize).is_multiple_of(4) {
            return Err(InferError::BuffersTooSmall);
        }
        let mut ctx = cfg.seq_len as usize;
        while ctx > 1 && sizes(cfg, ctx).bytes() > arena.len() {
            ctx -= 1;
        }
        let need = sizes(cfg, ctx);
        if need.bytes() > arena.len() {
            return Err(InferError::BuffersTooSmall);
        }
        let (f, rest) = arena.split_at_mut(need.f32s * 4);
        let (s, rest) = rest.split_at_mut(need.i32s * 4);
        let i = &mut rest[..need.i8s];
        // SAFETY: the arena is 4-aligned and the f32 part's length is a multiple of 4, so both
        // word parts are aligned and exactly sized; f32, i32 and i8 accept any bit pattern; the
        // three parts do not overlap and borrow the arena for 'a.
        let (f, s, i) = unsafe {
            (
                core::slice::from_raw_parts_mut(f.as_mut_ptr().cast::<f32>(), need.f32s),
                core::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<i32>(), need.i32s),
                core::slice::from_raw_parts_mut(i.as_mut_ptr().cast::<i8>(), need.i8s),
            )
        };
        State::new(cfg, ctx, f, i, s)
    }

    pub fn ctx(&self) -> usize {
        self.ctx
    }
}

/// Whether [`forward`] accounts cycles per operator (the `no-instrument` feature turns it off).
pub const INSTRUMENTED: bool = !cfg!(feature = "no-instrument");

struct Meter<'c, C: Clock, const ON: bool> {
    clock: &'c mut C,
    ops: &'c mut OpCycles,
    last: u64,
}

impl<C: Clock, const ON: bool> Meter<'_, C, ON> {
    /// Charges the cycles since the last mark to `slot`; compiled out when `ON` is false.
    #[inline]
    fn mark(&mut self, slot: fn(&mut OpCycles) -> &mut u64) {
        if !ON {
            return;
        }
        let now = self.clock.cycles();
        *slot(self.ops) += now.wrapping_sub(self.last);
        self.last = now;
    }
}

/// `out[r] = W[r,:] · x` for a quantized (or f32) matrix starting at `w`.
fn matmul(out: &mut [f32], w: &[u8], q: Quant, cols: usize, x: &[f32], st: &mut QAct<'_>) {
    if q != Quant::F32 {
        quantize_act(x, st);
    }
    matvec(q, w, blocks_per_row(cols), st, x, out);
}

fn rmsnorm(out: &mut [f32], x: &[f32], w: &[u8], eps: f32) {
    let ss = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32 + eps;
    let k = 1.0 / sqrt(ss);
    for (i, o) in out.iter_mut().enumerate() {
        *o = f32_le(w, 4 * i) * (k * x[i]);
    }
}

fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::MIN, |m, &v| crate::math::max(m, v));
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = exp(*v - max);
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// Runs one token at position `pos`; the next-token logits are left in `st.logits`. Per-operator
/// cycles are added to `ops` unless the firmware is built with `no-instrument`.
pub fn forward<C: Clock>(
    m: &Model<'_>,
    st: &mut State<'_>,
    token: u32,
    pos: usize,
    clock: &mut C,
    ops: &mut OpCycles,
) -> Result<(), InferError> {
    forward_with::<C, INSTRUMENTED>(m, st, token, pos, clock, ops)
}

/// [`forward`] with the instrumentation chosen at compile time by `ON`, so that one program can
/// measure the instrumentation's overhead (the benchmark runs both).
pub fn forward_with<C: Clock, const ON: bool>(
    m: &Model<'_>,
    st: &mut State<'_>,
    token: u32,
    pos: usize,
    clock: &mut C,
    ops: &mut OpCycles,
) -> Result<(), InferError> {
    let cfg = m.cfg;
    if token >= cfg.vocab_size {
        return Err(InferError::BadToken(token));
    }
    if pos >= st.ctx {
        return Err(InferError::ContextFull);
    }
    let (d, h, kv, hd) = (
        cfg.dim as usize,
        cfg.hidden_dim as usize,
        cfg.kv_dim(),
        cfg.head_dim(),
    );
    let (nh, q) = (cfg.n_heads as usize, cfg.quant);
    let group = nh / cfg.n_kv_heads as usize;
    let ctx = st.ctx;
    let last = if ON { clock.cycles() } else { 0 };
    let mut mt = Meter::<C, ON> { clock, ops, last };

    // Token embedding: dequantize one row.
    let nb = blocks_per_row(d);
    let row = m.layout.embedding + token as usize * nb * q.block_bytes();
    let mut blk = [0f32; GROUP];
    for k in 0..nb {
        let off = row + k * q.block_bytes();
        dequantize_block(q, &m.bytes[off..off + q.block_bytes()], &mut blk);
        let n = GROUP.min(d - k * GROUP);
        st.x[k * GROUP..k * GROUP + n].copy_from_slice(&blk[..n]);
    }
    mt.mark(|o| &mut o.other);

    for l in 0..cfg.n_layers as usize {
        let lw = m.layer(l);
        let ll = m.ll;
        let mut qa = QAct {
            q: &mut *st.aq,
            scale: &mut *st.ascale,
            sum: &mut *st.asum,
        };
        rmsnorm(st.xb, st.x, &lw[ll.rms_att..], cfg.norm_eps);
        mt.mark(|o| &mut o.norm);

        let base = l * ctx * kv + pos * kv;
        matmul(st.q, &lw[ll.wq..], q, d, st.xb, &mut qa);
        matmul(
            &mut st.kc[base..base + kv],
            &lw[ll.wk..],
            q,
            d,
            st.xb,
            &mut qa,
        );
        matmul(
            &mut st.vc[base..base + kv],
            &lw[ll.wv..],
            q,
            d,
            st.xb,
            &mut qa,
        );
        mt.mark(|o| &mut o.matmul);

        // RoPE on every query head and the new key.
        for i in 0..hd / 2 {
            let (c, s) = m.rope(pos, i);
            for head in 0..nh {
                let j = head * hd + 2 * i;
                let (a, b) = (st.q[j], st.q[j + 1]);
                st.q[j] = a * c - b * s;
                st.q[j + 1] = a * s + b * c;
            }
            for head in 0..cfg.n_kv_heads as usize {
                let j = base + head * hd + 2 * i;
                let (a, b) = (st.kc[j], st.kc[j + 1]);
                st.kc[j] = a * c - b * s;
                st.kc[j + 1] = a * s + b * c;
            }
        }

        // Attention over positions 0..=pos.
        let scale = 1.0 / sqrt(hd as f32);
        for head in 0..nh {
            let qh = &st.q[head * hd..(head + 1) * hd];
            let kvh = head / group;
            let att = &mut st.att[head * ctx..head * ctx + pos + 1];
            for (t, a) in att.iter_mut().enumerate() {
                let k = &st.kc[l * ctx * kv + t * kv + kvh * hd..][..hd];
                *a = qh.iter().zip(k).map(|(x, y)| x * y).sum::<f32>() * scale;
            }
            softmax(att);
            let out = &mut st.xb2[head * hd..(head + 1) * hd];
            out.fill(0.0);
            for (t, a) in att.iter().enumerate() {
                let v = &st.vc[l * ctx * kv + t * kv + kvh * hd..][..hd];
                for (o, vv) in out.iter_mut().zip(v) {
                    *o += a * vv;
                }
            }
        }
        mt.mark(|o| &mut o.attention);

        matmul(st.xb, &lw[ll.wo..], q, d, st.xb2, &mut qa);
        mt.mark(|o| &mut o.matmul);
        for (x, y) in st.x.iter_mut().zip(st.xb.iter()) {
            *x += y;
        }
        rmsnorm(st.xb, st.x, &lw[ll.rms_ffn..], cfg.norm_eps);
        mt.mark(|o| &mut o.norm);

        matmul(st.hb, &lw[ll.w1..], q, d, st.xb, &mut qa);
        matmul(st.hb2, &lw[ll.w3..], q, d, st.xb, &mut qa);
        mt.mark(|o| &mut o.matmul);
        for (a, b) in st.hb.iter_mut().zip(st.hb2.iter()) {
            *a = *a / (1.0 + exp(-*a)) * b;
        }
        mt.mark(|o| &mut o.other);
        matmul(st.xb, &lw[ll.w2..], q, h, st.hb, &mut qa);
        mt.mark(|o| &mut o.matmul);
        for (x, y) in st.x.iter_mut().zip(st.xb.iter()) {
            *x += y;
        }
    }

    let mut qa = QAct {
        q: &mut *st.aq,
        scale: &mut *st.ascale,
        sum: &mut *st.asum,
    };
    rmsnorm(st.xb, st.x, &m.bytes[m.layout.rms_final..], cfg.norm_eps);
    mt.mark(|o| &mut o.norm);
    matmul(st.logits, m.classifier(), q, d, st.xb, &mut qa);
    mt.mark(|o| &mut o.matmul);
    Ok(())
}

/// The most likely next token (lowest id on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}
