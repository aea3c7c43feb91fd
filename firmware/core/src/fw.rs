//! The firmware's main loop, shared by every port: announce itself, answer the host's frames,
//! run prompts through the model and report every token, the operator breakdown and memory.
//!
//! Host → board: `HELLO`, `INFO`, `PROMPT gen=G n=N [eos=E]` followed by `IDS` frames carrying the N
//! prompt token ids (comma-separated, at most 64 per frame).
//! Board → host: `READY`, `MODEL`, `TOK` per token, `TEMP` (where the board has a sensor), `OPS`,
//! `MEM`, `DONE`, `ERR`.
//! `docs/protocol.md` has the fields and examples.

use crate::infer::{argmax, forward, Clock, InferError, OpCycles, State};
use crate::model::Model;
use crate::proto::{self, Event, FrameWriter, LineReader, MAX_LINE, PROTOCOL_VERSION};

/// Firmware version reported in `READY`.
pub const FIRMWARE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Most prompt ids in one `IDS` frame.
pub const IDS_PER_FRAME: usize = 64;
/// Longest prompt the loop buffers.
pub const MAX_PROMPT: usize = 1024;

/// What a port provides: bytes in and out, a cycle counter, and memory facts.
pub trait Port: Clock {
    /// Next byte from the host, or `None` when the link is closed (the loop then returns).
    fn read_byte(&mut self) -> Option<u8>;
    fn write(&mut self, bytes: &[u8]);
    /// Microseconds since boot on the board's own clock.
    fn micros(&mut self) -> u64;
    /// Static RAM, heap high-water and stack high-water marks in bytes.
    fn memory(&mut self) -> (u64, u64, u64);
    /// Bytes the firmware image itself takes in flash (code, read-only data and the initial
    /// values of .data); 0 where that means nothing (a hosted port).
    fn code_bytes(&self) -> u64 {
        0
    }
    fn platform(&self) -> &str;
    fn clock_hz(&self) -> u64;
    fn ram_bytes(&self) -> u64;
    fn flash_bytes(&self) -> u64;
    /// The die (or board) temperature in °C where the port can read one; `None` otherwise. Sent
    /// as a `TEMP` frame when a prompt starts and when it ends, so sustained runs show drift.
    fn temperature_c(&mut self) -> Option<f32> {
        None
    }
    /// The firmware starts (`true`) or ends (`false`) a compute phase: a prompt's prefill and
    /// decode. A port may raise a GPIO here (as MLPerf Tiny's EnergyRunner uses a timestamp pin)
    /// or tell an emulator's power model; the default does nothing.
    fn phase(&mut self, _computing: bool) {}
}

fn send<P: Port>(port: &mut P, kind: &str, fields: &[(&str, &dyn core::fmt::Display)]) {
    let mut buf = [0u8; MAX_LINE];
    let mut w = FrameWriter::new(&mut buf, kind);
    for (k, v) in fields {
        w.field(k, v);
    }
    if let Some(line) = w.finish() {
        port.write(line);
    }
}

fn ready<P: Port>(port: &mut P) {
    let (platform, hz, ram, flash) = (
        port.platform(),
        port.clock_hz(),
        port.ram_bytes(),
        port.flash_bytes(),
    );
    let mut buf = [0u8; MAX_LINE];
    let mut w = FrameWriter::new(&mut buf, "READY");
    w.field("fw", FIRMWARE_VERSION)
        .field("proto", PROTOCOL_VERSION)
        .field("platform", platform)
        .field("clock_hz", hz)
        .field("ram", ram)
        .field("flash", flash)
        .field("kernels", crate::quant::KERNELS);
    if let Some(line) = w.finish() {
        port.write(line);
    }
}

fn model_info<P: Port>(port: &mut P, m: &Model<'_>) {
    let c = m.cfg;
    send(
        port,
        "MODEL",
        &[
            ("dim", &c.dim),
            ("hidden", &c.hidden_dim),
            ("layers", &c.n_layers),
            ("heads", &c.n_heads),
            ("kv_heads", &c.n_kv_heads),
            ("vocab", &c.vocab_size),
            ("seq", &c.seq_len),
            ("quant", &c.quant.name()),
            ("bytes", &m.bytes.len()),
            // The host compares this with its own file: a board flashed by hand may hold
            // another model than the one the run names.
            ("crc32", &Hex32(crate::crc::crc32(m.bytes))),
        ],
    );
}

/// Eight lower-case hex digits, the way `crc32` tools print a checksum.
struct Hex32(u32);

impl core::fmt::Display for Hex32 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

fn err<P: Port>(port: &mut P, what: &str) {
    send(port, "ERR", &[("what", &what)]);
}

/// The main program of a bare-metal port: the model from its flash partition, the state in the
/// port's static arena, then [`run`]. Anything missing is reported as an `ERR` frame and the
/// board halts there (a host sees the reason on the serial line).
pub fn boot<P: Port>(port: &mut P, partition: &[u8], arena: &mut [u8]) -> ! {
    let model = match Model::in_partition(partition) {
        Ok(m) => m,
        Err(crate::model::ModelError::TooShort) => halt(port, "no_model_in_flash"),
        Err(_) => halt(port, "bad_model_in_flash"),
    };
    let arena_len = arena.len();
    let mut state = match State::in_arena(&model.cfg, arena) {
        Ok(s) => s,
        Err(_) => halt(port, "arena_too_small"),
    };
    // The arena is sized for the largest model a port takes; RAM in use is what this model's
    // buffers take of it, not the whole static array.
    let idle = (arena_len - crate::infer::sizes(&model.cfg, state.ctx()).bytes()) as u64;
    run_reporting(port, &model, &mut state, idle);
    halt(port, "serial_closed")
}

/// Reports `what` in an `ERR` frame and stops.
pub fn halt<P: Port>(port: &mut P, what: &str) -> ! {
    err(port, what);
    loop {
        core::hint::spin_loop();
    }
}

/// Runs the firmware until the host link closes. `state` is sized by the port for the longest
/// context it can hold.
pub fn run<P: Port>(port: &mut P, model: &Model<'_>, state: &mut State<'_>) {
    run_reporting(port, model, state, 0)
}

/// [`run`], with `idle` bytes of the port's static RAM (an arena's unused tail) left out of the
/// static RAM the `MEM` frame reports.
fn run_reporting<P: Port>(port: &mut P, model: &Model<'_>, state: &mut State<'_>, idle: u64) {
    let mut reader: LineReader<MAX_LINE> = LineReader::new();
    let mut prompt = [0u32; MAX_PROMPT];
    let mut expected = 0usize;
    let mut got = 0usize;
    let mut gen = 0usize;
    let mut eos: Option<u32> = None;
    ready(port);
    while let Some(b) = port.read_byte() {
        if reader.push(b) != Event::Line {
            continue;
        }
        let frame = match proto::parse(reader.line()) {
            Ok(f) => f,
            Err(e) => {
                let mut msg = [0u8; 64];
                let n = fmt_into(&mut msg, format_args!("{e}"));
                err(port, core::str::from_utf8(&msg[..n]).unwrap_or("bad frame"));
                continue;
            }
        };
        match frame.kind {
            "HELLO" => ready(port),
            "INFO" => model_info(port, model),
            "PROMPT" => match (frame.u32("n"), frame.u32("gen")) {
                (Ok(n), Ok(g)) if n >= 1 && (n as usize) <= MAX_PROMPT => {
                    expected = n as usize;
                    gen = g as usize;
                    got = 0;
                    // Optional: stop decoding after this token (end of sequence).
                    eos = frame.u32("eos").ok();
                }
                _ => err(port, "PROMPT needs n=1..1024 and gen"),
            },
            "IDS" => {
                let Some(ids) = frame.get("ids") else {
                    err(port, "IDS needs ids");
                    continue;
                };
                let mut bad = false;
                for id in ids.split(',').filter(|s| !s.is_empty()) {
                    match id.parse::<u32>() {
                        Ok(v) if got < expected => {
                            prompt[got] = v;
                            got += 1;
                        }
                        _ => bad = true,
                    }
                }
                if bad {
                    err(port, "IDS has a bad id or more ids than PROMPT announced");
                    expected = 0;
                    got = 0;
                } else if expected > 0 && got == expected {
                    port.phase(true);
                    generate(port, model, state, &prompt[..got], gen, eos, idle);
                    port.phase(false);
                    expected = 0;
                    got = 0;
                }
            }
            _ => err(port, "unknown frame kind"),
        }
    }
}

/// Prefill the prompt then decode `gen` tokens, reporting each: a `p` token when the model has
/// processed that prompt token, a `d` token when it has produced that token. `cyc` is the cycles
/// of computation since the previous report was sent. With `eos`, decoding stops after the
/// token that equals it (reported like any other).
fn generate<P: Port>(
    port: &mut P,
    m: &Model<'_>,
    st: &mut State<'_>,
    prompt: &[u32],
    gen: usize,
    eos: Option<u32>,
    idle: u64,
) {
    let n = prompt.len();
    if n + gen > st.ctx() + 1 {
        err(port, "prompt + gen exceeds the context this board holds");
        return;
    }
    temperature(port);
    let mut ops = OpCycles::default();
    let mut prev = port.cycles();
    let report = |port: &mut P, prev: &mut u64, i: usize, phase: &str, id: u32| {
        let now = port.cycles();
        let us = port.micros();
        let cyc = now.wrapping_sub(*prev);
        send(
            port,
            "TOK",
            &[
                ("i", &i),
                ("ph", &phase),
                ("id", &id),
                ("cyc", &cyc),
                ("us", &us),
            ],
        );
        // Count from after the frame is out: `cyc` is computation only, not serial I/O, so it
        // is deterministic on an instruction-counting emulator whatever the line's pace.
        *prev = port.cycles();
    };
    let step = |port: &mut P, st: &mut State<'_>, ops: &mut OpCycles, tok: u32, pos: usize| {
        forward(m, st, tok, pos, port, ops).map_err(|e| match e {
            InferError::BadToken(_) => "token id outside the vocabulary",
            InferError::ContextFull => "context full",
            InferError::BuffersTooSmall => "buffers too small",
        })
    };
    for (i, &t) in prompt.iter().enumerate() {
        if let Err(why) = step(port, st, &mut ops, t, i) {
            err(port, why);
            return;
        }
        report(port, &mut prev, i, "p", t);
    }
    let mut made = 0;
    for g in 0..gen {
        let tok = argmax(st.logits);
        report(port, &mut prev, n + g, "d", tok);
        made += 1;
        if eos == Some(tok) {
            break;
        }
        if g + 1 < gen {
            if let Err(why) = step(port, st, &mut ops, tok, n + g) {
                err(port, why);
                return;
            }
        }
    }
    temperature(port);
    let (stat, heap, stack) = port.memory();
    let stat = stat.saturating_sub(idle);
    send(
        port,
        "OPS",
        &[
            ("matmul", &ops.matmul),
            ("attention", &ops.attention),
            ("norm", &ops.norm),
            ("other", &ops.other),
        ],
    );
    send(
        port,
        "MEM",
        &[
            ("static", &stat),
            ("heap", &heap),
            ("stack", &stack),
            ("model", &m.bytes.len()),
            ("code", &port.code_bytes()),
        ],
    );
    send(port, "DONE", &[("tokens", &(n + made))]);
}

/// A `TEMP c=…` frame (two decimals) when the port reads a temperature.
fn temperature<P: Port>(port: &mut P) {
    if let Some(c) = port.temperature_c().filter(|c| c.is_finite()) {
        let centi = (c * 100.0) as i32;
        let (sign, a) = if centi < 0 {
            ("-", -centi)
        } else {
            ("", centi)
        };
        let mut txt = [0u8; 16];
        let n = fmt_into(&mut txt, format_args!("{sign}{}.{:02}", a / 100, a % 100));
        let s = core::str::from_utf8(&txt[..n]).unwrap_or("0");
        send(port, "TEMP", &[("c", &s)]);
    }
}

fn fmt_into(buf: &mut [u8], args: core::fmt::Arguments<'_>) -> usize {
    struct W<'a>(&'a mut [u8], usize);
    impl core::fmt::Write for W<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let n = s.len().min(self.0.len() - self.1);
            self.0[self.1..self.1 + n].copy_from_slice(&s.as_bytes()[..n]);
            self.1 += n;
            Ok(())
        }
    }
    let mut w = W(buf, 0);
    let _ = core::fmt::write(&mut w, args);
    w.1
}
