//! Every verb and flag of `labctl`, with its help text and defaults, in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use crate::units::{parse_duration, PowerAction};

#[derive(Parser, Debug)]
#[command(
    name = "labctl",
    version,
    about = "Headless hardware-in-the-loop lab controller: profile tiny quantized LLMs on edge boards",
    propagate_version = true
)]
pub struct Cli {
    /// The lab file.
    #[arg(long, global = true, env = "LABCTL_LAB", default_value = "lab.toml")]
    pub lab: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List plugin libraries: loaded ones with their platforms/chips, rejected ones with the reason.
    Plugins {
        #[arg(long)]
        json: bool,
    },
    /// Lab file tools.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Switch a board's power through its relay.
    Power {
        /// Board name from the lab file.
        board: String,
        /// on, off or cycle.
        action: PowerAction,
        /// How long `cycle` keeps the board off, e.g. 2s or 500ms.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        off_time: std::time::Duration,
        #[arg(long)]
        json: bool,
    },
    /// Put the firmware and a model on a board with its platform's flashing step (platforms
    /// whose boards are not flashed say so and change nothing).
    Flash {
        board: String,
        /// Model file or PRESET[:QUANT] (default stories260k:q8_0).
        #[arg(long)]
        model: Option<String>,
        /// Print the flashing command and run nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Reset a board: its `reset` line (DTR/RTS), a power cycle, or its platform's probe.
    Reset {
        board: String,
        /// Print what would be done and do nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The board's serial console on this terminal (like picocom); emulated boards are started
    /// for the session. Ctrl-] quits.
    Console {
        board: String,
        /// Model for an emulated board (default stories260k:q8_0).
        #[arg(long)]
        model: Option<String>,
    },
    /// Configured boards: plugin, relay state, sensor health (a test read), USB presence.
    Boards {
        #[arg(long)]
        json: bool,
    },
    /// Live readings from power sensors, stored in the results database.
    Sense(SenseArgs),
    /// Profile model(s) on board(s): power, boot, handshake, prompt, record; then a summary table.
    Run(RunArgs),
    /// Headless daemon: takes profiling jobs over MQTT (<prefix>/jobs/<job_id>), publishes
    /// status and metrics; hosts the embedded broker when the lab says so. Stop with SIGTERM.
    Serve,
    /// Read-only SQL over the results database (anything that writes is refused).
    Query {
        sql: String,
        /// The database (default: the lab's [storage] path).
        #[arg(long)]
        db: Option<PathBuf>,
        #[arg(long, value_parser = ["table", "csv", "json"], default_value = "table")]
        format: String,
    },
    /// Compare boards, models and quantizations: median and p10–p90 spread of each metric over
    /// repeated runs, with the number of runs behind each cell.
    Compare {
        #[arg(long)]
        db: Option<PathBuf>,
        /// Group by these (comma-separated): board, platform, profile, model, quant.
        #[arg(long, value_delimiter = ',')]
        by: Vec<String>,
        /// Metrics (comma-separated run_summary columns; default: the main ones).
        #[arg(long = "metric", value_delimiter = ',')]
        metrics: Vec<String>,
        #[arg(long, value_parser = ["table", "csv", "json"], default_value = "table")]
        format: String,
        /// Instead: bottlenecks and recommendations (dominant operator, Pareto-optimal
        /// board × quant, memory fit margins, battery life for the duty cycle below).
        #[arg(long)]
        recommend: bool,
        /// Duty cycle for the battery estimate: generated tokens per hour.
        #[arg(long, default_value_t = 1000.0)]
        tokens_per_hour: f64,
        /// Battery capacity in mAh.
        #[arg(long, default_value_t = 2000.0)]
        battery_mah: f64,
        /// Battery voltage.
        #[arg(long, default_value_t = 3.7)]
        battery_v: f64,
    },
    /// A self-contained HTML report (inline SVG charts), or its data as JSON/CSV.
    Report {
        #[arg(long)]
        db: Option<PathBuf>,
        /// One run.
        #[arg(long, conflicts_with_all = ["last", "all"])]
        run: Option<String>,
        /// The latest `labctl run` invocation (the default).
        #[arg(long)]
        last: bool,
        /// Every run in the database.
        #[arg(long, conflicts_with = "last")]
        all: bool,
        #[arg(long, value_parser = ["html", "json", "csv"], default_value = "html")]
        format: String,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Every table and the run_summary view to Parquet, CSV or JSON files.
    Export {
        #[arg(long)]
        db: Option<PathBuf>,
        #[arg(long, value_parser = ["parquet", "csv", "json"], default_value = "parquet")]
        format: String,
        /// Directory for the files (created if needed).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Make, inspect and fit firmware model files.
    Model {
        #[command(subcommand)]
        cmd: ModelCmd,
    },
    /// Benchmarks (not part of the test suite).
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Validate a lab file; errors name file:line:column and the field (exit code 2).
    Check {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

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

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Only these boards (comma-separated or repeated); default every board in the lab.
    #[arg(long = "boards", value_delimiter = ',')]
    pub boards: Vec<String>,
    /// Model file(s), or PRESET[:QUANT] generated once beside the database (repeatable;
    /// default stories260k:q8_0). Every board runs every model.
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// Prompt text, tokenized byte-level (see docs/running.md).
    #[arg(long, default_value = "Once upon a time, a little robot")]
    pub prompt: String,
    /// Tokens to generate per run.
    #[arg(long, default_value_t = 32)]
    pub tokens: u32,
    /// Measured runs per board and model.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Unrecorded warm-up runs before the measured ones.
    #[arg(long, default_value_t = 0)]
    pub warmup: u32,
    /// Also measure quantization accuracy (top-1 agreement, KL) of every quantization of the
    /// run's models against their f32 reference, stored in quant_accuracy.
    #[arg(long)]
    pub validate: bool,
    /// How long a board may take to boot and answer the handshake.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub boot_timeout: std::time::Duration,
    /// Longest silence from a board during a run before it is failed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub token_timeout: std::time::Duration,
    /// Print the summary as JSON (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Print what bring-up would do on each board, one line per step (`board<TAB>step<TAB>argv`:
    /// power, flash/start, reset, console) with the exact command lines, and do none of it.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Subcommand, Debug)]
pub enum ModelCmd {
    /// Generate a deterministic model file from a preset.
    Gen {
        #[arg(long)]
        preset: String,
        /// q8_0, q4_0, q3, q2 or f32.
        #[arg(long, default_value = "q8_0")]
        quant: String,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Seed of the weights (recorded in the file; 0 is reserved).
        #[arg(long, default_value_t = crate::model::DEFAULT_SEED)]
        seed: u32,
    },
    /// Architecture, parameters, bytes per tensor and quantization of a model file.
    Inspect {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Does a model fit a board profile: weights in flash, KV cache + activations + firmware in RAM.
    Fit {
        file: PathBuf,
        /// Board profile, e.g. esp32s3, stm32f7, rp2040.
        #[arg(long)]
        profile: String,
        /// Platform plugin serving the profile.
        #[arg(long, default_value = "virtual")]
        platform: String,
        /// Context length in tokens (default: the model's full context).
        #[arg(long)]
        ctx: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// List the presets `gen` knows.
    Presets {
        #[arg(long)]
        json: bool,
    },
    /// Top-1 agreement and KL of every quantization of a generated model against f32.
    Validate {
        file: PathBuf,
        #[arg(long, default_value = "Once upon a time, a little robot")]
        prompt: String,
        /// Tokens the f32 reference generates after the prompt (the teacher-forced sequence).
        #[arg(long, default_value_t = crate::model::VALIDATE_TOKENS)]
        tokens: usize,
        #[arg(long)]
        json: bool,
    },
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap().as_millis(), 5000);
        assert_eq!(parse_duration("250ms").unwrap().as_millis(), 250);
        assert_eq!(parse_duration("2m").unwrap().as_secs(), 120);
        assert_eq!(parse_duration("1.5").unwrap().as_millis(), 1500);
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
