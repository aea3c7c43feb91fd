//! Every verb and flag of `labctl`, with its help text and defaults, in one place.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use crate::units::{parse_duration, PowerAction};
pub use crate::{bench::BenchCmd, model::ModelCmd, run::RunArgs, sense::SenseArgs};

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
    /// Attached USB devices (probes, USB-serial bridges, boards' own USB): IDs, serial
    /// numbers, consoles and their /dev/serial/by-id names, the platforms each may be, and a
    /// [[boards]] block for each with a console.
    Discover {
        #[arg(long)]
        json: bool,
    },
    /// Configured boards: plugin, relay state, sensor health (a test read), flakiness over
    /// the last 20 runs, quarantine, USB presence; `boards release BOARD` ends a quarantine.
    Boards {
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<BoardsAction>,
    },
    /// Live readings from power sensors, stored in the results database.
    Sense(SenseArgs),
    /// Profile model(s) on board(s): power, boot, handshake, prompt, record; then a summary table.
    Run(RunArgs),
    /// Headless daemon: takes profiling jobs over MQTT (<prefix>/jobs/<job_id>), publishes
    /// status and metrics; hosts the embedded broker when the lab says so. Stop with SIGTERM.
    Serve,
    /// Checks a results database: every table read through, every sealed run's tokens and
    /// samples against its manifest's checksums. Exit 1 when something does not match.
    Verify {
        /// The database (default: the lab's [storage] path).
        #[arg(long)]
        db: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
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

#[derive(Subcommand, Debug)]
pub enum BoardsAction {
    /// Puts a quarantined board back in service (after you looked at it).
    Release { board: String },
}
