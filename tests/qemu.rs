//! The bare-metal firmware on Cortex-M4F, Cortex-M7 (plain and DSP kernels), RV64GC and RV32IMAFC
//! under QEMU, driven by the real `labctl` through the `qemu` platform plugin: the same model and
//! prompt give the same token ids as the posix firmware (integer kernels are bit-exact), and every
//! token's cycle count repeats exactly run to run.

use std::{collections::BTreeMap, path::Path, process::Command};

use duckdb::{AccessMode, Config, Connection};
use labctl_integration_tests::{bin_dir, have_built, repo, run_ok, virtual_lab};

fn have_qemu() -> bool {
    let ok = Command::new("sh")
        .args([
            "-c",
            "command -v qemu-system-arm && command -v qemu-system-riscv64 && command -v qemu-system-riscv32",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let image = bin_dir().parent().is_some_and(|t| {
        t.join("thumbv7em-none-eabihf/release/labctl-fw-qemu-mps2")
            .is_file()
            && t.join("riscv64gc-unknown-none-elf/release/labctl-fw-qemu-riscv")
                .is_file()
            && t.join("fw-dsp/thumbv7em-none-eabihf/release/labctl-fw-qemu-mps2")
                .is_file()
            && t.join("riscv32imafc-unknown-none-elf/release/labctl-fw-qemu-riscv")
                .is_file()
    });
    if !(ok && image) {
        let why = if ok {
            "the bare-metal images are not built (see lab-config/examples/qemu-lab.toml)"
        } else {
            "QEMU is not installed (apt-get install qemu-system-arm qemu-system-misc)"
        };
        if std::env::var("LAB_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
            panic!("{why}, and LAB_REQUIRE_EXTERNAL=1");
        }
        eprintln!("skipping: {why}");
    }
    ok && image
}

/// (board, run) → [(token id, cycles)] in order.
fn tokens(db: &Path) -> BTreeMap<(String, String), Vec<(i64, i64)>> {
    let c = Connection::open_with_flags(
        db,
        Config::default().access_mode(AccessMode::ReadOnly).unwrap(),
    )
    .unwrap();
    let mut st = c
        .prepare("SELECT r.board, r.run_id, t.token_id, t.cycles FROM tokens t JOIN runs r USING (run_id) ORDER BY r.run_id, t.idx")
        .unwrap();
    let mut out: BTreeMap<(String, String), Vec<(i64, i64)>> = BTreeMap::new();
    for row in st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .unwrap()
    {
        let (b, run, id, cyc) = row.unwrap();
        out.entry((b, run)).or_default().push((id, cyc));
    }
    out
}

#[test]
fn mcus_under_qemu_match_posix_tokens_and_repeat_their_cycles() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lab = dir.path().join("qemu-lab.toml");
    std::fs::copy(repo().join("lab-config/examples/qemu-lab.toml"), &lab).unwrap();
    let args = ["--tokens", "12", "--prompt", "Hello", "--repeat", "2"];
    run_ok(&[&["--lab", lab.to_str().unwrap(), "run"][..], &args[..]].concat());
    let (vdir, vlab) = virtual_lab();
    run_ok(
        &[
            &["--lab", vlab.to_str().unwrap(), "run", "--boards", "pico"][..],
            &args[..],
        ]
        .concat(),
    );

    let q = tokens(&dir.path().join("qemu-lab.duckdb"));
    let p = tokens(&vdir.path().join("lab.duckdb"));
    let posix_ids: Vec<i64> = p.values().next().unwrap().iter().map(|t| t.0).collect();
    assert_eq!(posix_ids.len(), 5 + 12);
    for ((board, run), toks) in &q {
        let ids: Vec<i64> = toks.iter().map(|t| t.0).collect();
        assert_eq!(
            ids, posix_ids,
            "{board} {run}: token ids differ from the posix firmware"
        );
    }
    // Two runs on one core: the same cycles for every token.
    for board in ["m4", "m7", "rv64", "m4-dsp", "rv32"] {
        let runs: Vec<&Vec<(i64, i64)>> = q
            .iter()
            .filter(|((b, _), _)| b == board)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(runs.len(), 2);
        let differ: Vec<_> = runs[0]
            .iter()
            .zip(runs[1])
            .enumerate()
            .filter(|(_, (a, b))| a.1 != b.1)
            .collect();
        assert!(
            differ.is_empty(),
            "{board}: cycle counts differ between two runs at (token, (id, cycles)): {differ:?}"
        );
    }
    // The DSP build says so in `runs`, and `compare` shows its cycles per token beside the plain
    // kernels' on the same core.
    let o = run_ok(&[
        "--lab",
        lab.to_str().unwrap(),
        "compare",
        "--by",
        "board",
        "--metric",
        "cycles_per_token",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cyc = |board: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["board"] == board)
            .and_then(|r| r["cycles_per_token"]["median"].as_f64())
            .unwrap_or_else(|| panic!("{board} in {v}"))
    };
    println!(
        "cycles per decode token: m4 {} m4-dsp {}",
        cyc("m4"),
        cyc("m4-dsp")
    );
    assert!(cyc("m4-dsp") < cyc("m4"), "{v}");
    let c = Connection::open_with_flags(
        dir.path().join("qemu-lab.duckdb"),
        Config::default().access_mode(AccessMode::ReadOnly).unwrap(),
    )
    .unwrap();
    let fw: Vec<String> = c
        .prepare("SELECT DISTINCT firmware_version FROM runs WHERE board = 'm4-dsp'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(fw.len() == 1 && fw[0].ends_with("+dsp"), "{fw:?}");
}

/// The stories260k q8_0 model, generated into `dir`.
fn q8_model(dir: &Path) -> std::path::PathBuf {
    model_of(dir, "q8_0")
}

/// The stories260k-shaped preset at `quant`.
fn model_of(dir: &Path, quant: &str) -> std::path::PathBuf {
    let model = dir.join(format!("m-{quant}.ltlm"));
    run_ok(&[
        "model",
        "gen",
        "--preset",
        "stories260k",
        "--quant",
        quant,
        "-o",
        model.to_str().unwrap(),
    ]);
    model
}

/// A numeric field of a frame line (`key=` included in `key`).
fn field(line: &str, key: &str) -> u64 {
    line.split(' ')
        .find_map(|f| f.strip_prefix(key))
        .and_then(|v| v.split('*').next())
        .unwrap_or_else(|| panic!("{key} in {line:?}"))
        .parse()
        .unwrap()
}

/// A frame as the protocol writes it (CRC-16/CCITT-FALSE over the body).
fn frame(body: &str) -> String {
    let mut c: u16 = 0xFFFF;
    for b in body.bytes() {
        c ^= u16::from(b) << 8;
        for _ in 0..8 {
            c = if c & 0x8000 != 0 {
                (c << 1) ^ 0x1021
            } else {
                c << 1
            };
        }
    }
    format!("@{body}*{c:04X}\n")
}

/// Runs an image on mps2-an386 with the prompt on stdin; returns (decode ids, decode cycles).
fn decode_on_m4(image: &Path, model: &Path) -> (Vec<u64>, Vec<u64>) {
    let (ids, cyc, _) = session_on_m4(image, model);
    (ids, cyc)
}

/// Like [`decode_on_m4`], also returning the `MEM` frame's line.
fn session_on_m4(image: &Path, model: &Path) -> (Vec<u64>, Vec<u64>, String) {
    use std::io::Write;
    let mut child = Command::new("qemu-system-arm")
        .args([
            "-M",
            "mps2-an386",
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "stdio",
        ])
        .arg("-kernel")
        .arg(image)
        .arg("-device")
        .arg(format!("loader,file={},addr=0x00100000", model.display()))
        .args(["-icount", "shift=0,align=off,sleep=off"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all((frame("PROMPT gen=16 n=4") + &frame("IDS ids=72,101,108,108")).as_bytes())
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut ids = vec![];
    let mut cyc = vec![];
    let mut mem = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(out)).map_while(Result::ok) {
        if line.starts_with("@DONE") {
            break;
        }
        if line.starts_with("@MEM") {
            mem = line.clone();
        }
        if line.contains("ph=d") {
            ids.push(field(&line, "id="));
            cyc.push(field(&line, "cyc="));
        }
    }
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    (ids, cyc, mem)
}

#[test]
fn reported_memory_agrees_with_the_linker_map() {
    if !have_qemu() {
        return;
    }
    let image = bin_dir()
        .parent()
        .unwrap()
        .join("thumbv7em-none-eabihf/release/labctl-fw-qemu-mps2");
    let nm = Command::new("nm")
        .arg(&image)
        .output()
        .expect("nm (binutils)");
    let syms: std::collections::HashMap<String, u64> = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let addr = u64::from_str_radix(it.next()?, 16).ok()?;
            let name = it.nth(1)?;
            Some((name.to_string(), addr))
        })
        .collect();
    let (sdata, ebss, top) = (syms["_sdata"], syms["_ebss"], syms["_stack_top"]);
    // The model arena's size, from the symbol table (`nm -S`).
    let sized = Command::new("nm").arg("-S").arg(&image).output().unwrap();
    let arena = String::from_utf8_lossy(&sized.stdout)
        .lines()
        .find(|l| l.contains("5ARENA"))
        .and_then(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
        .expect("the ARENA symbol");
    let dir = tempfile::tempdir().unwrap();
    let model = q8_model(dir.path());
    let (_, _, mem) = session_on_m4(&image, &model);
    // Static RAM is .data + .bss as linked, with the arena counted for what the model's buffers
    // take of it: stories260k (dim 64, hidden 172, 8 heads, 5 layers, KV dim 32, vocab 512) at
    // its full 512-token context, per docs/models.md — f32 x, xb, xb2, q (4·64), hb, hb2
    // (2·172), scores (8·512), logits (512), K and V caches (2·5·512·32), activation scales
    // (6); i8 quantized activations (192); i32 sums (6).
    let f32s = 4 * 64 + 2 * 172 + 8 * 512 + 512 + 2 * 5 * 512 * 32 + 6;
    let buffers = f32s * 4 + 192 + 6 * 4;
    assert_eq!(
        field(&mem, "static="),
        ebss - sdata - arena + buffers,
        "{mem}"
    );
    // The stack high-water mark comes from painting in 4-byte words below the stack top.
    let stack = field(&mem, "stack=");
    assert!(
        stack > 0 && stack.is_multiple_of(4) && stack < top - ebss,
        "{mem}"
    );
    // The firmware image in flash: what the ELF's loadable segments put below the model
    // partition (read independently with readelf), and what the linker symbols say.
    let readelf = Command::new("readelf")
        .args(["-lW"])
        .arg(&image)
        .output()
        .expect("readelf (binutils)");
    let flash_end = String::from_utf8_lossy(&readelf.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with("LOAD"))
        .filter_map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .take(4)
                .map(|x| u64::from_str_radix(x.trim_start_matches("0x"), 16).unwrap_or(0))
                .collect();
            // [offset, vaddr, paddr, filesz]: file bytes loaded into flash (below 0x100000)
            (f.len() == 4 && f[2] < 0x10_0000 && f[3] > 0).then(|| f[2] + f[3])
        })
        .max()
        .expect("loadable segments in flash");
    let code = field(&mem, "code=");
    assert_eq!(code, flash_end, "{mem}");
    assert_eq!(code, syms["_sidata"] + (syms["_edata"] - sdata), "{mem}");
    println!(
        "static {} B (linker: {} B), stack high-water {stack} B, image in flash {code} B",
        field(&mem, "static="),
        ebss - sdata
    );
}

/// The DSP image's q8_0 kernel (SMLAD) is bit-exact with the plain one and faster; its q4_0 is
/// the plain kernel (an SMLAD version needed more instructions), so the tokens match there too.
#[test]
fn the_dsp_kernels_are_bit_exact_and_faster() {
    if !have_qemu() {
        return;
    }
    let target = bin_dir().parent().unwrap().to_path_buf();
    let plain = target.join("thumbv7em-none-eabihf/release/labctl-fw-qemu-mps2");
    let dsp = target.join("fw-dsp/thumbv7em-none-eabihf/release/labctl-fw-qemu-mps2");
    if !have_built(&dsp, "the DSP image is not built (see .ci/run)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for quant in ["q8_0", "q4_0"] {
        let model = model_of(dir.path(), quant);
        let (ids_plain, cyc_plain) = decode_on_m4(&plain, &model);
        let (ids_dsp, cyc_dsp) = decode_on_m4(&dsp, &model);
        assert_eq!(ids_plain.len(), 16);
        assert_eq!(
            ids_plain, ids_dsp,
            "{quant}: the DSP kernel changes the tokens"
        );
        let (p, d): (u64, u64) = (cyc_plain[1..].iter().sum(), cyc_dsp[1..].iter().sum());
        println!(
            "{quant} decode ticks: plain {p}, dsp {d} ({:.1} % fewer)",
            (1.0 - d as f64 / p as f64) * 100.0
        );
        if quant == "q8_0" {
            assert!(d < p, "{quant}: the DSP kernel takes fewer cycles");
        }
    }
}

#[test]
fn the_qemu_lab_dry_run_is_the_golden_plan() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lab = dir.path().join("qemu-lab.toml");
    std::fs::copy(repo().join("lab-config/examples/qemu-lab.toml"), &lab).unwrap();
    let o = run_ok(&[
        "--lab",
        lab.to_str().unwrap(),
        "run",
        "--dry-run",
        "--tokens",
        "16",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        labctl_integration_tests::golden("qemu-lab.dry-run.txt", dir.path())
    );
}

#[test]
fn a_missing_emulator_names_what_to_install() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lab = dir.path().join("qemu-lab.toml");
    std::fs::copy(repo().join("lab-config/examples/qemu-lab.toml"), &lab).unwrap();
    // No QEMU on this PATH.
    let o = labctl_integration_tests::labctl()
        .env("PATH", dir.path())
        .args([
            "--lab",
            lab.to_str().unwrap(),
            "run",
            "--json",
            "--boards",
            "m4,rv64",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for r in rows.as_array().unwrap() {
        assert_eq!(r["status"], "error", "{r}");
        assert_eq!(r["reason_code"], "missing-tool", "{r}");
        let why = r["error"].as_str().unwrap();
        let pkg = if r["board"] == "m4" {
            "apt-get install qemu-system-arm"
        } else {
            "apt-get install qemu-system-misc"
        };
        assert!(
            why.contains("is not installed") && why.contains(pkg),
            "{why}"
        );
    }
}

/// The `stm32` port's image — the one a real STM32F405 is flashed with — on QEMU's
/// netduinoplus2 (the `qemu` plugin's `stm32f405` profile): the real serial path to its USART1,
/// the same token ids as a virtual board for the same model and prompt, a clock it reports, and
/// static RAM and flash within the chip's 128 KiB main SRAM and 1 MiB flash.
#[test]
fn the_stm32f405_image_on_qemu_gives_a_virtual_boards_tokens() {
    if !have_qemu() {
        return;
    }
    let image = bin_dir()
        .parent()
        .unwrap()
        .join("thumbv7em-none-eabihf/release/labctl-fw-stm32");
    if !have_built(
        &image,
        "the stm32 image is not built (bash firmware/ports/build.sh)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lab = dir.path().join("lab.toml");
    std::fs::write(
        &lab,
        r#"name = "stm32"
[storage]
path = "lab.duckdb"
[[relays]]
name = "r1"
driver = "simulated"
[[boards]]
name = "f405"
platform = "qemu"
profile = "stm32f405"
relay = "r1"
[[boards]]
name = "virt"
platform = "virtual"
profile = "stm32f7"
"#,
    )
    .unwrap();
    for quant in ["q8_0", "q4_0"] {
        run_ok(&[
            "--lab",
            lab.to_str().unwrap(),
            "run",
            "--model",
            &format!("stories260k:{quant}"),
            "--prompt",
            "Hello",
            "--tokens",
            "12",
        ]);
    }
    let t = tokens(&dir.path().join("lab.duckdb"));
    let ids = |board: &str| -> Vec<Vec<i64>> {
        t.iter()
            .filter(|((b, _), _)| b == board)
            .map(|(_, v)| v.iter().map(|(id, _)| *id).collect())
            .collect()
    };
    assert_eq!(ids("f405").len(), 2);
    assert_eq!(
        ids("f405"),
        ids("virt"),
        "same tokens on the STM32F405 image"
    );
    let c = Connection::open_with_flags(
        dir.path().join("lab.duckdb"),
        Config::default().access_mode(AccessMode::ReadOnly).unwrap(),
    )
    .unwrap();
    let (status, stat, stack, flash, model): (String, i64, i64, i64, i64) = c
        .query_row(
            "SELECT r.status, m.static_ram_bytes, m.stack_peak_bytes, m.flash_bytes, m.model_bytes \
             FROM runs r JOIN run_memory m USING (run_id) WHERE r.board = 'f405' AND r.quant = 'q8_0'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(status, "ok");
    assert!(
        stat + stack <= 128 << 10,
        "static {stat} + stack {stack} within 128 KiB"
    );
    let code = flash - model;
    assert!(
        code > 0 && code <= 128 << 10,
        "image {code} B within its 128 KiB of flash"
    );
    println!(
        "stm32f405: image {code} B, static RAM {stat} B, stack peak {stack} B, model {model} B"
    );
}
