//! `labctl bench firmware`'s kernel comparison: each weight format's matrix-vector product, the
//! firmware core's `matvec` against a plain C implementation of the same arithmetic
//! (`kernels_ref.c`, compiled here with the system's `cc -O2`), on the same random weights, timed
//! side by side in one run, with the results checked equal.

use std::{path::Path, time::Instant};

use fwcore::quant::{matvec, quantize_act, quantize_block, QAct, Quant, GROUP};

const REF_C: &str = include_str!("kernels_ref.c");

type RefF32 = unsafe extern "C" fn(*const u8, *const f32, i32, i32, *mut f32);
type RefQuant =
    unsafe extern "C" fn(i32, *const u8, *const i8, *const f32, *const i32, i32, i32, *mut f32);

/// Builds the C reference into `dir` and loads it.
fn load_ref(dir: &Path) -> Result<libloading::Library, String> {
    let src = dir.join("kernels_ref.c");
    let lib = dir.join("libkernels_ref.so");
    std::fs::write(&src, REF_C).map_err(|e| e.to_string())?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = std::process::Command::new(&cc)
        .args(["-O2", "-ffp-contract=off", "-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .map_err(|e| format!("{cc}: {e} (install a C compiler: apt-get install gcc)"))?;
    if !out.status.success() {
        return Err(format!(
            "{cc} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // SAFETY: a library we just compiled from our own source; no initialisers run.
    unsafe { libloading::Library::new(&lib) }.map_err(|e| e.to_string())
}

/// A deterministic pseudo-random weight in [-1, 1).
fn weight(i: usize) -> f32 {
    let x = (i as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// One format's result: Rust and C time per matrix-vector product (s), and whether they agree.
pub struct KernelRun {
    pub quant: Quant,
    pub rust_s: f64,
    pub c_s: f64,
    pub equal: bool,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times every format on a `rows` × `cols` matrix, `rounds` interleaved rounds of `reps` products.
pub fn compare(
    rows: usize,
    cols: usize,
    rounds: usize,
    reps: usize,
) -> Result<Vec<KernelRun>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let lib = load_ref(dir.path())?;
    // SAFETY: the symbols have the signatures of kernels_ref.c.
    let (rf, rq) = unsafe {
        (
            *lib.get::<RefF32>(b"ref_f32").map_err(|e| e.to_string())?,
            *lib.get::<RefQuant>(b"ref_quant")
                .map_err(|e| e.to_string())?,
        )
    };
    let nb = cols / GROUP;
    let x: Vec<f32> = (0..cols).map(|i| weight(i + 7_777) * 0.5).collect();
    let (mut q, mut scale, mut sum) = (vec![0i8; cols], vec![0f32; nb], vec![0i32; nb]);
    let mut act = QAct {
        q: &mut q,
        scale: &mut scale,
        sum: &mut sum,
    };
    quantize_act(&x, &mut act);
    let mut out = vec![];
    for quant in [Quant::F32, Quant::Q8_0, Quant::Q4_0, Quant::Q3, Quant::Q2] {
        let bb = quant.block_bytes();
        let mut w = vec![0u8; rows * nb * bb];
        for (k, blk) in w.chunks_exact_mut(bb).enumerate() {
            let g: Vec<f32> = (0..GROUP).map(|i| weight(k * GROUP + i)).collect();
            quantize_block(quant, &g, blk);
        }
        let (mut ro, mut co) = (vec![0f32; rows], vec![0f32; rows]);
        let rust = |o: &mut [f32]| matvec(quant, &w, nb, &act, &x, o);
        let fmt = match quant {
            Quant::F32 => -1,
            Quant::Q8_0 => 0,
            Quant::Q4_0 => 1,
            Quant::Q3 => 2,
            Quant::Q2 => 3,
        };
        let c = |o: &mut [f32]| {
            // SAFETY: buffers sized for `rows` rows of `nb` blocks; the C code reads only those.
            unsafe {
                if fmt < 0 {
                    rf(
                        w.as_ptr(),
                        x.as_ptr(),
                        rows as i32,
                        nb as i32,
                        o.as_mut_ptr(),
                    );
                } else {
                    rq(
                        fmt,
                        w.as_ptr(),
                        act.q.as_ptr(),
                        act.scale.as_ptr(),
                        act.sum.as_ptr(),
                        rows as i32,
                        nb as i32,
                        o.as_mut_ptr(),
                    );
                }
            }
        };
        let (mut tr, mut tc) = (vec![], vec![]);
        for _ in 0..rounds {
            let t = Instant::now();
            for _ in 0..reps {
                rust(std::hint::black_box(&mut ro));
            }
            tr.push(t.elapsed().as_secs_f64() / reps as f64);
            let t = Instant::now();
            for _ in 0..reps {
                c(std::hint::black_box(&mut co));
            }
            tc.push(t.elapsed().as_secs_f64() / reps as f64);
        }
        out.push(KernelRun {
            quant,
            rust_s: median(&mut tr),
            c_s: median(&mut tc),
            equal: ro.iter().zip(&co).all(|(a, b)| a.to_bits() == b.to_bits()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_c_reference_computes_what_the_kernels_compute() {
        match super::compare(8, 256, 1, 1) {
            Ok(runs) => {
                for r in runs {
                    assert!(r.equal, "{}: C and Rust differ", r.quant.name());
                }
            }
            // Needs a C compiler (CI has one: it builds DuckDB's C++).
            Err(e) if std::env::var("LAB_REQUIRE_EXTERNAL").as_deref() == Ok("1") => {
                panic!("{e}, and LAB_REQUIRE_EXTERNAL=1")
            }
            Err(e) => eprintln!("skipping: {e}"),
        }
    }
}
