//! `labctl serve`: the headless daemon. It keeps an MQTT connection (hosting the embedded broker
//! when the lab says so), takes profiling jobs as JSON on `<prefix>/jobs/<job_id>`, checks them,
//! runs them one at a time through the same path as `labctl run`, and answers on
//! `<prefix>/jobs/<job_id>/status`. Nothing a client sends can stop it; SIGTERM or Ctrl-C
//! finishes the bookkeeping of the current run (marked `aborted`) and exits cleanly.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc::RecvTimeoutError,
        Arc, Mutex,
    },
    time::Duration,
};

pub mod job;

use crate::{
    control,
    error::BadInput,
    error::Failed,
    lab,
    mqtt::{JobStatusMsg, Publisher},
    run,
    shutdown::stop_flag,
};

/// `labctl serve`
/// Why a queued job did not run.
const STOPPING: &str = "labctl serve stopped before the job ran";

pub fn cmd_serve(lab_path: &Path) -> anyhow::Result<()> {
    let lab = lab::load(lab_path)?;
    let Some(m) = &lab.mqtt else {
        return Err(BadInput(format!(
            "{}: labctl serve takes its jobs over MQTT; add an [mqtt] section (docs/mqtt.md)",
            lab.file.display()
        ))
        .into());
    };
    let prefix = m.prefix.trim_end_matches('/').to_string();
    let jobs = format!("{prefix}/jobs/+");
    let control = format!("{prefix}/control/+");
    if let Some(pid) = control::serve_pid(&lab) {
        return Err(Failed(format!(
            "labctl serve already runs for this lab (pid {pid})"
        ))
        .into());
    }
    let stop = stop_flag()?;
    let _marker = control::ServeMarker::create(&lab);
    let (mqtt, inbox) =
        Publisher::connect_with_inbox(&lab, "serve", true, vec![jobs.clone(), control.clone()])
            .map_err(|e| Failed(format!("MQTT: {e}")))?;
    eprintln!(
        "labctl serve: lab {:?}, {}; jobs on {jobs}, replies on …/jobs/<job_id>/status",
        lab.name, mqtt.describe
    );
    // Control requests (power, boards) are answered at once by the dispatcher, even while a
    // job runs. Jobs are checked there too (a bad one is rejected at once) and, when good,
    // acknowledged as `queued` with how many are ahead; the main loop runs them one at a time.
    let busy: control::Busy = Default::default();
    let limits = job::Limits {
        models_dir: lab.models_dir.clone(),
        max_model_bytes: crate::plugins::Plugins::load(lab.plugin_dirs.as_deref())
            .loaded
            .iter()
            .flat_map(|p| p.profiles.iter().map(|pr| pr.flash_bytes()))
            .max()
            .unwrap_or(0),
    };
    let waiting = Arc::new(AtomicUsize::new(0));
    // Taken while a job is acknowledged and queued, and while the queue is closed at shutdown, so
    // that no job is acknowledged as `queued` and then silently dropped.
    let closing = Arc::new(Mutex::new(false));
    let (job_tx, job_rx) = std::sync::mpsc::channel::<(String, run::Plan)>();
    let dispatcher = {
        let (mqtt, busy, path) = (mqtt.clone(), busy.clone(), lab_path.to_path_buf());
        let (waiting, closing) = (waiting.clone(), closing.clone());
        let control_prefix = format!("{prefix}/control/");
        std::thread::Builder::new()
            .name("serve-dispatch".into())
            .spawn(move || {
                for (topic, payload) in inbox {
                    if topic.starts_with(&control_prefix) {
                        control::handle(&path, &mqtt, &busy, &topic, &payload);
                        continue;
                    }
                    let id = topic.rsplit('/').next().unwrap_or("").to_string();
                    let Some(plan) = accept(&path, &limits, &mqtt, &id, &payload) else {
                        continue;
                    };
                    let closed = closing.lock().unwrap_or_else(|p| p.into_inner());
                    if *closed {
                        mqtt.job_status(&JobStatusMsg {
                            job_id: &id,
                            status: "aborted",
                            error: Some(STOPPING.into()),
                            ..Default::default()
                        });
                        continue;
                    }
                    let ahead = waiting.fetch_add(1, Ordering::SeqCst);
                    mqtt.job_status(&JobStatusMsg {
                        job_id: &id,
                        status: "queued",
                        ahead: Some(ahead),
                        ..Default::default()
                    });
                    if job_tx.send((id, plan)).is_err() {
                        break;
                    }
                    drop(closed);
                }
            })?
    };
    while !stop.load(Ordering::Relaxed) {
        match job_rx.recv_timeout(Duration::from_millis(250)) {
            Ok((id, plan)) => {
                run_job(&mqtt, &busy, &stop, &id, plan);
                waiting.fetch_sub(1, Ordering::SeqCst);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    // Jobs still waiting were acknowledged as `queued`: tell their clients they will not run.
    // Closing under the lock means no job is between its acknowledgement and the queue.
    *closing.lock().unwrap_or_else(|p| p.into_inner()) = true;
    while let Ok((id, _)) = job_rx.try_recv() {
        eprintln!("job {id}: not run, the daemon is stopping");
        mqtt.job_status(&JobStatusMsg {
            job_id: &id,
            status: "aborted",
            error: Some(STOPPING.into()),
            ..Default::default()
        });
    }
    eprintln!("labctl serve: stopping");
    mqtt.close();
    drop(dispatcher);
    Ok(())
}

/// Checks a job as `labctl run` checks its arguments, before any board is powered: the plan to
/// run, or None after a `rejected` reply.
fn accept(
    lab_path: &Path,
    limits: &job::Limits,
    mqtt: &Arc<Publisher>,
    id: &str,
    payload: &[u8],
) -> Option<run::Plan> {
    let reject = |why: String| {
        eprintln!("job {id}: rejected: {why}");
        mqtt.job_status(&JobStatusMsg {
            job_id: id,
            status: "rejected",
            error: Some(why),
            ..Default::default()
        });
    };
    let args = match job::parse(payload, limits) {
        Ok(a) => a,
        Err(why) => {
            reject(why);
            return None;
        }
    };
    match run::plan(lab_path, args) {
        Ok(p) => Some(p),
        Err(e) => {
            reject(format!("{e:#}"));
            None
        }
    }
}

fn run_job(
    mqtt: &Arc<Publisher>,
    busy: &control::Busy,
    stop: &std::sync::atomic::AtomicBool,
    id: &str,
    plan: run::Plan,
) {
    let reply = |v: JobStatusMsg<'_>| mqtt.job_status(&v);
    eprintln!("job {id}: running");
    reply(JobStatusMsg {
        job_id: id,
        status: "running",
        ..Default::default()
    });
    let boards = plan.board_names();
    {
        let mut b = busy.lock().unwrap_or_else(|p| p.into_inner());
        for name in &boards {
            b.insert(name.clone(), id.to_string());
        }
    }
    let result = run::execute(plan, stop, Some(mqtt));
    {
        let mut b = busy.lock().unwrap_or_else(|p| p.into_inner());
        for name in &boards {
            b.remove(name);
        }
    }
    match result {
        Ok(out) => {
            let verdict = out.verdict();
            let status = match &verdict {
                Ok(()) => "done",
                Err(_) if out.interrupted => "aborted",
                Err(_) => "failed",
            };
            eprintln!("job {id}: {status} ({} run(s))", out.rows.len());
            reply(JobStatusMsg {
                job_id: id,
                status,
                runs: Some(&out.rows),
                // Which runs were not ok and why, one entry per board and reason.
                error: verdict.err().map(|e| format!("{e:#}")),
                ..Default::default()
            });
        }
        Err(e) => {
            let why = format!("{e:#}");
            eprintln!("job {id}: failed: {why}");
            reply(JobStatusMsg {
                job_id: id,
                status: "failed",
                error: Some(why),
                ..Default::default()
            });
        }
    }
}
