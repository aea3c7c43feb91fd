//! Running a planned job: every board on its own thread, one writer, the publisher fed from the
//! same records; quantization accuracy when asked.

use std::{
    io::IsTerminal,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::Context;

use crate::{
    clock,
    model::{self},
    mqtt::Publisher,
    records::{BoardState, Record, RunEnd, RunStart},
    rig::Rig,
    sample::Meta,
    store::{ingest, tee, Rec, Store, LIVE_TICK},
    window::Window,
};

use super::*;

/// Runs a planned job: every board in parallel, one writer, MQTT when given. Stops early (runs
/// `aborted`) when `stop` is raised.
pub fn execute(
    plan: Plan,
    stop: &AtomicBool,
    mqtt: Option<&Arc<Publisher>>,
) -> anyhow::Result<JobOutcome> {
    let Plan {
        rt,
        boards,
        plans,
        args,
    } = plan;
    let mqtt = mqtt.cloned();
    let firmware = find_firmware();
    let store = Store::open(&rt.lab.storage_path, "run")?;
    let floors = store.floors();
    let batch = format!("run-{}", clock::unix_ms());
    let mut rig = Rig::new(&rt);
    let progress = Progress {
        lines: Mutex::new(
            boards
                .iter()
                .map(|b| Line {
                    board: b.name.clone(),
                    state: "waiting".into(),
                    ..Default::default()
                })
                .collect(),
        ),
        tty: std::io::stderr().is_terminal(),
        drawn: Mutex::new((false, Instant::now())),
    };
    eprintln!(
        "profiling {} model(s) on {} board(s) into {} (batch {batch}){}",
        plans.len(),
        boards.len(),
        rt.lab.storage_path.display(),
        if progress.tty { ", Ctrl-C to stop" } else { "" }
    );
    let (tx, rx) = mpsc::channel::<Rec>();
    let mut jobs = vec![];
    let mut early: Vec<Arc<str>> = vec![];
    // Sensors that are channels of one multi-channel chip with other boards of this run are
    // sampled together, by one thread per chip (below); the others by their board.
    let runnable: Vec<String> = boards
        .iter()
        .filter(|b| {
            !rt.board_faults.contains_key(&b.name)
                && rt.plugins.profile(&b.platform, &b.profile).is_some()
        })
        .filter_map(|b| b.sensor.clone())
        .collect();
    let shared_chips: Vec<Vec<lab_config::Sensor>> = crate::rig::chips(&rt.lab, &runnable)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| c.into_iter().cloned().collect())
        .collect();
    let chip_of = |sensor: &str| {
        shared_chips
            .iter()
            .position(|c| c.iter().any(|s| s.name == sensor))
    };
    for b in &boards {
        // A quarantined board takes no runs until released; a missing plugin runs nothing.
        let fault = crate::quarantine::of(&rt.lab, &b.name)
            .map(|q| ("quarantined", crate::quarantine::why(&b.name, &q)))
            .or_else(|| rt.board_faults.get(&b.name).map(|f| ("plugin", f.clone())));
        let api = rt.plugins.platform(&b.platform);
        let profile = rt.plugins.profile(&b.platform, &b.profile);
        let (Some(api), Some(profile), None) = (api, profile, fault.clone()) else {
            let (code, why) = fault.unwrap_or_else(|| {
                (
                    "plugin",
                    format!("platform {:?} has no profile {:?}", b.platform, b.profile),
                )
            });
            progress.note(&format!("{}: faulted: {why}", b.name));
            for (i, m) in plans.iter().enumerate() {
                let id: Arc<str> = format!("{batch}-{}-m{i}-r0", b.name).into();
                let _ = tx.send(Rec::Run(Box::new(Record::Start(Box::new(RunStart {
                    run_id: id.clone(),
                    board: b.name.clone(),
                    platform: b.platform.clone(),
                    profile: b.profile.clone(),
                    batch_id: batch.clone(),
                    ..m.run_start()
                })))));
                let _ = tx.send(Rec::Run(Box::new(Record::End(RunEnd {
                    run_id: id.clone(),
                    status: "error",
                    error: Some(why.clone()),
                    reason_code: Some(code),
                    ..Default::default()
                }))));
                early.push(id);
            }
            continue;
        };
        let mut sensor = None;
        let mut rail = None;
        let share = b.sensor.as_deref().and_then(chip_of);
        if let (Some(sname), None) = (&b.sensor, share) {
            let s = rt
                .lab
                .sensor(sname)
                .cloned()
                .context("sensor checked by config")?;
            match rig.open_sensor(&rt, &s, s.rate_hz) {
                Ok(dev) => {
                    rail = rig.rails.get(&s.name).cloned();
                    sensor = Some((
                        dev,
                        Meta {
                            name: s.name.as_str().into(),
                            board: Some(b.name.as_str().into()),
                            simulated: rt.sensor_is_simulated(&s),
                            rate_hz: s.rate_hz,
                        },
                    ));
                }
                Err(why) => progress.note(&format!(
                    "{}: sensor {sname} unusable, running without power data: {why}",
                    b.name
                )),
            }
        }
        let plugin_version = rt
            .plugins
            .platform(&b.platform)
            .map(|p| p.version.clone())
            .unwrap_or_default();
        jobs.push((
            b.clone(),
            profile,
            api.platform.expect("platform plugin"),
            plugin_version,
            sensor,
            rail,
            share,
        ));
    }
    // Open each shared chip once, with a window per board it measures.
    let start = Instant::now();
    let mut shares: Vec<Option<Arc<ChipShare>>> = vec![];
    for chip in &shared_chips {
        let rate = chip.iter().map(|s| s.rate_hz).fold(0.0, f64::max);
        let period = Duration::try_from_secs_f64(1.0 / rate).ok();
        match rig.open_chip(&rt, chip, rate) {
            Ok(dev) => {
                let metas = chip
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
                    .collect();
                let boards: Vec<String> = chip
                    .iter()
                    .filter_map(|s| rt.lab.board_of_sensor(&s.name).map(|b| b.name.clone()))
                    .collect();
                shares.push(Some(Arc::new(ChipShare {
                    dev: Mutex::new(Some(dev)),
                    metas,
                    windows: chip
                        .iter()
                        .map(|_| Arc::new(Window::new(period, start)))
                        .collect(),
                    remaining: std::sync::atomic::AtomicUsize::new(boards.len()),
                    stop: AtomicBool::new(false),
                    boards,
                    start,
                })));
            }
            Err(why) => {
                let names: Vec<&str> = chip.iter().map(|s| s.name.as_str()).collect();
                progress.note(&format!(
                    "sensor chip {} unusable, its boards run without power data: {why}",
                    names.join("+")
                ));
                shares.push(None);
            }
        }
    }
    // A board on a shared chip drives its own channel's simulated rail.
    for job in jobs.iter_mut() {
        if let (Some(i), Some(s)) = (job.6, &job.0.sensor) {
            if shares[i].is_some() {
                job.5 = rig.rails.get(s).cloned();
            }
        }
    }
    let ids = std::thread::scope(|scope| {
        // One sampler per shared chip, for as long as any of its boards runs.
        let chip_samplers: Vec<_> = shares
            .iter()
            .flatten()
            .map(|share| {
                let share = share.clone();
                let tx = tx.clone();
                let session: Arc<str> = format!("{batch}-{}", share.boards.join("+")).into();
                let progress = &progress;
                std::thread::Builder::new()
                    .name(format!("sample-{}", share.metas[0].name))
                    .spawn_scoped(scope, move || share.sample(session, tx, progress))
                    .expect("spawn chip sampler")
            })
            .collect();
        let handles: Vec<_> = jobs
            .into_iter()
            .map(
                |(board, profile, platform, plugin_version, sensor, rail, share)| {
                    let shared = share.and_then(|i| shares[i].clone()).map(|s| {
                        let ch = s
                            .metas
                            .iter()
                            .position(|m| m.board.as_deref() == Some(board.name.as_str()))
                            .unwrap_or(0);
                        (s.windows[ch].clone(), s)
                    });
                    let job = BoardJob {
                        board,
                        profile,
                        platform,
                        plugin_version,
                        sensor,
                        rail,
                        models: &plans,
                        args: &args,
                        batch: &batch,
                        firmware: &firmware,
                        stop,
                        progress: &progress,
                        lab: &rt.lab,
                        plugins: &rt.plugins,
                        tx: tx.clone(),
                        mqtt: mqtt.clone(),
                        bstate: std::cell::Cell::new(BoardState::Off),
                        last_fault: std::cell::RefCell::new(None),
                        shared,
                    };
                    std::thread::Builder::new()
                        .name(format!("board-{}", job.board.name))
                        .spawn_scoped(scope, move || job.run())
                        .expect("spawn board thread")
                },
            )
            .collect();
        drop(tx);
        // The publisher gets every record the writer gets, as it arrives (not after DuckDB has
        // committed it, which now and then takes tens of milliseconds).
        let rx = match &mqtt {
            Some(m) => tee(
                scope,
                rx,
                LIVE_TICK,
                move |r| match r {
                    Some(Rec::Samples(b)) => m.samples(b),
                    Some(Rec::Tokens(t)) => m.tokens(t),
                    _ => m.samples(&[]),
                },
                move || m.flush(),
            ),
            None => rx,
        };
        let stored = ingest(&store, &rx, Duration::from_millis(200), |_| {
            progress.draw(false)
        });
        if stored.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let mut ids = early.clone();
        for h in handles {
            ids.extend(h.join().unwrap_or_default());
        }
        for h in chip_samplers {
            let _ = h.join();
        }
        stored.map(|s| (ids, s))
    });
    progress.draw(true);
    let (ids, stored) = ids?;
    for e in &stored.exec_errors {
        eprintln!("warning: a run record could not be stored: {e}");
    }
    // Everything of the batch is stored: its runs' checksums go into their manifests.
    store.after_ingest();
    if let Err(e) = store.seal(&batch, floors) {
        eprintln!("warning: the runs' checksums could not be stored: {e}");
    }
    if args.validate && !stop.load(Ordering::Relaxed) {
        validate_into(&store, &plans, &batch, args.json)?;
    }
    if let Some(m) = &mqtt {
        m.flush();
        for (run, u) in m.take_undelivered_runs() {
            store.write(&Record::Undelivered {
                run_id: run.clone(),
                messages: u.messages as i64,
                samples: u.samples as i64,
            })?;
        }
    }
    let rows = summary(&store, &ids, &batch)?;
    drop(store);
    if let Some(m) = &mqtt {
        for r in &rows {
            m.summary(&r.run_id, &serde_json::to_value(r)?);
        }
    }
    Ok(JobOutcome {
        rows,
        interrupted: stop.load(Ordering::Relaxed),
        storage: rt.lab.storage_path.clone(),
    })
}

/// Quantization accuracy of every quantization of the run's models vs f32: a generated model's
/// master weights, or an imported model's source (named by its card).
fn validate_into(
    store: &Store,
    plans: &[Arc<ModelPlan>],
    batch: &str,
    json: bool,
) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for p in plans {
        let cfg = p.file.cfg;
        let key = match &p.card {
            Some(c) => c.source.sha256.clone(),
            None => format!(
                "{}/{}/{}/{}",
                cfg.dim, cfg.n_layers, cfg.vocab_size, p.file.seed
            ),
        };
        if p.file.seed == 0 && p.card.is_none() {
            eprintln!(
                "{}: neither generated by labctl nor imported (no card): no f32 reference, skipped --validate",
                p.file.path.display()
            );
            continue;
        }
        if !seen.insert(key) {
            continue;
        }
        let gen = model::VALIDATE_TOKENS
            .min(cfg.seq_len as usize - p.prompt_ids.len().min(cfg.seq_len as usize));
        eprintln!(
            "validating quantizations of {} (teacher forcing)…",
            p.file.name()
        );
        let rows = match &p.card {
            Some(c) => {
                match model::from_file::validate_imported(&p.file, c, None, &p.prompt_ids, gen) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("{}: skipped --validate: {e:#}", p.file.name());
                        continue;
                    }
                }
            }
            None => model::validate(&cfg, p.file.seed, &p.prompt_ids, gen),
        };
        for (q, a) in &rows {
            store.write(&Record::QuantAccuracy {
                batch_id: batch.to_string(),
                model: p.file.name(),
                quant: q.name().to_string(),
                prompt_tokens: p.prompt_ids.len() as i32,
                positions: a.positions as i32,
                top1: a.top1,
                mean_kl: a.mean_kl,
            })?;
        }
        if !json {
            model::print_validation(&rows, false)?;
        }
    }
    Ok(())
}
