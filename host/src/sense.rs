//! `labctl sense`: one sampling thread per sensor ([`crate::sample`]), every sample appended to
//! `power_samples` through the store's ingest path, with a live view (updating lines on a
//! terminal, plain or JSON lines otherwise). Ctrl-C or SIGTERM stops the samplers; everything
//! measured is flushed before exit.

use crate::units::parse_duration;
use clap::Args;

use std::{
    io::{IsTerminal, Write},
    sync::{atomic::Ordering, mpsc, Arc},
    time::{Duration, Instant},
};

use crate::{
    clock,
    error::{BadInput, Failed},
    plugins::Catalog,
    records::Record,
    rig::{Rig, Runtime},
    sample::{sample_loop, stamp_from, Meta, Report, Stamp},
    shutdown::stop_flag,
    store::{ingest_samples, tee, SampleRow, Store, LIVE_TICK},
};

#[derive(Args, Debug)]
pub struct SenseArgs {
    /// Only these sensors (repeatable); default all.
    #[arg(long = "sensor")]
    pub sensors: Vec<String>,
    /// Sample rate for every sensor, overriding the lab file's rate_hz.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Stop after this long (e.g. 5s, 2m); default: until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Print one JSON object per sensor per second instead of the live view.
    #[arg(long)]
    pub json: bool,
}

/// Per-sensor figures for the live view.
struct Live {
    name: Arc<str>,
    last: Option<SampleRow>,
    count: u64,
    /// (t_us, count) at the start of the rate window: rates come from sample timestamps, not
    /// from when batches arrive.
    window_start: (i64, u64),
    rate: f64,
}

struct View {
    tty: bool,
    json: bool,
    sensors: Vec<Live>,
    drawn: bool,
    last_draw: Instant,
}

impl View {
    fn update(&mut self, batch: &[SampleRow]) {
        for s in batch {
            if let Some(l) = self.sensors.iter_mut().find(|l| l.name == s.sensor) {
                l.count += 1;
                l.last = Some(s.clone());
            }
        }
        let every = if self.tty && !self.json {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(1)
        };
        if self.last_draw.elapsed() >= every {
            self.draw();
        }
    }

    fn draw(&mut self) {
        let now = Instant::now();
        for l in &mut self.sensors {
            let (t, c) = l.window_start;
            let Some(last) = &l.last else { continue };
            let dt = (last.t_us - t) as f64 / 1e6;
            if dt >= 0.5 {
                l.rate = (l.count - c) as f64 / dt;
                l.window_start = (last.t_us, l.count);
            }
        }
        let mut out = std::io::stdout().lock();
        if self.tty && !self.json && self.drawn {
            let _ = write!(out, "\x1b[{}A", self.sensors.len());
        }
        for l in &self.sensors {
            if self.json {
                let v = serde_json::json!({
                    "sensor": &*l.name,
                    "samples": l.count,
                    "rate_hz": (l.rate * 10.0).round() / 10.0,
                    "t_us": l.last.as_ref().map(|s| s.t_us),
                    "bus_mv": l.last.as_ref().map(|s| s.bus_mv),
                    "current_ma": l.last.as_ref().map(|s| s.current_ma),
                    "power_mw": l.last.as_ref().map(|s| s.power_mw),
                });
                let _ = writeln!(out, "{v}");
                continue;
            }
            let line = match &l.last {
                Some(s) => format!(
                    "{:<16} {:>7.3} V {:>9.3} mA {:>9.2} mW  {:>8} samples {:>7.1} Hz",
                    l.name,
                    s.bus_mv / 1000.0,
                    s.current_ma,
                    s.power_mw,
                    l.count,
                    l.rate
                ),
                None => format!("{:<16} waiting for the first sample", l.name),
            };
            if self.tty {
                let _ = writeln!(out, "\x1b[2K{line}");
            } else {
                let _ = writeln!(out, "{line}");
            }
        }
        let _ = out.flush();
        self.drawn = true;
        self.last_draw = now;
    }
}

/// `labctl sense`
pub fn cmd_sense(lab_path: &std::path::Path, args: SenseArgs) -> anyhow::Result<()> {
    let mut rt = Runtime::open(lab_path)?;
    for name in &args.sensors {
        crate::lab::sensor_named(&rt.lab, name)?;
    }
    let selected: Vec<String> = rt
        .lab
        .sensors
        .iter()
        .filter(|s| args.sensors.is_empty() || args.sensors.contains(&s.name))
        .map(|s| s.name.clone())
        .collect();
    if selected.is_empty() {
        return Err(BadInput(format!("{} defines no sensors", rt.lab.file.display())).into());
    }
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(BadInput(format!("--rate {rate}: give a positive rate in Hz")).into());
        }
        // The override must pass the same chip and bus checks as the lab file's rates.
        rt.lab.sensors.retain(|s| selected.contains(&s.name));
        for s in &mut rt.lab.sensors {
            s.rate_hz = rate;
        }
        let errors: Vec<String> = rt
            .lab
            .check_with(&Catalog(&rt.plugins))
            .iter()
            .filter(|e| e.kind == lab_config::ErrorKind::Invalid)
            .map(|e| format!("--rate {rate}: {}", e.message))
            .collect();
        if !errors.is_empty() {
            return Err(BadInput(errors.join("\n")).into());
        }
    }
    let stop = stop_flag()?;

    // Open every selected sensor chip (the channels of a multi-channel chip together, one
    // sampler each); an unusable one is reported and skipped.
    let mut rig = Rig::new(&rt);
    let mut opened: Vec<(labctl_plugin_api::PowerSensorBox, Vec<Meta>)> = vec![];
    let mut unusable = vec![];
    for chip in crate::rig::chips(&rt.lab, &selected) {
        let sensors: Vec<lab_config::Sensor> = chip.into_iter().cloned().collect();
        let rate = sensors.iter().map(|s| s.rate_hz).fold(0.0, f64::max);
        match rig.open_chip(&rt, &sensors, rate) {
            Ok(dev) => opened.push((
                dev,
                sensors
                    .iter()
                    .map(|s| Meta {
                        name: s.name.as_str().into(),
                        board: rt
                            .lab
                            .board_of_sensor(&s.name)
                            .map(|b| b.name.as_str().into()),
                        simulated: rt.sensor_is_simulated(s),
                        rate_hz: rate,
                    })
                    .collect(),
            )),
            Err(why) => {
                for s in &sensors {
                    eprintln!("sensor {}: unusable: {why}", s.name);
                    unusable.push(format!("{}: {why}", s.name));
                }
            }
        }
    }
    if opened.is_empty() {
        return Err(Failed(format!("no usable sensor ({})", unusable.join("; "))).into());
    }

    let store = Store::open(&rt.lab.storage_path, "sense")?;
    // The lab's online/offline status belongs to `serve` while it runs.
    let announce = crate::control::serve_pid(&rt.lab).is_none();
    let mqtt = crate::mqtt::Publisher::connect(&rt.lab, "sense", announce);
    if let Some(m) = &mqtt {
        eprintln!(
            "publishing live readings to {} under {}/",
            m.describe,
            m.prefix()
        );
    }
    let session: Arc<str> = format!("sense-{}", clock::unix_ms()).into();
    // Every channel's (name, rate); reports come per chip and are shown per channel.
    let channels: Vec<(Arc<str>, f64, usize)> = opened
        .iter()
        .enumerate()
        .flat_map(|(i, (_, ms))| ms.iter().map(move |m| (m.name.clone(), m.rate_hz, i)))
        .collect();
    let names: Vec<&str> = channels.iter().map(|c| &*c.0).collect();
    let all_sim = opened.iter().all(|(_, ms)| ms.iter().all(|m| m.simulated));
    store.write(&Record::SenseStart {
        session_id: session.clone(),
        sensors: names.join(","),
        rate_hz: args.rate,
        simulated: all_sim,
    })?;
    let tty = std::io::stdout().is_terminal();
    eprintln!(
        "sensing {} sensor(s) into {} (session {session}){}",
        channels.len(),
        rt.lab.storage_path.display(),
        match args.duration {
            Some(d) => format!(" for {:.1} s", d.as_secs_f64()),
            None => ", Ctrl-C to stop".into(),
        }
    );

    let start = Instant::now();
    let end = args.duration.map(|d| start + d);
    let (tx, rx) = mpsc::channel::<Vec<SampleRow>>();
    let stamp = stamp_from(start);
    let mut view = View {
        tty,
        json: args.json,
        sensors: channels
            .iter()
            .map(|(name, _, _)| Live {
                name: name.clone(),
                last: None,
                count: 0,
                window_start: (0, 0),
                rate: 0.0,
            })
            .collect(),
        drawn: false,
        last_draw: start,
    };
    let (stored, reports) = std::thread::scope(|scope| {
        let handles: Vec<_> = opened
            .into_iter()
            .map(|(dev, metas)| {
                let tx = tx.clone();
                let session = session.clone();
                let stop = &stop;
                let stamp = &stamp;
                std::thread::Builder::new()
                    .name(format!("sample-{}", metas[0].name))
                    .spawn_scoped(scope, move || {
                        let stamps: Vec<Stamp<'_>> =
                            metas.iter().map(|_| stamp as Stamp<'_>).collect();
                        sample_loop(dev, &metas, session, start, end, stop, &stamps, tx)
                    })
                    .expect("spawn sampler thread")
            })
            .collect();
        drop(tx);
        // MQTT gets each batch as it arrives, not after DuckDB has committed it.
        let rx = match &mqtt {
            Some(m) => tee(
                scope,
                rx,
                LIVE_TICK,
                move |b| m.samples(b.map_or(&[], |b| b)),
                move || m.flush(),
            ),
            None => rx,
        };
        let stored = ingest_samples(&store, &rx, Duration::from_millis(200), |b| view.update(b));
        if stored.is_err() {
            // Storage failed: stop sampling, nothing more can be kept.
            stop.store(true, Ordering::Relaxed);
        }
        let reports: Vec<Report> = handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| Report {
                    failed: Some("sampler thread panicked".into()),
                    ..Default::default()
                })
            })
            .collect();
        (stored, reports)
    });
    view.draw();
    let elapsed = start.elapsed().as_secs_f64();
    let stored = stored?;
    let interrupted = stop.load(Ordering::Relaxed);
    let missed: u64 = reports.iter().map(|r| r.missed).sum();
    let mut failures: Vec<String> = unusable;
    for (name, _, chip) in &channels {
        if let Some(f) = &reports[*chip].failed {
            failures.push(format!("{name}: {f}"));
        }
    }
    let status = if interrupted {
        "aborted"
    } else if failures.is_empty() {
        "ok"
    } else {
        "failed"
    };
    store.write(&Record::SenseEnd {
        session_id: session.clone(),
        samples: stored as i64,
        missed: missed as i64,
        status,
        error: (!failures.is_empty()).then(|| failures.join("; ")),
    })?;
    drop(store);
    if let Some(m) = &mqtt {
        m.close();
        let lost: u64 = m.undelivered().values().map(|u| u.samples).sum();
        if lost > 0 {
            eprintln!("MQTT: {lost} sample(s) could not be published while the broker was unreachable (all are stored)");
        }
    }
    eprintln!("stored {stored} samples in {elapsed:.2} s (session {session}, status {status})");
    for (name, rate, chip) in &channels {
        let r = &reports[*chip];
        eprintln!(
            "  {:<16} {:>8} samples  {:>7.1} Hz of {:.0} Hz  missed {}  read errors {}{}",
            name,
            r.samples,
            r.samples as f64 / elapsed.max(1e-9),
            rate,
            r.missed,
            r.errors,
            r.failed
                .as_ref()
                .map(|f| format!("  FAILED: {f}"))
                .unwrap_or_default()
        );
    }
    if interrupted {
        return Err(Failed(format!(
            "interrupted: {stored} samples measured so far are stored"
        ))
        .into());
    }
    if !failures.is_empty() {
        return Err(Failed(format!("some sensors failed: {}", failures.join("; "))).into());
    }
    Ok(())
}
