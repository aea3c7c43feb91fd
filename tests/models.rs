//! Real models: GGUF files written by llama.cpp's own `gguf` package and llama2.c checkpoints
//! (written by `fixtures/models/make_models.py`, random weights in the real formats) imported by
//! `labctl model import`, checked against the package's dequantization, against llama.cpp
//! (`llama-cpp-python`) for greedy tokens and tokenization, and profiled on the virtual lab and a
//! QEMU board with text in and text out.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use labctl_integration_tests::{
    bin_dir, have, have_built, labctl, open_ro, repo, run_ok, text, virtual_lab,
};

fn have_gguf() -> bool {
    have(
        "python3 -c 'import gguf, numpy'",
        "python3 with the gguf and numpy packages is not available (python3 -m pip install gguf)",
    )
}

fn have_llama_cpp() -> bool {
    have_gguf()
        && have(
            "python3 -c 'import llama_cpp'",
            "llama-cpp-python is not available (python3 -m pip install llama-cpp-python)",
        )
}

/// The test models, written into a fresh directory.
fn make_models(extra: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new("python3")
        .arg(repo().join("tests/fixtures/models/make_models.py"))
        .arg(dir.path())
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "make_models.py: {}", text(&o).1);
    dir
}

fn import(src: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "model".to_string(),
        "import".into(),
        src.display().to_string(),
        "-o".into(),
        out.display().to_string(),
        "--json".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    serde_json::from_slice(&run_ok(&refs).stdout).unwrap()
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Every matrix of a labctl model file dequantized, in file order, read with the layout
/// docs/models.md documents (an implementation of its own, not the firmware's).
fn dequantized_matrices(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap();
    let w = |i: usize| u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap()) as usize;
    let (dim, hid, layers, heads, kvh, vocab, seq, quant, flags) =
        (w(2), w(3), w(4), w(5), w(6), w(7), w(8), w(9), w(11));
    let hd = dim / heads;
    let kv = hd * kvh;
    let mut off = 64 + seq * hd / 2 * 8;
    let mut out = vec![];
    let matrix = |off: &mut usize, rows: usize, cols: usize, out: &mut Vec<f32>| {
        for _ in 0..rows {
            let mut row = vec![];
            for _ in 0..cols.div_ceil(32) {
                let (bb, vals): (usize, Vec<f32>) = match quant {
                    0 => (128, f32s(&b[*off..*off + 128])),
                    1 => {
                        let d = f32s(&b[*off..*off + 4])[0];
                        (
                            36,
                            b[*off + 4..*off + 36]
                                .iter()
                                .map(|&q| d * f32::from(q as i8))
                                .collect(),
                        )
                    }
                    2 => {
                        let d = f32s(&b[*off..*off + 4])[0];
                        let mut v = vec![];
                        for &x in &b[*off + 4..*off + 20] {
                            v.push(d * f32::from((x & 15) as i8 - 8));
                            v.push(d * f32::from((x >> 4) as i8 - 8));
                        }
                        (20, v)
                    }
                    q => panic!("quant {q} not read by this test"),
                };
                *off += bb;
                row.extend(vals);
            }
            out.extend(&row[..cols]);
        }
    };
    matrix(&mut off, vocab, dim, &mut out);
    for _ in 0..layers {
        off += 4 * dim;
        matrix(&mut off, dim, dim, &mut out);
        matrix(&mut off, kv, dim, &mut out);
        matrix(&mut off, kv, dim, &mut out);
        matrix(&mut off, dim, dim, &mut out);
        off += 4 * dim;
        matrix(&mut off, hid, dim, &mut out);
        matrix(&mut off, dim, hid, &mut out);
        matrix(&mut off, hid, dim, &mut out);
    }
    off += 4 * dim;
    if flags & 1 == 0 {
        matrix(&mut off, vocab, dim, &mut out);
    }
    assert_eq!(
        off,
        b.len(),
        "the documented layout accounts for every byte"
    );
    out
}

fn how(report: &serde_json::Value) -> Vec<String> {
    report["conversions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {} {}", c["from"], c["to"], c["how"]).replace('"', ""))
        .collect()
}

#[test]
fn imported_weights_equal_the_gguf_packages_dequantization() {
    if !have_gguf() {
        return;
    }
    let m = make_models(&[]);
    let d = m.path();
    for (src, want) in [
        ("m-f32.gguf", "F32 f32 copied"),
        ("m-f16.gguf", "F16 f32 widened"),
        ("m-bf16.gguf", "BF16 f32 widened"),
        ("m-q8_0.gguf", "Q8_0 q8_0 repacked"),
        ("m-q4_0.gguf", "Q4_0 q4_0 repacked"),
        ("m-v2.bin", "Q8_0 (llama2.c, groups of 32) q8_0 repacked"),
    ] {
        let out = d.join(format!("{src}.ltlm"));
        let r = import(&d.join(src), &out, &[]);
        assert_eq!(how(&r), [want], "{src}: {r}");
        assert_eq!(r["requantized"], false);
        let ours = dequantized_matrices(&out);
        let reference = f32s(&std::fs::read(d.join(format!("{src}.ref.f32"))).unwrap());
        assert_eq!(ours.len(), reference.len(), "{src}");
        let differ = ours
            .iter()
            .zip(&reference)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(
            differ, 0,
            "{src}: {differ} weights differ from the reference"
        );
    }
    // A llama2.c v0 checkpoint holding the same weights imports to the same file as the GGUF.
    let v0 = d.join("v0.ltlm");
    let r = import(&d.join("m-v0.bin"), &v0, &[]);
    assert_eq!(r["source"]["format"], "llama2c-v0");
    assert_eq!(r["tokenizer"]["format"], "tokenizer.bin", "{r}");
    assert_eq!(
        std::fs::read(&v0).unwrap(),
        std::fs::read(d.join("m-f32.gguf.ltlm")).unwrap(),
        "llama2.c v0 and GGUF of the same weights give the same firmware file"
    );
    let v1 = d.join("v1.ltlm");
    let r = import(&d.join("m-v1.bin"), &v1, &[]);
    assert_eq!(r["source"]["format"], "llama2c-v1");
    assert_eq!(std::fs::read(&v1).unwrap(), std::fs::read(&v0).unwrap());
    // Validation of an imported model: every quantization against its source's f32 import.
    let o = run_ok(&[
        "model",
        "validate",
        d.join("m-q8_0.gguf.ltlm").to_str().unwrap(),
        "--tokens",
        "24",
        "--json",
    ]);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 4, "{rows}");
    let q8 = &rows[0];
    assert_eq!(q8["quant"], "q8_0");
    // The source is Q8_0: its f32 import holds the same weights, so q8_0 differs from it only
    // by the activations' 8-bit rounding.
    assert!(q8["top1_agreement"].as_f64().unwrap() >= 0.9, "{rows}");
    // Tied classifier (no output.weight; a positive llama2.c vocabulary size): the same file
    // from both, with the shared-classifier flag set.
    let t = make_models(&["--tied"]);
    let (a, b) = (t.path().join("a.ltlm"), t.path().join("b.ltlm"));
    import(&t.path().join("m-f32.gguf"), &a, &[]);
    import(&t.path().join("m-v0.bin"), &b, &[]);
    let bytes = std::fs::read(&a).unwrap();
    assert_eq!(bytes, std::fs::read(&b).unwrap());
    assert_eq!(bytes[44] & 1, 1, "shared classifier flag");
    // An explicit other quantization is a requantization, and the report says so.
    let r = import(
        &d.join("m-q8_0.gguf"),
        &d.join("rq.ltlm"),
        &["--quant", "q4_0"],
    );
    assert_eq!(r["requantized"], true);
    assert!(r["notes"].to_string().contains("requantized"), "{r}");
    // inspect shows provenance.
    let o = run_ok(&[
        "model",
        "inspect",
        d.join("m-q4_0.gguf.ltlm").to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["source"]["file"], "m-q4_0.gguf");
    assert_eq!(v["source"]["format"], "gguf");
    assert_eq!(v["source"]["sha256"].as_str().unwrap().len(), 64);
    assert!(v["tokenizer"].as_str().unwrap().starts_with("spm:gguf"));
}

/// Runs `models` on the virtual lab's first board with exact prompt ids; returns the database.
fn run_virtual(lab: &Path, models: &[PathBuf], extra: &[&str]) -> PathBuf {
    let mut args: Vec<String> = vec![
        "--lab".into(),
        lab.display().to_string(),
        "run".into(),
        "--boards".into(),
        "esp32s3-devkit".into(),
    ];
    for m in models {
        args.push("--model".into());
        args.push(m.display().to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok(&refs);
    lab.parent().unwrap().join("lab.duckdb")
}

/// Generated ids of each run of `model` (file stem), in order.
fn generated(db: &Path, model: &str) -> Vec<i64> {
    let c = open_ro(db);
    let mut st = c
        .prepare(
            "SELECT t.token_id FROM tokens t JOIN runs r USING (run_id) \
             WHERE r.model = ? AND t.phase = 'decode' ORDER BY r.run_id, t.idx",
        )
        .unwrap();
    st.query_map([model], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn dir_of(p: &Path) -> &Path {
    p.parent().unwrap()
}

fn llama_ref(args: &[&str]) -> serde_json::Value {
    let o = Command::new("python3")
        .arg(repo().join("tests/fixtures/models/llama_ref.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "llama_ref.py {args:?}: {}", text(&o).1);
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn greedy_tokens_of_imported_gguf_equal_llama_cpp() {
    if !have_llama_cpp() {
        return;
    }
    let m = make_models(&[]);
    let d = m.path();
    let (_lab_dir, lab) = virtual_lab();
    let prompt = "1,300,301,302";
    let n = 40;
    let mut models = vec![];
    for q in ["f32", "q8_0", "q4_0"] {
        let out = d.join(format!("imp-{q}.ltlm"));
        import(&d.join(format!("m-{q}.gguf")), &out, &[]);
        models.push(out);
    }
    let db = run_virtual(
        &lab,
        &models,
        &["--prompt-ids", prompt, "--tokens", &n.to_string()],
    );
    for q in ["f32", "q8_0", "q4_0"] {
        let ours = generated(&db, &format!("imp-{q}"));
        let theirs: Vec<i64> = llama_ref(&[
            "greedy",
            d.join(format!("m-{q}.gguf")).to_str().unwrap(),
            prompt,
            &n.to_string(),
        ])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
        let same = ours.iter().zip(&theirs).take_while(|(a, b)| a == b).count();
        eprintln!("{q}: labctl and llama.cpp agree on the first {same} of {n} greedy tokens");
        if q == "q4_0" {
            // Both quantize activations to 8 bits per block, llama.cpp with an f16 scale and
            // labctl with an f32 one; at a near tie of the top two logits that picks a different
            // token and the sequences part. Reported, not required (docs/models.md).
            continue;
        }
        assert!(same >= 32, "{q}: ours {ours:?}\nllama.cpp {theirs:?}");
    }
}

const PROMPTS: &[&str] = &[
    "Once upon a time",
    "Lily and Bolt went to the park.",
    "",
    " leading space",
    "  two  spaces",
    "héllo wörld ☃ 😀",
    "Café, naïve, jalapeño",
    "tabs\tand\nnewlines",
    "UPPER lower 12345 !?",
];

#[test]
fn the_tokenizer_matches_llama_cpp_and_round_trips() {
    if !have_llama_cpp() {
        return;
    }
    let m = make_models(&[]);
    let d = m.path();
    let gg = d.join("gg.ltlm");
    let l2 = d.join("l2.ltlm");
    import(&d.join("m-q8_0.gguf"), &gg, &[]);
    import(
        &d.join("m-v0.bin"),
        &l2,
        &["--tokenizer", d.join("tokenizer.bin").to_str().unwrap()],
    );
    let texts = serde_json::to_string(PROMPTS).unwrap();
    let theirs = llama_ref(&["tokenize", d.join("m-q8_0.gguf").to_str().unwrap(), &texts]);
    for (i, p) in PROMPTS.iter().enumerate() {
        for model in [&gg, &l2] {
            let o = run_ok(&["model", "tokenize", model.to_str().unwrap(), p, "--json"]);
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(
                v["ids"],
                theirs[i],
                "{p:?} with {}: labctl vs llama.cpp",
                model.display()
            );
            assert_eq!(v["decoded"], *p, "decoding round-trips {p:?}");
        }
    }
}

#[test]
fn text_goes_in_text_comes_out_and_eos_ends_a_run() {
    if !have_gguf() {
        return;
    }
    let m = make_models(&[]);
    let d = m.path();
    let model = d.join("story.ltlm");
    import(&d.join("m-q8_0.gguf"), &model, &[]);
    let (_lab_dir, lab) = virtual_lab();
    let db = run_virtual(
        &lab,
        std::slice::from_ref(&model),
        &["--prompt", "Once upon a time", "--tokens", "12"],
    );
    let c = open_ro(&db);
    let (prompt_ids, text_out, tok, fmt, src): (String, String, String, String, String) = c
        .query_row(
            "SELECT prompt_ids, output_text, tokenizer, model_format, model_source FROM runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    // BOS, then the tokenizer's pieces (the same ids `model tokenize` gives).
    let o = run_ok(&[
        "model",
        "tokenize",
        model.to_str().unwrap(),
        "Once upon a time",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let want: Vec<String> = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.to_string())
        .collect();
    assert_eq!(prompt_ids, want.join(","));
    assert!(prompt_ids.starts_with("1,"), "BOS first: {prompt_ids}");
    assert_eq!(tok, "spm:gguf (512 pieces)");
    assert_eq!((fmt.as_str(), src.as_str()), ("gguf", "m-q8_0.gguf"));
    let pieces: String = c
        .query_row(
            "SELECT string_agg(piece, '' ORDER BY idx) FROM tokens WHERE phase = 'decode'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!text_out.is_empty());
    // Byte tokens are joined into characters in the text; pieces show them as <0xNN>.
    if !pieces.contains("<0x") {
        assert_eq!(pieces, text_out);
    }
    // The report shows the text; its JSON carries it.
    let rep = dir_of(&db).join("report.json");
    run_ok(&[
        "--lab",
        lab.to_str().unwrap(),
        "report",
        "--format",
        "json",
        "-o",
        rep.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&rep).unwrap()).unwrap();
    assert_eq!(v[0]["output_text"], text_out.as_str());
    let html = dir_of(&db).join("report.html");
    run_ok(&[
        "--lab",
        lab.to_str().unwrap(),
        "report",
        "-o",
        html.to_str().unwrap(),
    ]);
    assert!(std::fs::read_to_string(&html)
        .unwrap()
        .contains("<h2>Generated text</h2>"));
    // The same model with its EOS id set to the third token it generates: --stop-at-eos ends the
    // run right after that token, and the run is ok with 3 tokens.
    let ids = generated(&db, "story");
    let third = ids[2].to_string();
    let m2 = make_models(&["--eos", &third]);
    let model2 = m2.path().join("story-eos.ltlm");
    import(&m2.path().join("m-q8_0.gguf"), &model2, &[]);
    let (_lab2_dir, lab2) = virtual_lab();
    let db2 = run_virtual(
        &lab2,
        std::slice::from_ref(&model2),
        &[
            "--prompt",
            "Once upon a time",
            "--tokens",
            "12",
            "--stop-at-eos",
        ],
    );
    assert_eq!(generated(&db2, "story-eos"), ids[..3]);
    let c2 = open_ro(&db2);
    let (status, gen): (String, i32) = c2
        .query_row("SELECT status, gen_tokens FROM runs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((status.as_str(), gen), ("ok", 3));
}

#[test]
fn malformed_truncated_and_unsupported_files_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let refuse = |src: &Path, want: &str| {
        let o = labctl()
            .args(["model", "import"])
            .arg(src)
            .arg("-o")
            .arg(d.join("out.ltlm"))
            .output()
            .unwrap();
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{}: {err}", src.display());
        assert!(err.contains(want), "{}: {err}", src.display());
        assert!(!err.contains("panicked"), "{err}");
        assert!(!d.join("out.ltlm").exists(), "nothing written");
    };
    let write = |name: &str, b: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, b).unwrap();
        p
    };
    refuse(Path::new("/dev/zero"), "not a regular file");
    refuse(
        &write("junk.bin", b"\x7fELF not a model at all, no"),
        "neither",
    );
    // A GGUF header claiming 2^60 metadata entries, and one with an architecture labctl does
    // not run.
    let mut g = b"GGUF".to_vec();
    g.extend_from_slice(&3u32.to_le_bytes());
    g.extend_from_slice(&0u64.to_le_bytes());
    g.extend_from_slice(&(1u64 << 60).to_le_bytes());
    refuse(&write("huge.gguf", &g), "metadata count");
    let mut g = b"GGUF".to_vec();
    g.extend_from_slice(&3u32.to_le_bytes());
    g.extend_from_slice(&0u64.to_le_bytes());
    g.extend_from_slice(&1u64.to_le_bytes());
    let key = b"general.architecture";
    g.extend_from_slice(&(key.len() as u64).to_le_bytes());
    g.extend_from_slice(key);
    g.extend_from_slice(&8u32.to_le_bytes());
    g.extend_from_slice(&4u64.to_le_bytes());
    g.extend_from_slice(b"gpt2");
    refuse(&write("gpt2.gguf", &g), "architecture \"gpt2\"");
    // A llama2.c header whose tensors are missing.
    let mut l2 = vec![];
    for x in [64i32, 192, 2, 4, 2, 512, 128] {
        l2.extend_from_slice(&x.to_le_bytes());
    }
    l2.extend_from_slice(&[0u8; 1000]);
    refuse(&write("short.bin", &l2), "ends inside");
    if !have_gguf() {
        return;
    }
    let m = make_models(&[]);
    let md = m.path();
    refuse(&md.join("m-q5_0.gguf"), "is Q5_0");
    // Cut short anywhere: refused, never a crash.
    let full = std::fs::read(md.join("m-q8_0.gguf")).unwrap();
    for cut in [10, 100, 1000, full.len() / 2, full.len() - 1] {
        let p = write("cut.gguf", &full[..cut]);
        let o = labctl()
            .args(["model", "import"])
            .arg(&p)
            .arg("-o")
            .arg(d.join("out.ltlm"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "cut at {cut}: {}", text(&o).1);
    }
    let full = std::fs::read(md.join("m-v0.bin")).unwrap();
    refuse(&write("cut.bin", &full[..full.len() - 8]), "truncated");
    // A tokenizer of another vocabulary.
    let o = labctl()
        .args(["model", "import"])
        .arg(md.join("m-v0.bin"))
        .arg("-o")
        .arg(d.join("out.ltlm"))
        .arg("--tokenizer")
        .arg(write(
            "tok.bin",
            &[16, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, b'a'],
        ))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("tokenizer"), "{}", text(&o).1);
}

#[test]
fn a_model_too_big_for_a_board_is_refused_before_power_naming_the_shortfall() {
    if !have_gguf() {
        return;
    }
    // 256-dim, 8 layers, f32: about 17 MB, far beyond the pico's 2 MB of flash.
    let m = make_models(&["--dim", "256", "--hidden", "768", "--layers", "8"]);
    let model = m.path().join("big.ltlm");
    import(&m.path().join("m-f32.gguf"), &model, &[]);
    let (dir, lab) = virtual_lab();
    let o = labctl()
        .args(["--lab", lab.to_str().unwrap(), "run", "--boards", "pico"])
        .arg("--model")
        .arg(&model)
        .args(["--prompt", "Once", "--tokens", "4"])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(!err.contains("panicked"), "{err}");
    let c = open_ro(&dir.path().join("lab.duckdb"));
    let (status, why): (String, String) = c
        .query_row("SELECT status, error FROM runs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(status, "failed");
    assert!(why.contains("flash"), "{why}");
    let powered: i64 = c
        .query_row(
            "SELECT count(*) FROM board_events WHERE state = 'powered'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(powered, 0, "the board was never powered: {why}");
}

fn have_qemu_m4() -> bool {
    if !have(
        "command -v qemu-system-arm",
        "QEMU is not installed (apt-get install qemu-system-arm)",
    ) {
        return false;
    }
    have_built(
        &bin_dir()
            .parent()
            .unwrap()
            .join("thumbv7em-none-eabihf/release/labctl-fw-qemu-mps2"),
        "the Cortex-M images are not built (bash firmware/ports/build.sh)",
    )
}

#[test]
fn three_imported_models_profile_on_the_virtual_lab_and_a_qemu_board() {
    if !have_gguf() {
        return;
    }
    let m = make_models(&[]);
    let d = m.path();
    let mut models = vec![];
    for (src, name) in [
        ("m-f16.gguf", "story-f32"),
        ("m-q8_0.gguf", "story-q8"),
        ("m-q4_0.gguf", "story-q4"),
    ] {
        let out = d.join(format!("{name}.ltlm"));
        import(&d.join(src), &out, &[]);
        models.push(out);
    }
    let check = |db: &Path, boards: i64| {
        let c = open_ro(db);
        let (runs, ok, texts, models): (i64, i64, i64, i64) = c
            .query_row(
                "SELECT count(*), count(*) FILTER (WHERE status = 'ok'), \
                 count(output_text), count(DISTINCT model) FROM runs",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            (runs, ok, texts, models),
            (3 * boards, 3 * boards, 3 * boards, 3)
        );
    };
    let (vdir, vlab) = virtual_lab();
    let mut args = vec!["--lab", vlab.to_str().unwrap(), "run", "--tokens", "8"];
    for p in &models {
        args.extend(["--model", p.to_str().unwrap()]);
    }
    run_ok(&args);
    check(&vdir.path().join("lab.duckdb"), 3);
    if !have_qemu_m4() {
        return;
    }
    let qdir = tempfile::tempdir().unwrap();
    let qlab = qdir.path().join("qemu-lab.toml");
    std::fs::copy(repo().join("lab-config/examples/qemu-lab.toml"), &qlab).unwrap();
    let mut args = vec![
        "--lab",
        qlab.to_str().unwrap(),
        "run",
        "--boards",
        "m4",
        "--tokens",
        "8",
    ];
    for p in &models {
        args.extend(["--model", p.to_str().unwrap()]);
    }
    run_ok(&args);
    check(&qdir.path().join("qemu-lab.duckdb"), 1);
}
