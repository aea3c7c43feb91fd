//! Property tests over hostile input, with a seeded generator so failures reproduce: the frame
//! codec, the line reader, the model-file reader and the whole firmware loop must neither panic
//! nor hang on random, truncated or corrupted bytes.

use fwcore::{
    fw::{self, Port},
    gen::{generate, Preset, Rng},
    infer::{forward, sizes, Clock, OpCycles, State},
    model::Model,
    proto::{self, FrameWriter, LineReader, MAX_LINE},
    quant::Quant,
};

fn bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

/// Up to `max - 1` random bytes.
fn some_bytes(rng: &mut Rng, max: u64) -> Vec<u8> {
    let n = (rng.next_u64() % max) as usize;
    bytes(rng, n)
}

/// Valid frames with bytes flipped, dropped or inserted.
fn mutate(rng: &mut Rng, mut v: Vec<u8>) -> Vec<u8> {
    for _ in 0..(rng.next_u64() % 4) {
        if v.is_empty() {
            break;
        }
        let i = rng.next_u64() as usize % v.len();
        match rng.next_u64() % 3 {
            0 => v[i] ^= 1 << (rng.next_u64() % 8),
            1 => {
                v.remove(i);
            }
            _ => v.insert(i, rng.next_u64() as u8),
        }
    }
    v
}

fn frame(kind: &str, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut buf = [0u8; MAX_LINE];
    let mut w = FrameWriter::new(&mut buf, kind);
    for (k, v) in fields {
        w.field(k, v);
    }
    w.finish().unwrap().to_vec()
}

#[test]
fn codec_survives_random_and_corrupted_lines() {
    let mut rng = Rng::new(0xF00D);
    let good = frame(
        "TOK",
        &[("i", "3"), ("ph", "d"), ("id", "77"), ("us", "1234")],
    );
    let mut accepted_corrupt = 0;
    for n in 0..20_000 {
        let line = if n % 2 == 0 {
            some_bytes(&mut rng, 600)
        } else {
            mutate(&mut rng, good[..good.len() - 1].to_vec())
        };
        if let Ok(f) = proto::parse(&line) {
            // Whatever parses must be internally consistent.
            for (k, v) in f.fields() {
                assert!(!k.is_empty() && !v.contains(' '));
            }
            let _ = f.u64("i");
            if line != good[..good.len() - 1] {
                accepted_corrupt += 1;
            }
        }
    }
    // CRC-16 lets about 1 in 65536 corrupt lines through; 10 000 mutations should give ~0.
    assert!(
        accepted_corrupt <= 3,
        "{accepted_corrupt} corrupt lines accepted"
    );
}

#[test]
fn line_reader_resynchronises_after_any_garbage() {
    let mut rng = Rng::new(7);
    let good = frame("DONE", &[("tokens", "9")]);
    for _ in 0..2_000 {
        let mut r: LineReader<MAX_LINE> = LineReader::new();
        let mut found = 0;
        let garbage = some_bytes(&mut rng, 2000);
        for b in garbage.iter().chain(b"\n").chain(good.iter()) {
            if r.push(*b) == proto::Event::Line && r.line() == &good[..good.len() - 1] {
                found += 1;
            }
        }
        assert_eq!(found, 1, "the frame after the garbage is read");
    }
}

struct Count(u64);
impl Clock for Count {
    fn cycles(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

fn tiny() -> Vec<u8> {
    let mut cfg = Preset::by_name("stories260k").unwrap().config(Quant::Q4_0);
    cfg.n_layers = 1;
    cfg.seq_len = 16;
    generate(&cfg, 5)
}

#[test]
fn model_reader_rejects_truncated_and_random_files_and_runs_corrupt_weights() {
    let mut rng = Rng::new(99);
    let good = tiny();
    assert!(Model::from_bytes(&good).is_ok());
    for cut in (0..good.len()).step_by(97) {
        assert!(
            Model::from_bytes(&good[..cut]).is_err(),
            "truncated at {cut}"
        );
    }
    for _ in 0..2_000 {
        let n = (rng.next_u64() % 4096) as usize;
        let mut b = bytes(&mut rng, n);
        if n >= 4 && rng.next_u64().is_multiple_of(2) {
            b[..4].copy_from_slice(b"LTLM");
        }
        let _ = Model::from_bytes(&b);
    }
    // Header bit flips are caught by its checksum.
    for i in 0..64 * 8 {
        let mut b = good.clone();
        b[i / 8] ^= 1 << (i % 8);
        assert!(
            Model::from_bytes(&b).is_err(),
            "header bit {i} flip accepted"
        );
    }
    // Corrupt weights load (the header is fine) and must run without panicking.
    for _ in 0..20 {
        let mut b = good.clone();
        for _ in 0..200 {
            let i = 64 + rng.next_u64() as usize % (b.len() - 64);
            b[i] = rng.next_u64() as u8;
        }
        let m = Model::from_bytes(&b).unwrap();
        let s = sizes(&m.cfg, 8);
        let (mut f, mut i8s, mut i32s) = (vec![0f32; s.f32s], vec![0i8; s.i8s], vec![0i32; s.i32s]);
        let mut st = State::new(&m.cfg, 8, &mut f, &mut i8s, &mut i32s).unwrap();
        for pos in 0..8 {
            let _ = forward(
                &m,
                &mut st,
                (pos * 31) as u32 % 512,
                pos,
                &mut Count(0),
                &mut OpCycles::default(),
            );
        }
    }
}

/// A port fed from a byte script, recording what the firmware writes.
struct Script {
    input: Vec<u8>,
    pos: usize,
    out: Vec<u8>,
    t: u64,
}

impl Clock for Script {
    fn cycles(&mut self) -> u64 {
        self.t += 1;
        self.t
    }
}

impl Port for Script {
    fn read_byte(&mut self) -> Option<u8> {
        let b = self.input.get(self.pos).copied();
        self.pos += 1;
        b
    }
    fn write(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }
    fn micros(&mut self) -> u64 {
        self.t
    }
    fn memory(&mut self) -> (u64, u64, u64) {
        (0, 0, 0)
    }
    fn platform(&self) -> &str {
        "fuzz"
    }
    fn clock_hz(&self) -> u64 {
        1
    }
    fn ram_bytes(&self) -> u64 {
        0
    }
    fn flash_bytes(&self) -> u64 {
        0
    }
}

#[test]
fn firmware_loop_survives_hostile_hosts() {
    let model_bytes = tiny();
    let m = Model::from_bytes(&model_bytes).unwrap();
    let s = sizes(&m.cfg, 16);
    let (mut f, mut i8s, mut i32s) = (vec![0f32; s.f32s], vec![0i8; s.i8s], vec![0i32; s.i32s]);
    let mut st = State::new(&m.cfg, 16, &mut f, &mut i8s, &mut i32s).unwrap();
    let mut rng = Rng::new(1234);
    let valid = [
        frame("HELLO", &[("proto", "1")]),
        frame("INFO", &[]),
        frame("PROMPT", &[("gen", "3"), ("n", "2")]),
        frame("IDS", &[("ids", "72,105")]),
        frame("PROMPT", &[("gen", "99"), ("n", "2")]),
        frame("IDS", &[("ids", "1,99999")]),
        frame("PROMPT", &[("gen", "1"), ("n", "5000")]),
    ];
    for _ in 0..300 {
        let mut input = vec![];
        for _ in 0..(rng.next_u64() % 12) {
            match rng.next_u64() % 3 {
                0 => input.extend(some_bytes(&mut rng, 300)),
                1 => input.extend(&valid[rng.next_u64() as usize % valid.len()]),
                _ => {
                    let v = valid[rng.next_u64() as usize % valid.len()].clone();
                    input.extend(mutate(&mut rng, v));
                }
            }
        }
        let mut port = Script {
            input,
            pos: 0,
            out: vec![],
            t: 0,
        };
        fw::run(&mut port, &m, &mut st);
        // Everything the firmware said is well-formed frames.
        for line in port.out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            assert!(
                proto::parse(line).is_ok(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
