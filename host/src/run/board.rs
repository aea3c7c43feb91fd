//! One board's session in a run: bring-up as a small state machine (off → powered → flashed →
//! booted → ready → running → off, each transition stored in `board_events` and published), the
//! handshake, warm-up and measured runs with their token events and power window, and the
//! records each run leaves for the store.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use abi_stable::std_types::{RNone, ROption, RSome};
use lab_config::Board;
use labctl_plugin_api::{profile::Profile, ErrorKind, PlatformApiRef, PowerSensorBox};

use crate::{
    clock,
    console::{self, Link},
    model::{self, ModelFile},
    mqtt::Publisher,
    rails::Rail,
    records::{BoardEvent, BoardState, Manifest, Record, RunEnd, RunStart},
    relay,
    run::RunArgs,
    sample::{sample_loop, Meta},
    store::{Rec, TokenRow},
    window::Window,
};

use super::*;

/// How long a board waits for the writer to commit its run's start before prompting anyway (the
/// writer commits within milliseconds; longer means it is stuck, and says so).
const START_COMMIT_WAIT: Duration = Duration::from_secs(10);

/// Everything a board thread needs.
pub(super) struct BoardJob<'a> {
    pub(super) board: Board,
    pub(super) profile: Profile,
    pub(super) platform: PlatformApiRef,
    pub(super) plugin_version: String,
    pub(super) sensor: Option<(PowerSensorBox, Meta)>,
    pub(super) rail: Option<Arc<Rail>>,
    pub(super) models: &'a [Arc<ModelPlan>],
    pub(super) args: &'a RunArgs,
    pub(super) batch: &'a str,
    pub(super) firmware: &'a Path,
    pub(super) stop: &'a AtomicBool,
    pub(super) progress: &'a Progress,
    pub(super) lab: &'a lab_config::Lab,
    pub(super) plugins: &'a crate::plugins::Plugins,
    pub(super) tx: mpsc::Sender<Rec>,
    pub(super) mqtt: Option<Arc<Publisher>>,
    /// Where the board's bring-up is.
    pub(super) bstate: std::cell::Cell<BoardState>,
    /// The fault of a run that ended the board's session, for the `off` event.
    pub(super) last_fault: std::cell::RefCell<Option<Fault>>,
    /// When the board's sensor is a channel of a chip shared with other boards: its window
    /// (the chip's sampler stamps into it) and the chip.
    pub(super) shared: Option<(Arc<Window>, Arc<ChipShare>)>,
}

/// A model with its prompt, ready to run.
pub(super) struct ModelPlan {
    pub(super) file: ModelFile,
    pub(super) prompt_ids: Vec<u32>,
    /// SHA-256 of the model file, hex (stored in `runs.model_sha256`).
    pub(super) sha256: String,
    /// The imported model's card (provenance; its vocabulary moved into `tokenizer`), when it
    /// has one.
    pub(super) card: Option<model::card::Card>,
    /// The tokenizer that turns generated ids into text, when the model has one.
    pub(super) tokenizer: Option<Arc<model::tokenizer::Spm>>,
    /// Decoding stops at this id (`--stop-at-eos`).
    pub(super) eos: Option<u32>,
}

impl ModelPlan {
    /// The fields of a run's first row that come from the model and its prompt.
    pub(super) fn run_start(&self) -> RunStart {
        let src = self.card.as_ref().map(|c| &c.source);
        RunStart {
            model: self.file.name(),
            quant: self.file.cfg.quant.name().to_string(),
            prompt_tokens: self.prompt_ids.len() as i32,
            model_sha256: self.sha256.clone(),
            model_format: src.map(|s| s.format.clone()),
            model_source: src.map(|s| s.file.clone()),
            model_source_sha256: src.map(|s| s.sha256.clone()),
            tokenizer: match (&self.tokenizer, &self.card) {
                (Some(t), _) => t.vocab.label(),
                (None, Some(_)) => "none".into(),
                (None, None) => "byte-level".into(),
            },
            prompt_ids: self
                .prompt_ids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
            ..Default::default()
        }
    }

    /// A token as text for `tokens.piece`: the model's tokenizer's piece, or the byte-level
    /// tokenizer's for generated models (an imported model without a tokenizer has none).
    pub(super) fn piece(&self, id: u32) -> Option<String> {
        match (&self.tokenizer, &self.card) {
            (Some(t), _) => Some(t.vocab.piece(id)),
            (None, None) => model::tokenizer::byte_piece(id),
            (None, Some(_)) => None,
        }
    }

    /// The text of generated ids.
    pub(super) fn text(&self, ids: &[u32]) -> Option<String> {
        match (&self.tokenizer, &self.card) {
            (Some(t), _) => Some(t.continuation(ids)),
            (None, None) => Some(model::tokenizer::byte_text(ids)),
            (None, Some(_)) => None,
        }
    }
}

impl BoardJob<'_> {
    pub(super) fn name(&self) -> &str {
        &self.board.name
    }

    /// Retained board state over MQTT (when configured): the progress phase and the bring-up
    /// state.
    pub(super) fn state(&self, power: bool, phase: &str, run_id: Option<&str>) {
        if let Some(m) = &self.mqtt {
            m.board_state(
                &self.board.name,
                power,
                phase,
                self.bstate.get().name(),
                run_id,
                None,
            );
        }
    }

    pub(super) fn rec(&self, r: Record) {
        let _ = self.tx.send(Rec::Run(Box::new(r)));
    }

    /// The board's bring-up moved to `state`; stored in `board_events` and published as the
    /// board's retained MQTT state.
    pub(super) fn moved(
        &self,
        state: BoardState,
        run_id: Option<&Arc<str>>,
        fault: Option<&Fault>,
    ) {
        self.bstate.set(state);
        if let Some(m) = &self.mqtt {
            let phase = match state {
                BoardState::Running => "running",
                BoardState::Off => "off",
                _ => "booting",
            };
            m.board_state(
                &self.board.name,
                state != BoardState::Off,
                phase,
                state.name(),
                run_id.map(|r| &**r),
                fault.map(|f| f.why.as_str()),
            );
        }
        self.rec(Record::BoardEvent(BoardEvent {
            at_unix_us: clock::unix_us(),
            batch_id: self.batch.to_string(),
            board: self.board.name.clone(),
            state,
            run_id: run_id.cloned(),
            reason: fault.map(|f| f.why.clone()),
            reason_code: fault.map(|f| f.code),
        }));
    }

    /// A run that never started (board faulted, boot failed): one row per model with the
    /// fault's status. Interrupted by the user, it is `aborted` instead.
    pub(super) fn record_failed(&self, model: &ModelPlan, midx: usize, fault: &Fault) -> Arc<str> {
        let run_id: Arc<str> = format!("{}-{}-m{midx}-r0", self.batch, self.name()).into();
        self.insert_run(&run_id, model, 0);
        let (status, code) = if self.stop.load(Ordering::Relaxed) {
            ("aborted", "interrupted")
        } else {
            (fault.status, fault.code)
        };
        self.rec(Record::End(RunEnd {
            run_id: run_id.clone(),
            status,
            error: Some(fault.why.clone()),
            reason_code: Some(code),
            ..Default::default()
        }));
        run_id
    }

    pub(super) fn insert_run(&self, run_id: &Arc<str>, m: &ModelPlan, repeat: u32) {
        self.rec(Record::Start(Box::new(RunStart {
            run_id: run_id.clone(),
            board: self.board.name.clone(),
            platform: self.board.platform.clone(),
            profile: self.board.profile.clone(),
            gen_tokens: self.args.tokens as i32,
            simulated: self.profile.emulated,
            plugin_version: self.plugin_version.clone(),
            batch_id: self.batch.to_string(),
            repeat_idx: repeat as i32,
            prompt: self.args.prompt.clone(),
            timing_source: self.profile.timing_label(),
            clock_hz: self.profile.clock_hz as i64,
            ..m.run_start()
        })));
    }

    /// Runs every model on this board. Returns the run ids recorded.
    pub(super) fn run(mut self) -> Vec<Arc<str>> {
        let mut ids = vec![];
        let sensor = self.sensor.take();
        let start = Instant::now();
        let period = sensor
            .as_ref()
            .and_then(|(_, meta)| Duration::try_from_secs_f64(1.0 / meta.rate_hz).ok());
        let own = Window::new(period, start);
        let shared = self.shared.take();
        // A shared chip's sampler stamps into the window the run made for this board.
        let window: &Window = shared.as_ref().map_or(&own, |(w, _)| w);
        // However this session ends (even by a panic), the shared chip learns it is done.
        let _done = shared.as_ref().map(|(_, chip)| chip.done_guard());
        let board_stop = AtomicBool::new(false);
        let session_id: Arc<str> = format!("{}-{}", self.batch, self.name()).into();
        let tx = self.tx.clone();
        std::thread::scope(|scope| {
            // The board's sensor samples for the whole session; samples inside a run's window
            // carry its id and time from its t = 0.
            let sampler = sensor.map(|(dev, meta)| {
                let stop = &board_stop;
                let session = session_id.clone();
                let tx = tx.clone();
                std::thread::Builder::new()
                    .name(format!("sample-{}", meta.name))
                    .spawn_scoped(scope, move || {
                        let stamp = |t0: Instant, t1: Instant| window.stamp(t0, t1);
                        let rep = sample_loop(
                            dev,
                            std::slice::from_ref(&meta),
                            session,
                            start,
                            None,
                            stop,
                            &[&stamp],
                            tx,
                        );
                        window.sensor_gone(rep.failed.clone());
                        rep
                    })
                    .expect("spawn sampler")
            });
            for (midx, m) in self.models.iter().enumerate() {
                if self.stop.load(Ordering::Relaxed) {
                    break;
                }
                ids.extend(self.run_model(m, midx, window));
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

    /// The board's USB serial number, where its console is found by it.
    fn board_serial(&self) -> Option<String> {
        match &self.board.console.as_ref()?.port {
            lab_config::ConsolePort::Usb { serial, .. } => Some(serial.clone()),
            lab_config::ConsolePort::Path(_) => None,
        }
    }

    /// The board's power sensor as configured: chip, bus, address, channel, shunt.
    fn sensor_label(&self) -> Option<String> {
        let s = self.lab.sensor(self.board.sensor.as_deref()?)?;
        Some(format!(
            "{} {} on {} at {:#04x} channel {}, shunt {} ohm",
            s.name, s.chip, s.bus, s.address, s.channel, s.shunt_ohms
        ))
    }

    pub(super) fn power(&self, on: bool) -> Result<(), Fault> {
        if self.board.relay.is_none() {
            return Ok(());
        }
        relay::set_board_power(self.lab, self.plugins, &self.board.name, on)
            .map(|_| ())
            .map_err(|e| Fault::error("power", format!("relay: {e:#}")))
    }

    /// The lab file's `reset`, once the console is open and before the handshake.
    pub(super) fn reset(&self, console: &console::Console) -> Result<(), Fault> {
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
    pub(super) fn fits(&self, m: &ModelPlan, ready: Option<&Ready>) -> Result<(), Fault> {
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
    pub(super) fn run_model(&self, m: &ModelPlan, midx: usize, window: &Window) -> Vec<Arc<str>> {
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
        let spec = crate::bringup::spec(
            &self.board,
            &self.profile,
            &early.as_ref().map(|c| c.path()).unwrap_or_default(),
            self.firmware,
            &m.file.path,
            ctx as u32,
        );
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
            self.moved(BoardState::Off, None, Some(&f));
            return vec![self.record_failed(m, midx, &f)];
        }
        let (fw_files, fw_sha) = firmware_files(&session.plan(), &m.file.path);
        self.moved(BoardState::Powered, None, None);
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
            self.moved(BoardState::Flashed, None, None);
            let emulator_console = early.is_none();
            let mut console = match early {
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
            self.moved(BoardState::Booted, None, None);
            if !known {
                self.fits(m, Some(&ready))?;
            }
            self.moved(BoardState::Ready, None, None);
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
                    self.rec(Record::Manifest(Box::new(Manifest {
                        run_id: id.clone(),
                        firmware: fw_files.clone(),
                        firmware_sha256: fw_sha.clone(),
                        model_sha256: m.sha256.clone(),
                        board_serial: self.board_serial(),
                        sensor: self.sensor_label(),
                    })));
                    self.rec(Record::Firmware {
                        run_id: id.clone(),
                        firmware_version: fw.clone(),
                        board_model_crc32: board_crc.clone(),
                    });
                    ids.push(id.clone());
                }
                if let Some(id) = &run_id {
                    self.moved(BoardState::Running, Some(id), None);
                }
                self.state(
                    true,
                    if warm { "warm-up" } else { "running" },
                    run_id.as_deref(),
                );
                // The run's `running` row is in the database before the board is prompted.
                if let Some(id) = &run_id {
                    if !crate::store::COMMITS.wait(id, START_COMMIT_WAIT) {
                        tracing::warn!(run = %id, "the run's start was not committed in time");
                    }
                }
                let res = self.one_run(&mut link, &mut session, m, run_id.clone(), window, &label);
                if let Some(id) = &run_id {
                    // Back to ready after a run, or off with the run's reason when it ended the
                    // session (recorded below).
                    if res.outcome.status == "ok" || res.outcome.status == "partial" {
                        self.moved(BoardState::Ready, Some(id), None);
                    }
                }
                self.state(true, "idle", None);
                // A run cut short by the board ends the board's session; a `partial` one
                // (sensor lost) does not: its tokens and timings are still good.
                let failed = matches!(res.outcome.status, "failed" | "error" | "aborted");
                let res_code = res.outcome.code;
                let msg = format!(
                    "{name}: {label} {}{}",
                    res.outcome.status,
                    res.outcome
                        .error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                );
                if failed {
                    self.last_fault.replace(Some(Fault {
                        status: res.outcome.status,
                        code: res.outcome.code.unwrap_or("failed"),
                        why: res.outcome.error.clone().unwrap_or_default(),
                    }));
                }
                if let Some(id) = run_id {
                    self.store_run(&id, m, res, &link);
                }
                self.progress.note(&msg);
                if failed {
                    // A hung board is brought back if anything can; the failed run stays failed.
                    let hung = matches!(res_code, Some("token-timeout" | "board-died"));
                    if !hung || self.stop.load(Ordering::Relaxed) || r + 1 == total_runs {
                        break;
                    }
                    let back = self.recover(
                        &mut session,
                        &mut console,
                        &mut link,
                        emulator_console.then_some(spec.baud),
                        m,
                        res_code.unwrap_or("hang"),
                    );
                    if !back {
                        break;
                    }
                    self.last_fault.replace(None);
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
        let off_fault = self.power(false).err();
        if let Some(f) = &off_fault {
            self.progress.note(&format!("{name}: {}", f.why));
        }
        // Off, with why the session stopped early where it did.
        let why = result
            .as_ref()
            .err()
            .or(self.last_fault.borrow().as_ref())
            .cloned();
        self.moved(BoardState::Off, None, why.as_ref().or(off_fault.as_ref()));
        self.last_fault.replace(None);
        self.state(false, "off", None);
        ids
    }

    /// Sends a finished (or failed) run's tokens, memory, operators and ground truth to the writer.
    pub(super) fn store_run(&self, run_id: &Arc<str>, m: &ModelPlan, res: RunResult, link: &Link) {
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
                    piece: u32::try_from(t.id).ok().and_then(|id| m.piece(id)),
                }
            })
            .collect();
        let generated_ids: Vec<u32> = res
            .toks
            .iter()
            .filter(|t| t.decode)
            .filter_map(|t| u32::try_from(t.id).ok())
            .collect();
        let output_text = m.text(&generated_ids);
        let generated = rows.iter().filter(|r| r.phase == "decode").count() as i32;
        let _ = self.tx.send(Rec::Tokens(rows));
        let (gb, gf) = link.garbage();
        let (gb, gf) = (gb - res.garbage_before.0, gf - res.garbage_before.1);
        let (off, med) = al.map_or((None, None), |a| (Some(a.0 / 1000.0), Some(a.2)));
        self.rec(Record::End(RunEnd {
            run_id: run_id.clone(),
            status: res.outcome.status,
            error: res.outcome.error.clone(),
            reason_code: res.outcome.code,
            gen_tokens: Some(generated),
            align_offset_us: off,
            align_err_us: med,
            garbage_bytes: Some(gb as i64),
            bad_frames: Some(gf as i64),
            output_text,
            temp_start_c: res.temps.first().copied(),
            temp_end_c: res.temps.get(1).copied(),
        }));
        if let Some(ops) = res.ops.clone() {
            self.rec(Record::Ops {
                run_id: run_id.clone(),
                ops: ops.to_vec(),
            });
        }
        if let Some((st, heap, stack, model, code)) = res.mem {
            // Flash in use: the model partition plus the firmware image where the port knows
            // it (bare-metal ports; 0 on the hosted posix port).
            self.rec(Record::Memory {
                run_id: run_id.clone(),
                static_ram: st,
                heap_peak: heap,
                stack_peak: stack,
                model,
                flash: model + code,
            });
        }
        // Ground truth of a simulated rail over the run, for checking the measurement chain.
        if let Some(r) = &self.rail {
            let points = r
                .steps_between(t0_ns, clock::ns_of(res.end))
                .iter()
                .map(|s| {
                    (
                        (s.t_ns as f64 - t0_ns as f64) / 1000.0,
                        s.point.bus_volts * 1000.0,
                        s.point.amps * 1000.0,
                    )
                })
                .collect();
            self.rec(Record::RailTruth {
                run_id: run_id.clone(),
                board: self.board.name.clone(),
                points,
            });
        }
    }
}

pub(super) fn into_reason(r: ROption<abi_stable::std_types::RString>) -> Option<String> {
    r.into_option().map(|s| s.to_string())
}

/// The files a board's bring-up steps name besides the model (firmware images, the posix
/// firmware, an emulator's kernel), each at most 64 MiB, and their SHA-256: what ran the run.
fn firmware_files(
    steps: &[labctl_plugin_api::Step],
    model: &Path,
) -> (Option<String>, Option<String>) {
    let mut files: Vec<std::path::PathBuf> = vec![];
    for st in steps {
        for arg in &st.argv {
            // Tools take a path as a word of an argument too (`program FILE verify`).
            for w in arg.as_str().split([' ', '=', ',']) {
                let p = Path::new(w);
                let ok = p.is_absolute()
                    && p != model
                    && std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() <= 64 << 20);
                if ok && !files.iter().any(|f| f == p) {
                    files.push(p.to_path_buf());
                }
            }
        }
    }
    let digests: Vec<String> = files
        .iter()
        .map(|f| {
            std::fs::read(f)
                .map(|b| model::sha256_hex(&b))
                .unwrap_or_else(|_| "unreadable".into())
        })
        .collect();
    if files.is_empty() {
        return (None, None);
    }
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    (Some(names.join(";")), Some(digests.join(";")))
}
