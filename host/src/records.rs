//! The plain records producers emit and sinks consume: power samples, token events, and the
//! facts of a run and a board's bring-up. Producers (boards, samplers) know nothing of where they
//! go; the store turns them into rows and the publisher into messages.

use std::sync::Arc;

/// One power sample as stored in `power_samples`.
#[derive(Debug, Clone)]
pub struct SampleRow {
    pub run_id: Option<Arc<str>>,
    pub session_id: Option<Arc<str>>,
    pub sensor: Arc<str>,
    pub board: Option<Arc<str>>,
    pub t_us: i64,
    pub bus_mv: f64,
    pub shunt_uv: f64,
    pub current_ma: f64,
    pub power_mw: f64,
    pub simulated: bool,
    /// When it was taken on the host clock (CLOCK_MONOTONIC ns); not stored, used to give live
    /// consumers the sample's wall-clock time.
    pub host_ns: u64,
}

/// One token event as stored in `tokens`.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub run_id: Arc<str>,
    pub idx: i32,
    pub phase: &'static str,
    pub t_us: i64,
    pub cycles: Option<i64>,
    pub token_id: i32,
    pub board_us: i64,
    pub host_rx_us: i64,
    /// The token as text, when the model has a tokenizer.
    pub piece: Option<String>,
}

/// One fact about a run, a board or a sensing session, in the order it happened. The store
/// writes each as rows.
#[derive(Debug, Clone)]
pub enum Record {
    /// A run begins (status `running`).
    Start(Box<RunStart>),
    /// The firmware the board reported and the CRC-32 of the model it holds.
    Firmware {
        run_id: Arc<str>,
        firmware_version: String,
        board_model_crc32: Option<String>,
    },
    /// A run ends: its status, reason and what was measured about it.
    End(RunEnd),
    /// Cycles per operator class over the run.
    Ops {
        run_id: Arc<str>,
        ops: Vec<(String, i64)>,
    },
    /// Memory the firmware reported (bytes).
    Memory {
        run_id: Arc<str>,
        static_ram: i64,
        heap_peak: i64,
        stack_peak: i64,
        model: i64,
        flash: i64,
    },
    /// A simulated rail's ground truth over the run: (t_us from the run's t = 0, mV, mA).
    RailTruth {
        run_id: Arc<str>,
        board: String,
        points: Vec<(f64, f64, f64)>,
    },
    /// What ran a run: the files its platform flashed or started, the board, the sensor.
    Manifest(Box<Manifest>),
    /// A board's bring-up moved to `state` (docs/database.md, `board_events`).
    BoardEvent(BoardEvent),
    /// Live messages of a run that never reached the broker.
    Undelivered {
        run_id: Arc<str>,
        messages: i64,
        samples: i64,
    },
    /// Quantization accuracy of one quantization against the f32 reference.
    QuantAccuracy {
        batch_id: String,
        model: String,
        quant: String,
        prompt_tokens: i32,
        positions: i32,
        top1: f64,
        mean_kl: f64,
    },
    /// A `labctl sense` session begins.
    SenseStart {
        session_id: Arc<str>,
        sensors: String,
        rate_hz: Option<f64>,
        simulated: bool,
    },
    /// A `labctl sense` session ends.
    SenseEnd {
        session_id: Arc<str>,
        samples: i64,
        missed: i64,
        status: &'static str,
        error: Option<String>,
    },
}

/// The row a run starts with.
#[derive(Debug, Clone, Default)]
pub struct RunStart {
    pub run_id: Arc<str>,
    pub board: String,
    pub platform: String,
    pub profile: String,
    pub model: String,
    pub quant: String,
    pub prompt_tokens: i32,
    pub gen_tokens: i32,
    pub simulated: bool,
    pub plugin_version: String,
    pub batch_id: String,
    pub repeat_idx: i32,
    pub prompt: String,
    pub timing_source: String,
    pub clock_hz: i64,
    pub model_sha256: String,
    /// Provenance of an imported model (its model card): source format, file name and SHA-256.
    pub model_format: Option<String>,
    pub model_source: Option<String>,
    pub model_source_sha256: Option<String>,
    /// `byte-level`, or the imported tokenizer (`spm:gguf (32000 pieces)`).
    pub tokenizer: String,
    /// The prompt's ids as sent (comma-separated), to reproduce the run elsewhere.
    pub prompt_ids: String,
}

/// How a run ended.
#[derive(Debug, Clone, Default)]
pub struct RunEnd {
    pub run_id: Arc<str>,
    pub status: &'static str,
    pub error: Option<String>,
    pub reason_code: Option<&'static str>,
    /// Generated tokens received (None: leave as started).
    pub gen_tokens: Option<i32>,
    pub align_offset_us: Option<f64>,
    pub align_err_us: Option<f64>,
    pub garbage_bytes: Option<i64>,
    pub bad_frames: Option<i64>,
    /// The generated text, when the model has a tokenizer.
    pub output_text: Option<String>,
    /// The board's temperature (°C) when the prompt started and when it ended (`TEMP` frames).
    pub temp_start_c: Option<f64>,
    pub temp_end_c: Option<f64>,
}

/// A board's bring-up state machine: off → powered → flashed → booted → ready → running → off,
/// each transition with why it stopped where it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoardState {
    Off,
    Powered,
    Flashed,
    Booted,
    Ready,
    Running,
    /// A hung board is being recovered (the event's reason code names the step: `reset`,
    /// `power-cycle`, `reflash`).
    Recovering,
    /// No recovery step brought the board back: out of service until released.
    Quarantined,
}

impl BoardState {
    pub fn name(self) -> &'static str {
        match self {
            BoardState::Off => "off",
            BoardState::Powered => "powered",
            BoardState::Flashed => "flashed",
            BoardState::Booted => "booted",
            BoardState::Ready => "ready",
            BoardState::Running => "running",
            BoardState::Recovering => "recovering",
            BoardState::Quarantined => "quarantined",
        }
    }
}

/// A run's manifest (`run_manifests`); its checksums are added when its batch is sealed.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub run_id: Arc<str>,
    /// The files the platform's bring-up steps name (firmware images, the posix firmware),
    /// `path` each, `;`-separated; their SHA-256 in the same order.
    pub firmware: Option<String>,
    pub firmware_sha256: Option<String>,
    pub model_sha256: String,
    /// The board's USB serial number, where the lab file finds its console by it.
    pub board_serial: Option<String>,
    /// The board's power sensor: chip, address, channel and shunt.
    pub sensor: Option<String>,
}

/// One transition of a board's bring-up.
#[derive(Debug, Clone)]
pub struct BoardEvent {
    /// When it happened: wall clock, microseconds since the Unix epoch.
    pub at_unix_us: i64,
    pub batch_id: String,
    pub board: String,
    pub state: BoardState,
    /// The run in progress, if any.
    pub run_id: Option<Arc<str>>,
    /// Why the board went (back) to this state when it was not the plan: the fault's words.
    pub reason: Option<String>,
    pub reason_code: Option<&'static str>,
}

/// One run as the summary prints it and job replies carry it: a `run_summary` row with its
/// run's status, reason, tokenizer and generated text.
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
    /// `byte-level` (generated presets) or the model's own tokenizer.
    pub tokenizer: Option<String>,
    /// What the model generated, as text.
    pub output_text: Option<String>,
}
