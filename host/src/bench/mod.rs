//! `labctl bench ingest`: pushes synthetic samples through the store's ingest path (producer
//! threads → batches → [`ingest_samples`]) and, in the same run, through a bare DuckDB Appender
//! loop, and prints both rates and their ratio. Also `bench firmware`, `bench mqtt` and
//! `bench memory` (a real `labctl run` as a child, its resident set sampled).

mod kernels;

use crate::units::parse_duration;
use clap::Subcommand;
use std::path::PathBuf;

use std::{
    path::Path,
    process::{Command, Stdio},
    sync::{mpsc, Arc},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use fwcore::{gen, model::Model, quant::Quant};

use crate::store::{append_sample, ingest_samples, SampleRow, Store};

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Live metrics latency: N simulated INA219s sampled by `sense` and published to a broker;
    /// an in-process subscriber measures the age of each batch's newest sample on arrival.
    Mqtt {
        /// The broker, e.g. mqtt://127.0.0.1:1883 (start one with `mosquitto -p 1883`).
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 8)]
        sensors: usize,
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: std::time::Duration,
    },
    /// Firmware inference per quantization, with the per-operator instrumentation on and
    /// compiled out, interleaved in one run: tokens/s and the instrumentation's overhead.
    Firmware {
        /// Model preset.
        #[arg(long, default_value = "stories260k")]
        preset: String,
        /// Tokens generated per measurement (after a 32-token prompt).
        #[arg(long, default_value_t = 200)]
        tokens: usize,
        /// Interleaved rounds of (instrumented, plain) per quantization.
        #[arg(long, default_value_t = 10)]
        rounds: usize,
    },
    /// Host memory of a profiling run: runs `labctl run` on the lab (`--lab`) as a child process,
    /// samples its resident set, and prints the peak against the 50 MB budget with its split into
    /// private (anonymous) memory and file-backed code pages.
    Memory {
        /// Tokens generated per run.
        #[arg(long, default_value_t = 100)]
        tokens: u32,
        /// Measured runs per board.
        #[arg(long, default_value_t = 3)]
        repeat: u32,
        /// The budget the peak is compared with, in MB.
        #[arg(long, default_value_t = 50.0)]
        budget_mb: f64,
    },
    /// Sample ingest: the store path (batches through the writer) vs a bare DuckDB Appender loop.
    Ingest {
        /// Rows per measurement.
        #[arg(long, default_value_t = 2_000_000)]
        rows: usize,
        /// Producer threads feeding the store path (like sensors).
        #[arg(long, default_value_t = 3)]
        producers: usize,
        /// Directory for the two scratch databases (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

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

pub fn cmd_bench(lab: &Path, what: BenchCmd) -> anyhow::Result<()> {
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
        BenchCmd::Mqtt {
            url,
            sensors,
            rate,
            duration,
        } => return bench_mqtt(&url, sensors, rate, duration),
        BenchCmd::Memory {
            tokens,
            repeat,
            budget_mb,
        } => return bench_memory(lab, tokens, repeat, budget_mb),
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
        .ok_or_else(|| crate::error::BadInput(format!("unknown preset {preset:?}")))?;
    let prompt: Vec<u32> = (0..32u32)
        .map(|i| (i * 37 + 11) % p.shape.vocab_size)
        .collect();
    let tokens = tokens.clamp(1, p.shape.seq_len as usize - prompt.len());
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
    // Each kernel against plain C doing the same arithmetic, on a layer-sized matrix.
    println!();
    match kernels::compare(512, 512, 9, 20) {
        Ok(runs) => {
            println!(
                "kernel (512 x 512 matrix-vector)  Rust us   C -O2 us   Rust/C speed   same result"
            );
            for r in runs {
                println!(
                    "{:<33} {:>8.1} {:>10.1} {:>13.2}x   {}",
                    r.quant.name(),
                    r.rust_s * 1e6,
                    r.c_s * 1e6,
                    r.c_s / r.rust_s,
                    if r.equal { "yes" } else { "NO" }
                );
            }
        }
        Err(e) => println!("kernel comparison with C skipped: {e}"),
    }
    Ok(())
}

/// Resident memory of a process from /proc: (anonymous, file-backed) in KiB.
fn rss_split(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((
        field("RssAnon:")?,
        field("RssFile:")? + field("RssShmem:").unwrap_or(0),
    ))
}

/// `labctl bench memory`: one `labctl run` on the lab, its resident set polled every 2 ms; the
/// exact peak comes from the kernel's high-water mark of the waited-for child.
fn bench_memory(lab: &Path, tokens: u32, repeat: u32, budget_mb: f64) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let t0 = Instant::now();
    let mut child = Command::new(&exe)
        .arg("--lab")
        .arg(lab)
        .args(["run", "--tokens", &tokens.to_string()])
        .args(["--repeat", &repeat.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let pid = child.id();
    let mut peak = (0u64, 0u64);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if let Some((a, f)) = rss_split(pid) {
            if a + f > peak.0 + peak.1 {
                peak = (a, f);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let took = t0.elapsed();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read as _;
        let _ = e.read_to_string(&mut err);
    }
    if !status.success() {
        anyhow::bail!("labctl run failed ({status}): {}", err.trim());
    }
    // SAFETY: getrusage only writes the struct it is given.
    let hwm_kb = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru.ru_maxrss as u64
    };
    let mb = |kb: u64| kb as f64 / 1024.0;
    println!(
        "labctl run on {} ({tokens} tokens x {repeat} runs per board) took {:.2} s",
        lab.display(),
        took.as_secs_f64()
    );
    println!(
        "peak RSS {:.1} MB (kernel high-water mark) = {:.2} x the {budget_mb:.0} MB budget",
        mb(hwm_kb),
        mb(hwm_kb) / budget_mb
    );
    if cfg!(debug_assertions) {
        println!("note: this is a debug build of labctl (unoptimised Rust code, DuckDB at -O2); the budget is for the release build (cargo build --release), which builds DuckDB for size");
    }
    println!(
        "at the sampled peak ({:.1} MB): private/anonymous {:.1} MB, file-backed {:.1} MB (clean code and read-only data pages of the binary and libraries: shared with the page cache, dropped under memory pressure)",
        mb(peak.0 + peak.1),
        mb(peak.0),
        mb(peak.1)
    );
    Ok(())
}

/// `labctl bench mqtt`: `sense` on simulated sensors publishing to `url`, measured by a
/// subscriber in this process (its own MQTT connection, through the broker).
fn bench_mqtt(url: &str, sensors: usize, rate: f64, duration: Duration) -> anyhow::Result<()> {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let sensors = sensors.clamp(1, 64);
    let (host, port) = url
        .strip_prefix("mqtt://")
        .and_then(|r| r.rsplit_once(':'))
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| crate::error::BadInput(format!("--url {url}: give mqtt://HOST:PORT")))?;
    let tmp = tempfile::tempdir()?;
    // Four sensors per 400 kHz bus: 1 kHz × 96 bus bits each fits with room to spare.
    let mut lab = format!(
        "name = \"bench\"\n[storage]\npath = \"bench.duckdb\"\n[mqtt]\nmode = \"external\"\nurl = \"{url}\"\n"
    );
    for b in 0..sensors.div_ceil(4) {
        lab.push_str(&format!(
            "[[buses]]\nname = \"bus{b}\"\nsimulated = true\nfrequency_hz = 400000\n"
        ));
    }
    for i in 0..sensors {
        lab.push_str(&format!(
            "[[sensors]]\nname = \"s{i}\"\nchip = \"ina219\"\nbus = \"bus{}\"\naddress = {}\nshunt_ohms = 0.1\nmax_current_a = 0.4\nadc_bits = 9\naveraging = 1\nrate_hz = {rate}\n",
            i / 4,
            0x40 + i % 4
        ));
    }
    let lab_path = tmp.path().join("bench.toml");
    std::fs::write(&lab_path, lab)?;

    let mut opts = MqttOptions::new(
        format!("labctl-bench-sub-{}", std::process::id()),
        host,
        port,
    );
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut conn) = Client::new(opts, 64);
    client.subscribe("labctl/bench/sensors/+/power", QoS::AtLeastOnce)?;
    let ages = Arc::new(std::sync::Mutex::new((Vec::<f64>::new(), 0u64)));
    let a2 = ages.clone();
    let sub = std::thread::spawn(move || {
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let now = crate::clock::unix_ms() as f64;
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p.payload) {
                        let n = v["t_us"].as_array().map_or(0, |a| a.len()) as u64;
                        let newest = v["newest_wall_ms"].as_f64().unwrap_or(now);
                        let mut g = a2.lock().unwrap_or_else(|p| p.into_inner());
                        g.0.push(now - newest);
                        g.1 += n;
                    }
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let args = crate::sense::SenseArgs {
        sensors: vec![],
        rate: None,
        duration: Some(duration),
        json: true,
    };
    let t = Instant::now();
    crate::sense::cmd_sense(&lab_path, args)?;
    let secs = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(1000));
    let _ = client.disconnect();
    let _ = sub.join();
    let (mut ages, received) = std::mem::take(&mut *ages.lock().unwrap_or_else(|p| p.into_inner()));
    anyhow::ensure!(
        !ages.is_empty(),
        "no batch arrived from the broker at {url}"
    );
    ages.sort_by(f64::total_cmp);
    let q = |f: f64| ages[((ages.len() - 1) as f64 * f).round() as usize];
    let conn = duckdb::Connection::open(tmp.path().join("bench.duckdb"))?;
    let stored: i64 = conn.query_row("SELECT count(*) FROM power_samples", [], |r| r.get(0))?;
    println!(
        "{sensors} simulated sensors at {rate} Hz for {:.1} s through {url}",
        duration.as_secs_f64()
    );
    println!("batches received:            {}", ages.len());
    println!(
        "newest-sample age on arrival: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        q(0.5),
        q(0.99),
        ages[ages.len() - 1]
    );
    println!(
        "samples: stored {stored}, received {received} ({:.1} %), sustained {:.0} samples/s published",
        received as f64 / stored.max(1) as f64 * 100.0,
        received as f64 / secs
    );
    Ok(())
}
