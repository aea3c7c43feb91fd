//! `labctl bench ingest`: pushes synthetic samples through the store's ingest path (producer
//! threads → batches → [`ingest_samples`]) and, in the same run, through a bare DuckDB Appender
//! loop, and prints both rates and their ratio.

use std::{
    sync::{mpsc, Arc},
    time::{Duration, Instant},
};

use fwcore::{gen, model::Model, quant::Quant};

use crate::{
    cli::BenchCmd,
    store::{append_sample, ingest_samples, SampleRow, Store},
};

fn synthetic(i: usize, sensor: &Arc<str>, board: &Arc<str>, session: &Arc<str>) -> SampleRow {
    let x = i as f64;
    SampleRow {
        run_id: None,
        session_id: Some(session.clone()),
        sensor: sensor.clone(),
        board: Some(board.clone()),
        t_us: i as i64 * 1000,
        bus_mv: 5000.0 - (x % 7.0),
        shunt_uv: 4000.0 + (x % 13.0),
        current_ma: 40.0 + (x % 13.0) / 100.0,
        power_mw: 200.0 + (x % 11.0),
        simulated: true,
        host_ns: 0,
    }
}

pub fn cmd_bench(what: BenchCmd) -> anyhow::Result<()> {
    let (rows, producers, dir) = match what {
        BenchCmd::Ingest {
            rows,
            producers,
            dir,
        } => (rows, producers, dir),
        BenchCmd::Firmware {
            preset,
            tokens,
            rounds,
        } => return bench_firmware(&preset, tokens, rounds),
    };
    let tmp = tempfile::tempdir()?;
    let dir = dir.unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let producers = producers.max(1);
    let sensor: Arc<str> = "bench".into();
    let board: Arc<str> = "bench-board".into();
    let session: Arc<str> = "bench".into();

    // Bare loop: the same rows, built and appended one by one on one thread.
    let bare_path = dir.join("bench-bare.duckdb");
    let _ = std::fs::remove_file(&bare_path);
    let bare = Store::open(&bare_path, "bench")?;
    let t = Instant::now();
    {
        let mut app = bare.conn.appender("power_samples")?;
        for i in 0..rows {
            append_sample(&mut app, &synthetic(i, &sensor, &board, &session))?;
        }
        app.flush()?;
    }
    let bare_s = t.elapsed().as_secs_f64();
    drop(bare);

    // Store path: producer threads send batches as samplers do; the writer ingests them.
    let pipe_path = dir.join("bench-pipeline.duckdb");
    let _ = std::fs::remove_file(&pipe_path);
    let store = Store::open(&pipe_path, "bench")?;
    let (tx, rx) = mpsc::sync_channel::<Vec<SampleRow>>(256);
    let t = Instant::now();
    let stored = std::thread::scope(|scope| {
        for p in 0..producers {
            let tx = tx.clone();
            let (sensor, board, session) = (sensor.clone(), board.clone(), session.clone());
            scope.spawn(move || {
                let mut batch = Vec::with_capacity(50);
                for i in (p..rows).step_by(producers) {
                    batch.push(synthetic(i, &sensor, &board, &session));
                    if batch.len() == 50 && tx.send(std::mem::take(&mut batch)).is_err() {
                        return;
                    }
                }
                let _ = tx.send(batch);
            });
        }
        drop(tx);
        ingest_samples(&store, &rx, Duration::from_millis(200), |_| {})
    })?;
    let pipe_s = t.elapsed().as_secs_f64();
    let n: i64 = store
        .conn
        .query_row("SELECT count(*) FROM power_samples", [], |r| r.get(0))?;
    drop(store);
    anyhow::ensure!(
        n as usize == rows && stored as usize == rows,
        "store path kept {n} of {rows} rows"
    );

    let bare_rate = rows as f64 / bare_s;
    let pipe_rate = rows as f64 / pipe_s;
    println!("rows per measurement: {rows}; producers: {producers}");
    println!("bare DuckDB Appender loop: {bare_rate:>12.0} rows/s ({bare_s:.2} s)");
    println!("labctl store path:         {pipe_rate:>12.0} rows/s ({pipe_s:.2} s)");
    println!(
        "ratio store/bare:          {:>12.1} %",
        100.0 * pipe_rate / bare_rate
    );
    Ok(())
}

/// `labctl bench firmware`: in-process inference with the instrumentation on and off, rounds
/// interleaved so that both see the same machine state; the medians are compared.
fn bench_firmware(preset: &str, tokens: usize, rounds: usize) -> anyhow::Result<()> {
    let p = gen::Preset::by_name(preset)
        .ok_or_else(|| crate::BadInput(format!("unknown preset {preset:?}")))?;
    let prompt: Vec<u32> = (0..32u32).map(|i| (i * 37 + 11) % p.vocab_size).collect();
    let tokens = tokens.clamp(1, p.seq_len as usize - prompt.len());
    let rounds = rounds.max(1);
    println!(
        "firmware core on this host: preset {preset}, 32-token prompt + {tokens} generated, {rounds} interleaved rounds"
    );
    println!(
        "{:<6} {:>12} {:>12} {:>10}   operator share (matmul/attention/norm/other)",
        "quant", "tok/s plain", "tok/s instr", "overhead"
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for q in Quant::ALL {
        let bytes = gen::generate(&p.config(q), crate::model::DEFAULT_SEED);
        let m = Model::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
        let run = |instr| {
            gen::timed_generation(&m, &prompt, tokens, instr).map_err(|e| anyhow::anyhow!("{e:?}"))
        };
        run(false)?; // warm caches
        let (mut on, mut off) = (vec![], vec![]);
        let mut ops = fwcore::infer::OpCycles::default();
        for r in 0..rounds {
            // Alternate which goes first, so drift in machine state hits both alike.
            let order = if r % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for instr in order {
                let (d, o) = run(instr)?;
                if instr {
                    on.push(d.as_secs_f64());
                    ops = o;
                } else {
                    off.push(d.as_secs_f64());
                }
            }
        }
        let (t_on, t_off) = (median(&mut on), median(&mut off));
        let n = (prompt.len() + tokens - 1) as f64;
        let total = (ops.matmul + ops.attention + ops.norm + ops.other).max(1) as f64;
        println!(
            "{:<6} {:>12.1} {:>12.1} {:>9.2}%   {:.0}/{:.0}/{:.0}/{:.0} %",
            q.name(),
            n / t_off,
            n / t_on,
            (t_on / t_off - 1.0) * 100.0,
            ops.matmul as f64 / total * 100.0,
            ops.attention as f64 / total * 100.0,
            ops.norm as f64 / total * 100.0,
            ops.other as f64 / total * 100.0,
        );
    }
    println!("(tok/s counts every forward pass, prompt and generated; medians of the rounds)");
    Ok(())
}
