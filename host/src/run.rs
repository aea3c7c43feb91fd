//! `labctl run`: profiles models on boards, all boards in parallel. Per board and model: relay on
//! → the platform plugin boots the board (for `virtual`: the posix firmware behind a pty) →
//! handshake → warm-up and measured runs (prompt, token events, operator breakdown, memory) while
//! the board's sensor samples its supply → power off. One writer stores everything; a summary of
//! `run_summary` is printed at the end.
//!
//! Clocks (docs/running.md): t = 0 is the host instant just before the prompt's first byte is
//! written. Sensor samples are stamped on the host clock directly. Token events carry the board's
//! own microsecond clock; they are mapped to the host clock with the line that fits
//! (host receive time − board time) over the run, shifted down onto its fastest frame, and the
//! spread of the others above that line is stored as the alignment error.

use std::{
    collections::HashMap,
    io::IsTerminal,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    time::{Duration, Instant},
};

use abi_stable::std_types::{RNone, ROption, RSome};
use anyhow::Context;
use duckdb::params;
use fwcore::proto::PROTOCOL_VERSION;
use lab_config::Board;
use labctl_plugin_api::{
    profile::Profile, BoardSessionBox, BoardSpec, ErrorKind, PlatformApiRef, PowerSensorBox,
};

use crate::{
    cli::RunArgs,
    clock,
    console::{self, Link, LinkEnd, RxFrame},
    error::BadInput,
    error::Failed,
    lab::{Rig, Runtime},
    model::{self, ModelFile},
    mqtt::Publisher,
    plugins::exe_dir,
    rails::Rail,
    relay,
    sample::{sample_loop, Meta},
    shutdown::stop_flag,
    store::{ingest, tee, Rec, Store, TokenRow, LIVE_TICK},
    window::Window,
};

/// Name of the posix firmware program, found beside `labctl` (or in its `firmware/` folder).
pub const POSIX_FIRMWARE: &str = "labctl-fw-posix";
/// How long a `reset = "power-cycle"` keeps the supply off: long enough for a board's
/// regulators and brown-out detector to see it.
const POWER_CYCLE_OFF: Duration = Duration::from_millis(500);
/// Prompt ids per `IDS` frame (the firmware's limit).
const IDS_PER_FRAME: usize = fwcore::fw::IDS_PER_FRAME;

/// Where the posix firmware is: beside labctl, or in its `firmware/` subfolder.
pub fn find_firmware() -> PathBuf {
    let dir = exe_dir();
    let beside = dir.join(POSIX_FIRMWARE);
    if beside.is_file() {
        return beside;
    }
    dir.join("firmware").join(POSIX_FIRMWARE)
}

/// What a board thread shows on the progress display.
#[derive(Clone, Default)]
struct Line {
    board: String,
    state: String,
    done: u32,
    total: u32,
}

/// Shared progress of every board, drawn on stderr when it is a terminal.
struct Progress {
    lines: Mutex<Vec<Line>>,
    tty: bool,
    drawn: Mutex<(bool, Instant)>,
}

impl Progress {
    fn set(&self, board: &str, state: impl Into<String>, done: u32, total: u32) {
        let state = state.into();
        let mut l = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(x) = l.iter_mut().find(|x| x.board == board) {
            x.state = state;
            x.done = done;
            x.total = total;
        }
    }

    /// A line that stays (run finished, board failed): printed above the live lines.
    fn note(&self, msg: &str) {
        let mut d = self.drawn.lock().unwrap_or_else(|p| p.into_inner());
        if self.tty && d.0 {
            let n = self.lines.lock().map(|l| l.len()).unwrap_or(0);
            eprint!("\x1b[{n}A\x1b[J");
            d.0 = false;
        }
        eprintln!("{msg}");
    }

    fn draw(&self, force: bool) {
        if !self.tty {
            return;
        }
        let mut d = self.drawn.lock().unwrap_or_else(|p| p.into_inner());
        if !force && d.1.elapsed() < Duration::from_millis(200) {
            return;
        }
        let l = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        if d.0 {
            out.push_str(&format!("\x1b[{}A", l.len()));
        }
        for x in l.iter() {
            let bar = if x.total > 0 {
                let w = 20usize;
                let f = (x.done as usize * w / x.total as usize).min(w);
                format!(
                    "[{}{}] {:>4}/{:<4}",
                    "#".repeat(f),
                    ".".repeat(w - f),
                    x.done,
                    x.total
                )
            } else {
                String::new()
            };
            out.push_str(&format!("\x1b[2K  {:<16} {bar} {}\n", x.board, x.state));
        }
        eprint!("{out}");
        *d = (true, Instant::now());
    }
}

/// Everything a board thread needs.
struct BoardJob<'a> {
    board: Board,
    profile: Profile,
    platform: PlatformApiRef,
    plugin_version: String,
    sensor: Option<(PowerSensorBox, Meta)>,
    rail: Option<Arc<Rail>>,
    models: &'a [Arc<ModelPlan>],
    args: &'a RunArgs,
    batch: &'a str,
    firmware: &'a Path,
    stop: &'a AtomicBool,
    progress: &'a Progress,
    lab: &'a lab_config::Lab,
    plugins: &'a crate::plugins::Plugins,
    tx: mpsc::Sender<Rec>,
    mqtt: Option<Arc<Publisher>>,
}

/// A model with its prompt, ready to run.
struct ModelPlan {
    file: ModelFile,
    prompt_ids: Vec<u32>,
    /// SHA-256 of the model file, hex (stored in `runs.model_sha256`).
    sha256: String,
}

/// Raw token event as received.
struct Tok {
    idx: i32,
    decode: bool,
    id: i32,
    cycles: Option<i64>,
    board_us: u64,
    rx: Instant,
}

/// How one run ended.
struct Outcome {
    status: &'static str,
    error: Option<String>,
    /// Machine-readable reason beside `error` (docs/database.md lists them).
    code: Option<&'static str>,
}

/// Why a board's session stopped before or between runs: the status its run gets, the reason
/// code and the words.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: &'static str,
    pub code: &'static str,
    pub why: String,
}

impl Fault {
    /// The model, firmware or measurement failed.
    fn failed(code: &'static str, why: impl Into<String>) -> Fault {
        Fault {
            status: "failed",
            code,
            why: why.into(),
        }
    }
    /// Infrastructure failed: console, power driver, platform plugin, flashing tool.
    fn error(code: &'static str, why: impl Into<String>) -> Fault {
        Fault {
            status: "error",
            code,
            why: why.into(),
        }
    }
}

/// What the board's `READY` and `MODEL` frames told.
struct Ready {
    firmware: String,
    ram: u64,
    flash: u64,
    crc32: Option<u32>,
}

/// One run's result on the board side.
struct RunResult {
    toks: Vec<Tok>,
    ops: Option<[(String, i64); 4]>,
    /// static, heap, stack, model and firmware-image bytes from `MEM`.
    mem: Option<(i64, i64, i64, i64, i64)>,
    outcome: Outcome,
    /// t = 0 of the run on the host clock (ns): just before the prompt's first byte.
    t0_ns: u64,
    end: Instant,
    /// Garbage (bytes, bad frames) the link had counted when the run started.
    garbage_before: (u64, u64),
}

/// Maps board microseconds to host nanoseconds: `h = b + a + s·b` shifted onto the fastest frame.
/// Returns (offset at b = 0 in ns, slope, median and max residual in µs).
fn align(toks: &[Tok]) -> Option<(f64, f64, f64, f64)> {
    if toks.is_empty() {
        return None;
    }
    let pts: Vec<(f64, f64)> = toks
        .iter()
        .map(|t| {
            let b = t.board_us as f64 * 1000.0;
            (b, clock::ns_of(t.rx) as f64 - b)
        })
        .collect();
    let n = pts.len() as f64;
    let mut slope = 0.0;
    if pts.len() >= 8 {
        let (mb, md) = (
            pts.iter().map(|p| p.0).sum::<f64>() / n,
            pts.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let var: f64 = pts.iter().map(|p| (p.0 - mb).powi(2)).sum();
        if var > 0.0 {
            slope = pts.iter().map(|p| (p.0 - mb) * (p.1 - md)).sum::<f64>() / var;
        }
        // Crystal drift is tens of ppm; anything steeper is noise from a short run.
        if slope.abs() > 1e-3 {
            slope = 0.0;
        }
    }
    let offset = pts
        .iter()
        .map(|p| p.1 - slope * p.0)
        .fold(f64::INFINITY, f64::min);
    let mut res: Vec<f64> = pts
        .iter()
        .map(|p| (p.1 - slope * p.0 - offset) / 1000.0)
        .collect();
    res.sort_by(f64::total_cmp);
    Some((offset, slope, res[res.len() / 2], res[res.len() - 1]))
}

impl BoardJob<'_> {
    fn name(&self) -> &str {
        &self.board.name
    }

    /// Retained board state over MQTT (when configured).
    fn state(&self, power: bool, phase: &str, run_id: Option<&str>) {
        if let Some(m) = &self.mqtt {
            m.board_state(&self.board.name, power, phase, run_id);
        }
    }

    fn exec(&self, f: impl FnOnce(&duckdb::Connection) -> duckdb::Result<()> + Send + 'static) {
        let _ = self.tx.send(Rec::Exec(Box::new(f)));
    }

    /// A run that never started (board faulted, boot failed): one `failed` row per model.
    /// Interrupted by the user, it is `aborted` instead.
    fn record_failed(&self, model: &ModelPlan, midx: usize, fault: &Fault) -> Arc<str> {
        let run_id: Arc<str> = format!("{}-{}-m{midx}-r0", self.batch, self.name()).into();
        self.insert_run(&run_id, model, 0);
        let (id, why) = (run_id.to_string(), fault.why.clone());
        let (status, code) = if self.stop.load(Ordering::Relaxed) {
            ("aborted", "interrupted")
        } else {
            (fault.status, fault.code)
        };
        self.exec(move |c| {
            c.execute(
                "UPDATE runs SET finished_at = current_timestamp, status = ?, error = ?, reason_code = ? WHERE run_id = ?",
                params![status, why, code, id],
            )
            .map(|_| ())
        });
        run_id
    }

    fn insert_run(&self, run_id: &Arc<str>, m: &ModelPlan, repeat: u32) {
        let v = (
            run_id.to_string(),
            self.board.name.clone(),
            self.board.platform.clone(),
            self.board.profile.clone(),
            m.file.name(),
            m.file.cfg.quant.name(),
            m.prompt_ids.len() as i32,
            self.args.tokens as i32,
            self.profile.emulated,
            self.plugin_version.clone(),
            self.batch.to_string(),
            repeat as i32,
            self.args.prompt.clone(),
            self.profile.timing_label(),
            self.profile.clock_hz as i64,
        );
        let sha = m.sha256.clone();
        self.exec(move |c| {
            c.execute(
                "INSERT INTO runs (run_id, started_at, board, platform, profile, model, quant, prompt_tokens, gen_tokens, status, simulated, labctl_version, plugin_version, batch_id, repeat_idx, prompt, timing_source, clock_hz, model_sha256) \
                 VALUES (?, current_timestamp, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params![v.0, v.1, v.2, v.3, v.4, v.5, v.6, v.7, v.8, env!("CARGO_PKG_VERSION"), v.9, v.10, v.11, v.12, v.13, v.14, sha],
            )
            .map(|_| ())
        });
    }

    /// Runs every model on this board. Returns the run ids recorded.
    fn run(mut self) -> Vec<Arc<str>> {
        let mut ids = vec![];
        let sensor = self.sensor.take();
        let start = Instant::now();
        let period = sensor
            .as_ref()
            .and_then(|(_, meta)| Duration::try_from_secs_f64(1.0 / meta.rate_hz).ok());
        let window = Window::new(period, start);
        let board_stop = AtomicBool::new(false);
        let session_id: Arc<str> = format!("{}-{}", self.batch, self.name()).into();
        let tx = self.tx.clone();
        std::thread::scope(|scope| {
            // The board's sensor samples for the whole session; samples inside a run's window
            // carry its id and time from its t = 0.
            let sampler = sensor.map(|(dev, meta)| {
                let window = &window;
                let stop = &board_stop;
                let session = session_id.clone();
                let tx = tx.clone();
                std::thread::Builder::new()
                    .name(format!("sample-{}", meta.name))
                    .spawn_scoped(scope, move || {
                        let stamp = |t0: Instant, t1: Instant| window.stamp(t0, t1);
                        let rep = sample_loop(dev, &meta, session, start, None, stop, &stamp, tx);
                        window.sensor_gone(rep.failed.clone());
                        rep
                    })
                    .expect("spawn sampler")
            });
            for (midx, m) in self.models.iter().enumerate() {
                if self.stop.load(Ordering::Relaxed) {
                    break;
                }
                ids.extend(self.run_model(m, midx, &window));
            }
            board_stop.store(true, Ordering::Relaxed);
            if let Some(h) = sampler {
                if let Ok(rep) = h.join() {
                    if let Some(f) = rep.failed {
                        self.progress
                            .note(&format!("{}: sensor failed: {f}", self.name()));
                    }
                }
            }
        });
        self.progress.set(self.name(), "done", 0, 0);
        ids
    }

    fn power(&self, on: bool) -> Result<(), Fault> {
        if self.board.relay.is_none() {
            return Ok(());
        }
        relay::set_board_power(self.lab, self.plugins, &self.board.name, on)
            .map(|_| ())
            .map_err(|e| Fault::error("power", format!("relay: {e:#}")))
    }

    /// The lab file's `reset`, once the console is open and before the handshake.
    fn reset(&self, console: &console::Console) -> Result<(), Fault> {
        match self.board.reset {
            lab_config::Reset::None => Ok(()),
            lab_config::Reset::Dtr | lab_config::Reset::Rts => console
                .pulse(self.board.reset)
                .map_err(|e| Fault::error("reset", e)),
            lab_config::Reset::PowerCycle => {
                self.power(false)?;
                std::thread::sleep(POWER_CYCLE_OFF);
                self.power(true)
            }
        }
    }

    /// Whether the model fits this board's memory: the profile's, or what the board reported in
    /// `READY` when its profile does not know (a hand-flashed `serial` board).
    fn fits(&self, m: &ModelPlan, ready: Option<&Ready>) -> Result<(), Fault> {
        let profile = match ready {
            Some(r) => self.profile.with_reported(r.ram, r.flash),
            None => self.profile.clone(),
        };
        let ctx = m.prompt_ids.len() + self.args.tokens as usize;
        let fit = model::fit(&m.file.cfg, m.file.bytes.len() as u64, &profile, ctx);
        if fit.fits() {
            return Ok(());
        }
        let whose = if ready.is_some() {
            format!("{} (as it reports in READY)", self.name())
        } else {
            profile.name.to_string()
        };
        Err(Fault::failed(
            "model-too-big",
            format!("model does not fit {whose}: {}", fit.why_not()),
        ))
    }

    /// One model on this board: boot with it, handshake, warm-up and measured runs, power off.
    fn run_model(&self, m: &ModelPlan, midx: usize, window: &Window) -> Vec<Arc<str>> {
        let name = self.name().to_string();
        let ctx = m.prompt_ids.len() + self.args.tokens as usize;
        // A profile that knows the board's memory is checked before anything is powered.
        let known = self.profile.knows_memory();
        if known {
            if let Err(f) = self.fits(m, None) {
                self.progress.note(&format!("{name}: {}", f.why));
                return vec![self.record_failed(m, midx, &f)];
            }
        }
        self.progress.set(&name, "powering on", 0, 0);
        // A pty or a real device is opened before bring-up; an emulator's own console after.
        let early = match console::open_early(&self.board, self.profile.console) {
            Ok(c) => c,
            Err(e) => {
                let f = Fault::error("console", e);
                self.progress.note(&format!("{name}: {}", f.why));
                return vec![self.record_failed(m, midx, &f)];
            }
        };
        let spec = BoardSpec {
            board: name.as_str().into(),
            profile: self.profile.to_json().into(),
            serial: early.as_ref().map(|c| c.path()).unwrap_or_default().into(),
            baud: console::baud(&self.board),
            firmware: self.firmware.to_string_lossy().as_ref().into(),
            model: m.file.path.to_string_lossy().as_ref().into(),
            ctx_tokens: ctx as u32,
        };
        let rail = match &self.rail {
            Some(r) => RSome(r.control()),
            None => RNone,
        };
        let mut session = match (self.platform.open_board())(&spec, rail).into_result() {
            Ok(s) => s,
            Err(e) => {
                let f = Fault::error(
                    "platform",
                    format!("platform {}: {}", self.board.platform, e.message),
                );
                self.progress.note(&format!("{name}: {}", f.why));
                return vec![self.record_failed(m, midx, &f)];
            }
        };
        if let Err(f) = self.power(true) {
            return vec![self.record_failed(m, midx, &f)];
        }
        self.state(true, "booting", None);
        let mut ids = vec![];
        let result = (|| -> Result<(), Fault> {
            session.bootstrap().into_result().map_err(|e| {
                let code = if e.kind == ErrorKind::MissingTool {
                    "missing-tool"
                } else {
                    "platform"
                };
                Fault::error(code, format!("bootstrap: {}", e.message))
            })?;
            let console = match early {
                Some(c) => c,
                None => {
                    let path = session.console_path().into_option().ok_or_else(|| {
                        Fault::error(
                            "platform",
                            "the platform started the board but named no console",
                        )
                    })?;
                    console::open_path(std::path::Path::new(path.as_str()), spec.baud)
                        .map_err(|e| Fault::error("console", e))?
                }
            };
            let mut link = console
                .link()
                .map_err(|e| Fault::error("console", format!("serial: {e}")))?;
            self.reset(&console)?;
            let ready = self.handshake(&mut link, &mut session, m)?;
            if !known {
                self.fits(m, Some(&ready))?;
            }
            let fw = ready.firmware.clone();
            let board_crc = ready.crc32.map(|c| format!("{c:08x}"));
            self.state(true, "ready", None);
            let total_runs = self.args.warmup + self.args.repeat;
            for r in 0..total_runs {
                if self.stop.load(Ordering::Relaxed) {
                    break;
                }
                let warm = r < self.args.warmup;
                let label = if warm {
                    format!("warm-up {}/{}", r + 1, self.args.warmup)
                } else {
                    format!("run {}/{}", r - self.args.warmup + 1, self.args.repeat)
                };
                let run_id: Option<Arc<str>> = (!warm).then(|| {
                    format!("{}-{name}-m{midx}-r{}", self.batch, r - self.args.warmup).into()
                });
                if let Some(id) = &run_id {
                    self.insert_run(id, m, r - self.args.warmup);
                    let (id2, fw2, crc2) = (id.to_string(), fw.clone(), board_crc.clone());
                    self.exec(move |c| {
                        c.execute(
                            "UPDATE runs SET firmware_version = ?, board_model_crc32 = ? WHERE run_id = ?",
                            params![fw2, crc2, id2],
                        )
                        .map(|_| ())
                    });
                    ids.push(id.clone());
                }
                self.state(
                    true,
                    if warm { "warm-up" } else { "running" },
                    run_id.as_deref(),
                );
                let res = self.one_run(&mut link, &mut session, m, run_id.clone(), window, &label);
                self.state(true, "idle", None);
                // A run cut short by the board ends the board's session; a `partial` one
                // (sensor lost) does not: its tokens and timings are still good.
                let failed = matches!(res.outcome.status, "failed" | "error" | "aborted");
                let msg = format!(
                    "{name}: {label} {}{}",
                    res.outcome.status,
                    res.outcome
                        .error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                );
                if let Some(id) = run_id {
                    self.store_run(&id, res, &link);
                }
                self.progress.note(&msg);
                if failed {
                    break;
                }
            }
            Ok(())
        })();
        if let Err(f) = &result {
            self.progress.note(&format!("{name}: {}", f.why));
            if ids.is_empty() {
                ids.push(self.record_failed(m, midx, f));
            }
        }
        self.progress.set(&name, "powering off", 0, 0);
        let _ = session.power_off();
        if let Err(f) = self.power(false) {
            self.progress.note(&format!("{name}: {}", f.why));
        }
        self.state(false, "off", None);
        ids
    }

    /// Waits for the board's boot banner, checks the protocol and the model it loaded.
    fn handshake(
        &self,
        link: &mut Link,
        session: &mut BoardSessionBox,
        m: &ModelPlan,
    ) -> Result<Ready, Fault> {
        self.progress.set(self.name(), "booting", 0, 0);
        let deadline = Instant::now() + self.args.boot_timeout;
        let stop = || self.stop.load(Ordering::Relaxed);
        let mut alive = || into_reason(session.check());
        let mut ask = |link: &mut Link, kind: &str, want: &str| -> Result<RxFrame, Fault> {
            link.send(kind, &[("proto", &PROTOCOL_VERSION)])
                .map_err(|e| Fault::error("console", format!("serial write: {e}")))?;
            loop {
                let f = link
                    .next(deadline, &mut alive, &stop)
                    .map_err(|e| match e {
                        LinkEnd::Timeout => Fault::failed(
                            "boot-timeout",
                            format!(
                                "no {want} from the board within {:.0?} of power on",
                                self.args.boot_timeout
                            ),
                        ),
                        LinkEnd::Dead(why) => {
                            Fault::failed("board-died", format!("board died during boot: {why}"))
                        }
                        LinkEnd::Lost(why) => {
                            Fault::error("console", format!("console lost during boot: {why}"))
                        }
                        LinkEnd::Stopped => Fault {
                            status: "aborted",
                            code: "interrupted",
                            why: "interrupted".into(),
                        },
                    })?;
                match f.frame().kind {
                    k if k == want => return Ok(f),
                    "ERR" => {
                        return Err(Fault::failed(
                            "board-error",
                            format!(
                                "board refused {kind}: {}",
                                f.frame().get("what").unwrap_or("?")
                            ),
                        ))
                    }
                    _ => continue,
                }
            }
        };
        let ready = ask(link, "HELLO", "READY")?;
        let fr = ready.frame();
        let proto = fr
            .u32("proto")
            .map_err(|_| Fault::failed("protocol", "READY without proto"))?;
        if proto != PROTOCOL_VERSION {
            return Err(Fault::failed(
                "protocol",
                format!(
                    "board speaks protocol {proto}, this labctl speaks {PROTOCOL_VERSION}: rebuild or reflash its firmware"
                ),
            ));
        }
        let (ram, flash) = (fr.u64("ram").unwrap_or(0), fr.u64("flash").unwrap_or(0));
        // The kernel variant is part of what ran: `0.1.0+dsp` tells DSP builds apart in `runs`.
        let fw = match (fr.get("fw").unwrap_or("?"), fr.get("kernels")) {
            (v, Some(k)) if k != "plain" => format!("{v}+{k}"),
            (v, _) => v.to_string(),
        };
        let info = ask(link, "INFO", "MODEL")?;
        let f = info.frame();
        let want = &m.file.cfg;
        let same = f.get("quant") == Some(want.quant.name())
            && f.u32("dim") == Ok(want.dim)
            && f.u32("layers") == Ok(want.n_layers)
            && f.u32("vocab") == Ok(want.vocab_size);
        let crc32 = f.get("crc32").and_then(|c| u32::from_str_radix(c, 16).ok());
        let ours = fwcore::crc::crc32(&m.file.bytes);
        if !same || crc32 != Some(ours) {
            return Err(Fault::failed(
                "model-mismatch",
                format!(
                    "the board holds another model than {} (crc32 {ours:08x}): the board's has crc32 {} ({}); flash that model onto the board, or run with the model the board holds",
                    m.file.path.display(),
                    crc32.map_or("?".into(), |c| format!("{c:08x}")),
                    String::from_utf8_lossy(&info.line).trim_end()
                ),
            ));
        }
        Ok(Ready {
            firmware: fw,
            ram,
            flash,
            crc32,
        })
    }

    /// One prompt: send it, collect token events until `DONE`.
    fn one_run(
        &self,
        link: &mut Link,
        session: &mut BoardSessionBox,
        m: &ModelPlan,
        run_id: Option<Arc<str>>,
        window: &Window,
        label: &str,
    ) -> RunResult {
        let name = self.name().to_string();
        let n = m.prompt_ids.len();
        let total = (n + self.args.tokens as usize) as u32;
        // Warm-up runs are not measured: no window, t = 0 is now.
        let t0 = match &run_id {
            Some(id) => window.open(id.clone()),
            None => Instant::now(),
        };
        let mut res = RunResult {
            toks: vec![],
            ops: None,
            mem: None,
            outcome: Outcome {
                status: "ok",
                error: None,
                code: None,
            },
            t0_ns: clock::ns_of(t0),
            end: t0,
            garbage_before: link.garbage(),
        };
        let fail = |res: &mut RunResult, status: &'static str, code: &'static str, why: String| {
            res.outcome = Outcome {
                status,
                error: Some(why),
                code: Some(code),
            };
        };
        let sent = (|| -> std::io::Result<()> {
            link.send("PROMPT", &[("gen", &self.args.tokens), ("n", &n)])?;
            for chunk in m.prompt_ids.chunks(IDS_PER_FRAME) {
                let ids = chunk
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                link.send("IDS", &[("ids", &ids)])?;
            }
            Ok(())
        })();
        if let Err(e) = sent {
            fail(&mut res, "error", "console", format!("serial write: {e}"));
        }
        let stop = || self.stop.load(Ordering::Relaxed);
        let mut alive = || into_reason(session.check());
        while res.outcome.error.is_none() {
            let deadline = Instant::now() + self.args.token_timeout;
            let f = match link.next(deadline, &mut alive, &stop) {
                Ok(f) => f,
                Err(LinkEnd::Timeout) => {
                    fail(
                        &mut res,
                        "failed",
                        "token-timeout",
                        format!(
                            "no answer from the board for {:.0?}",
                            self.args.token_timeout
                        ),
                    );
                    break;
                }
                Err(LinkEnd::Dead(why)) => {
                    fail(
                        &mut res,
                        "failed",
                        "board-died",
                        format!("board died mid-run: {why}"),
                    );
                    break;
                }
                Err(LinkEnd::Lost(why)) => {
                    fail(
                        &mut res,
                        "error",
                        "console",
                        format!("console lost mid-run: {why}"),
                    );
                    break;
                }
                Err(LinkEnd::Stopped) => {
                    fail(
                        &mut res,
                        "aborted",
                        "interrupted",
                        "interrupted by the user".into(),
                    );
                    break;
                }
            };
            let fr = f.frame();
            match fr.kind {
                "TOK" => {
                    let (Ok(i), Ok(us), Ok(id)) = (fr.u32("i"), fr.u64("us"), fr.u32("id")) else {
                        continue;
                    };
                    res.toks.push(Tok {
                        idx: i as i32,
                        decode: fr.get("ph") == Some("d"),
                        id: id as i32,
                        cycles: fr.u64("cyc").ok().map(|c| c as i64),
                        board_us: us,
                        rx: f.at,
                    });
                    let done = res.toks.len() as u32;
                    if done.is_multiple_of(4) || done == total {
                        let phase = if res.toks.last().is_some_and(|t| t.decode) {
                            "decode"
                        } else {
                            "prefill"
                        };
                        self.progress
                            .set(&name, format!("{label} {phase}"), done, total);
                    }
                }
                "OPS" => {
                    let g = |k: &str| fr.u64(k).unwrap_or(0) as i64;
                    res.ops = Some([
                        ("matmul".into(), g("matmul")),
                        ("attention".into(), g("attention")),
                        ("norm".into(), g("norm")),
                        ("other".into(), g("other")),
                    ]);
                }
                "MEM" => {
                    let g = |k: &str| fr.u64(k).unwrap_or(0) as i64;
                    res.mem = Some((g("static"), g("heap"), g("stack"), g("model"), g("code")));
                }
                "DONE" => break,
                "ERR" => {
                    let what = fr.get("what").unwrap_or("?").to_string();
                    fail(
                        &mut res,
                        "failed",
                        "board-error",
                        format!("board error: {what}"),
                    );
                }
                _ => {}
            }
        }
        res.end = Instant::now();
        if run_id.is_some() {
            // Interrupted, nobody waits for the sample after the run's end.
            window.close(res.end, !stop());
            // The tokens are complete but the power data is cut short or missing: the status says
            // so, and `compare` (ok runs only) leaves such a run's energy out.
            if let (Some(why), "ok") = (window.failure(), res.outcome.status) {
                fail(
                    &mut res,
                    "partial",
                    "sensor",
                    format!("power sensor failed: {why}; no power data from then on"),
                );
            }
        }
        res
    }

    /// Sends a finished (or failed) run's tokens, memory, operators and ground truth to the writer.
    fn store_run(&self, run_id: &Arc<str>, res: RunResult, link: &Link) {
        let t0_ns = res.t0_ns;
        let al = align(&res.toks);
        let rows: Vec<TokenRow> = res
            .toks
            .iter()
            .map(|t| {
                let b = t.board_us as f64 * 1000.0;
                let host_ns = match al {
                    Some((off, slope, _, _)) => b + off + slope * b,
                    None => clock::ns_of(t.rx) as f64,
                };
                TokenRow {
                    run_id: run_id.clone(),
                    idx: t.idx,
                    phase: if t.decode { "decode" } else { "prefill" },
                    t_us: ((host_ns - t0_ns as f64) / 1000.0).round() as i64,
                    cycles: t.cycles,
                    token_id: t.id,
                    board_us: t.board_us as i64,
                    host_rx_us: (clock::ns_of(t.rx) as i64 - t0_ns as i64) / 1000,
                }
            })
            .collect();
        let generated = rows.iter().filter(|r| r.phase == "decode").count() as i32;
        let _ = self.tx.send(Rec::Tokens(rows));
        let (gb, gf) = link.garbage();
        let (gb, gf) = (gb - res.garbage_before.0, gf - res.garbage_before.1);
        let id = run_id.to_string();
        let (status, error, code) = (
            res.outcome.status,
            res.outcome.error.clone(),
            res.outcome.code,
        );
        let (off, med) = al.map_or((None, None), |a| (Some(a.0 / 1000.0), Some(a.2)));
        let ops = res.ops.clone();
        let mem = res.mem;
        // Ground truth of a simulated rail over the run, for checking the measurement chain.
        let truth: Vec<(f64, f64, f64)> = self
            .rail
            .as_ref()
            .map(|r| {
                r.steps_between(t0_ns, clock::ns_of(res.end))
                    .iter()
                    .map(|s| {
                        (
                            (s.t_ns as f64 - t0_ns as f64) / 1000.0,
                            s.point.bus_volts * 1000.0,
                            s.point.amps * 1000.0,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let board = self.board.name.clone();
        self.exec(move |c| {
            c.execute(
                "UPDATE runs SET finished_at = current_timestamp, status = ?, error = ?, reason_code = ?, gen_tokens = ?, \
                 align_offset_us = ?, align_err_us = ?, garbage_bytes = ?, bad_frames = ? WHERE run_id = ?",
                params![status, error, code, generated, off, med, gb as i64, gf as i64, id],
            )?;
            if let Some(ops) = ops {
                for (op, cyc) in ops {
                    c.execute("INSERT INTO run_ops VALUES (?, ?, ?, NULL)", params![id, op, cyc])?;
                }
            }
            if let Some((st, heap, stack, model, code)) = mem {
                // Flash in use: the model partition plus the firmware image where the port
                // knows it (bare-metal ports; 0 on the hosted posix port).
                c.execute(
                    "INSERT INTO run_memory VALUES (?, ?, ?, ?, ?, ?)",
                    params![id, st, heap, stack, model, model + code],
                )?;
            }
            let mut app = c.appender("rail_truth")?;
            for (t, mv, ma) in truth {
                app.append_row(params![id, board, t, mv, ma])?;
            }
            app.flush()
        });
    }
}

fn into_reason(r: ROption<abi_stable::std_types::RString>) -> Option<String> {
    r.into_option().map(|s| s.to_string())
}

/// A checked job: the lab, the boards, the models with their prompts. Building it powers
/// nothing; every mistake in the arguments is bad input.
pub struct Plan {
    rt: Runtime,
    boards: Vec<Board>,
    plans: Vec<Arc<ModelPlan>>,
    args: RunArgs,
}

impl Plan {
    /// The boards this job will use.
    pub fn board_names(&self) -> Vec<String> {
        self.boards.iter().map(|b| b.name.clone()).collect()
    }
}

/// What a finished job produced.
pub struct JobOutcome {
    pub rows: Vec<SummaryRow>,
    pub interrupted: bool,
    pub storage: PathBuf,
}

impl JobOutcome {
    /// The exit status `labctl run` gives this outcome.
    pub fn verdict(&self) -> anyhow::Result<()> {
        let failed: Vec<&SummaryRow> = self.rows.iter().filter(|r| r.status != "ok").collect();
        if self.interrupted {
            let aborted = self.rows.iter().filter(|r| r.status == "aborted").count();
            let what = match aborted {
                // Every board was between two runs: nothing was cut short.
                0 => "interrupted between runs, none was in progress".to_string(),
                n => format!("interrupted: {n} run(s) in progress marked aborted"),
            };
            return Err(Failed(format!(
                "{what}; the {} run(s) recorded and everything measured are stored in {}",
                self.rows.len(),
                self.storage.display()
            ))
            .into());
        }
        // A run that named another model than the board holds is a mistake in the arguments.
        if let Some(r) = failed
            .iter()
            .find(|r| r.reason_code.as_deref() == Some("model-mismatch"))
        {
            return Err(BadInput(format!(
                "{}: {}",
                r.board,
                r.error.as_deref().unwrap_or("model mismatch")
            ))
            .into());
        }
        if !failed.is_empty() {
            return Err(Failed(format!(
                "{} of {} run(s) not ok: {}",
                failed.len(),
                self.rows.len(),
                problems(failed.into_iter()).join("; ")
            ))
            .into());
        }
        Ok(())
    }
}

/// `labctl run`
pub fn cmd_run(lab_path: &Path, args: RunArgs) -> anyhow::Result<()> {
    if args.dry_run {
        return crate::dry_run::cmd(lab_path, &args);
    }
    let json = args.json;
    let plan = plan(lab_path, args)?;
    let stop = stop_flag()?;
    // The lab's online/offline status belongs to `serve` while it runs.
    let announce = crate::control::serve_pid(&plan.rt.lab).is_none();
    let mqtt = Publisher::connect(&plan.rt.lab, "run", announce);
    if let Some(m) = &mqtt {
        eprintln!(
            "publishing live metrics to {} under {}/",
            m.describe,
            m.prefix()
        );
    }
    let out = execute(plan, &stop, mqtt.as_ref());
    if let Some(m) = &mqtt {
        m.close();
    }
    let out = out?;
    print_summary(&out.rows, json)?;
    out.verdict()
}

/// Checks a job's arguments against the lab and resolves its models (generating presets once).
pub fn plan(lab_path: &Path, args: RunArgs) -> anyhow::Result<Plan> {
    let rt = Runtime::open(lab_path)?;
    if args.tokens == 0 || args.repeat == 0 {
        return Err(BadInput("--tokens and --repeat must be at least 1".into()).into());
    }
    for b in &args.boards {
        crate::lab::board_named(&rt.lab, b)?;
    }
    let boards: Vec<Board> = rt
        .lab
        .boards
        .iter()
        .filter(|b| args.boards.is_empty() || args.boards.contains(&b.name))
        .cloned()
        .collect();
    if boards.is_empty() {
        return Err(BadInput(format!("{} defines no boards", rt.lab.file.display())).into());
    }
    // Models and prompts are checked before any board is powered.
    let cache = model::cache_dir(&rt.lab);
    let specs = if args.models.is_empty() {
        vec![model::DEFAULT_MODEL.to_string()]
    } else {
        args.models.clone()
    };
    let mut plans = vec![];
    for spec in &specs {
        let path = model::resolve(spec, &cache)?;
        let file = ModelFile::load(&path)?;
        let prompt_ids = model::encode(&args.prompt, file.cfg.vocab_size)?;
        if prompt_ids.len() > fwcore::fw::MAX_PROMPT {
            return Err(BadInput(format!(
                "--prompt is {} tokens; the firmware takes at most {}",
                prompt_ids.len(),
                fwcore::fw::MAX_PROMPT
            ))
            .into());
        }
        let ctx = prompt_ids.len() + args.tokens as usize;
        if ctx > file.cfg.seq_len as usize {
            return Err(BadInput(format!(
                "{} prompt tokens + {} generated exceed the context of {} ({} tokens)",
                prompt_ids.len(),
                args.tokens,
                path.display(),
                file.cfg.seq_len
            ))
            .into());
        }
        let sha256 = model::sha256_hex(&file.bytes);
        plans.push(Arc::new(ModelPlan {
            file,
            prompt_ids,
            sha256,
        }));
    }
    Ok(Plan {
        rt,
        boards,
        plans,
        args,
    })
}

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
    for b in &boards {
        let fault = rt.board_faults.get(&b.name).cloned();
        let api = rt.plugins.platform(&b.platform);
        let profile = rt.plugins.profile(&b.platform, &b.profile).cloned();
        let (Some(api), Some(profile), None) = (api, profile, fault.clone()) else {
            let why = fault.unwrap_or_else(|| {
                format!("platform {:?} has no profile {:?}", b.platform, b.profile)
            });
            progress.note(&format!("{}: faulted: {why}", b.name));
            for (i, m) in plans.iter().enumerate() {
                let id: Arc<str> = format!("{batch}-{}-m{i}-r0", b.name).into();
                let v = (
                    id.to_string(),
                    b.name.clone(),
                    b.platform.clone(),
                    b.profile.clone(),
                    m.file.name(),
                    m.file.cfg.quant.name(),
                    batch.clone(),
                    why.clone(),
                );
                let _ = tx.send(Rec::Exec(Box::new(move |c| {
                    c.execute(
                        "INSERT INTO runs (run_id, started_at, finished_at, board, platform, profile, model, quant, status, error, reason_code, simulated, batch_id, repeat_idx) \
                         VALUES (?, current_timestamp, current_timestamp, ?, ?, ?, ?, ?, 'error', ?, 'plugin', false, ?, 0)",
                        params![v.0, v.1, v.2, v.3, v.4, v.5, v.7, v.6],
                    )
                    .map(|_| ())
                })));
                early.push(id);
            }
            continue;
        };
        let mut sensor = None;
        let mut rail = None;
        if let Some(sname) = &b.sensor {
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
        ));
    }
    let ids = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(board, profile, platform, plugin_version, sensor, rail)| {
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
                };
                std::thread::Builder::new()
                    .name(format!("board-{}", job.board.name))
                    .spawn_scoped(scope, move || job.run())
                    .expect("spawn board thread")
            })
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
        stored.map(|s| (ids, s))
    });
    progress.draw(true);
    let (ids, stored) = ids?;
    for e in &stored.exec_errors {
        eprintln!("warning: a run record could not be stored: {e}");
    }
    if args.validate && !stop.load(Ordering::Relaxed) {
        validate_into(&store, &plans, &batch, args.json)?;
    }
    if let Some(m) = &mqtt {
        m.flush();
        for (run, u) in m.take_undelivered_runs() {
            store.conn.execute(
                "UPDATE runs SET mqtt_undelivered_msgs = ?, mqtt_undelivered_samples = ? WHERE run_id = ?",
                params![u.messages as i64, u.samples as i64, &*run],
            )?;
        }
    }
    let rows = summary(&store, &ids)?;
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

/// Quantization accuracy of every quantization of the run's (generated) models vs f32.
fn validate_into(
    store: &Store,
    plans: &[Arc<ModelPlan>],
    batch: &str,
    json: bool,
) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for p in plans {
        let cfg = p.file.cfg;
        if p.file.seed == 0 {
            eprintln!(
                "{}: not generated by labctl, no f32 reference: skipped --validate",
                p.file.path.display()
            );
            continue;
        }
        if !seen.insert((cfg.dim, cfg.n_layers, cfg.vocab_size, p.file.seed)) {
            continue;
        }
        let gen = model::VALIDATE_TOKENS
            .min(cfg.seq_len as usize - p.prompt_ids.len().min(cfg.seq_len as usize));
        eprintln!(
            "validating quantizations of {} (teacher forcing)…",
            p.file.name()
        );
        let rows = model::validate(&cfg, p.file.seed, &p.prompt_ids, gen);
        for (q, a) in &rows {
            store.conn.execute(
                "INSERT INTO quant_accuracy VALUES (current_timestamp, ?, ?, ?, 'f32', ?, ?, ?, ?)",
                params![
                    batch,
                    p.file.name(),
                    q.name(),
                    p.prompt_ids.len() as i32,
                    a.positions as i32,
                    a.top1,
                    a.mean_kl
                ],
            )?;
        }
        if !json {
            model::print_validation(&rows, false)?;
        }
    }
    Ok(())
}

/// One row of the printed summary.
#[derive(Debug, serde::Serialize)]
pub struct SummaryRow {
    pub run_id: String,
    pub board: String,
    pub profile: Option<String>,
    pub model: Option<String>,
    pub quant: Option<String>,
    pub status: String,
    pub error: Option<String>,
    /// Machine-readable reason beside `error` (docs/database.md).
    pub reason_code: Option<String>,
    pub ttft_ms: Option<f64>,
    pub itl_p50_ms: Option<f64>,
    pub itl_p90_ms: Option<f64>,
    pub itl_p99_ms: Option<f64>,
    pub tokens_per_s: Option<f64>,
    pub e2e_ms: Option<f64>,
    pub avg_power_mw: Option<f64>,
    pub peak_power_mw: Option<f64>,
    pub energy_mj: Option<f64>,
    pub energy_per_token_mj: Option<f64>,
    pub ram_peak_kb: Option<f64>,
    pub flash_kb: Option<f64>,
    pub simulated: Option<bool>,
}

fn summary(store: &Store, ids: &[Arc<str>]) -> anyhow::Result<Vec<SummaryRow>> {
    let mut out = vec![];
    let mut stmt = store.conn.prepare(
        "SELECT s.run_id, s.board, s.profile, s.model, s.quant, r.status, r.error, s.ttft_ms, s.itl_p50_ms,          s.itl_p90_ms, s.itl_p99_ms, s.tokens_per_s, s.e2e_ms, s.avg_power_mw, s.peak_power_mw, s.energy_mj,          s.energy_per_token_mj, s.ram_peak_kb, s.flash_kb, s.simulated, r.reason_code          FROM run_summary s JOIN runs r USING (run_id) WHERE s.run_id = ?",
    )?;
    let mut seen = HashMap::new();
    for id in ids {
        if seen.insert(id.clone(), ()).is_some() {
            continue;
        }
        let rows = stmt.query_map([&**id], |r| {
            Ok(SummaryRow {
                run_id: r.get(0)?,
                board: r.get(1)?,
                profile: r.get(2)?,
                model: r.get(3)?,
                quant: r.get(4)?,
                status: r.get(5)?,
                error: r.get(6)?,
                ttft_ms: r.get(7)?,
                itl_p50_ms: r.get(8)?,
                itl_p90_ms: r.get(9)?,
                itl_p99_ms: r.get(10)?,
                tokens_per_s: r.get(11)?,
                e2e_ms: r.get(12)?,
                avg_power_mw: r.get(13)?,
                peak_power_mw: r.get(14)?,
                energy_mj: r.get(15)?,
                energy_per_token_mj: r.get(16)?,
                ram_peak_kb: r.get(17)?,
                flash_kb: r.get(18)?,
                simulated: r.get(19)?,
                reason_code: r.get(20)?,
            })
        })?;
        for r in rows {
            out.push(r?);
        }
    }
    Ok(out)
}

fn print_summary(rows: &[SummaryRow], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(rows)?);
        return Ok(());
    }
    let f = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |x| format!("{x:.p$}"));
    // The text columns as wide as their longest entry.
    let width = |head: &str, get: &dyn Fn(&SummaryRow) -> usize| {
        rows.iter().map(get).fold(head.len(), usize::max)
    };
    let wb = width("board", &|r| r.board.len());
    let wp = width("profile", &|r| r.profile.as_deref().map_or(1, str::len));
    let wm = width("model", &|r| r.model.as_deref().map_or(1, str::len));
    let ws = width("status", &|r| r.status.len());
    println!(
        "{:<wb$} {:<wp$} {:<wm$} {:<ws$} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8}",
        "board",
        "profile",
        "model",
        "status",
        "ttft_ms",
        "itl_p50",
        "itl_p99",
        "tok/s",
        "avg_mW",
        "energy_mJ",
        "mJ/token",
        "ram_kb",
        "flash_kb"
    );
    for r in rows {
        println!(
            "{:<wb$} {:<wp$} {:<wm$} {:<ws$} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8}",
            r.board,
            r.profile.as_deref().unwrap_or("-"),
            r.model.as_deref().unwrap_or("-"),
            r.status,
            f(r.ttft_ms, 2),
            f(r.itl_p50_ms, 2),
            f(r.itl_p99_ms, 2),
            f(r.tokens_per_s, 1),
            f(r.avg_power_mw, 1),
            f(r.energy_mj, 2),
            f(r.energy_per_token_mj, 3),
            f(r.ram_peak_kb, 0),
            f(r.flash_kb, 0),
        );
    }
    if rows.iter().any(|r| r.simulated == Some(true)) {
        println!("simulated: emulated boards (virtual ones run on the host CPU, qemu ones count emulated cycles): not the real chips' timings. Results are in the database (tables runs, tokens, power_samples; view run_summary).");
    }
    for line in problems(rows.iter().filter(|r| r.error.is_some())) {
        println!("{line}");
    }
    Ok(())
}

/// One line per board, status and reason, however many runs share it (`board: 35 partial (…)`).
fn problems<'a>(rows: impl Iterator<Item = &'a SummaryRow>) -> Vec<String> {
    let mut groups: Vec<((&str, &str, &str), usize)> = vec![];
    for r in rows {
        let key = (
            r.board.as_str(),
            r.status.as_str(),
            r.error.as_deref().unwrap_or(""),
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => groups.push((key, 1)),
        }
    }
    groups
        .iter()
        .map(|((board, status, why), n)| {
            let runs = if *n == 1 { "run" } else { "runs" };
            format!("{board}: {n} {runs} {status} ({why})")
        })
        .collect()
}
