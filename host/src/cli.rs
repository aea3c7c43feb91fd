//! Every verb and flag of `labctl`, with its help text and defaults, in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
        action: PowerAction,
        /// How long `cycle` keeps the board off, e.g. 2s or 500ms.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        off_time: std::time::Duration,
        #[arg(long)]
        json: bool,
    },
    /// Configured boards: plugin, relay state, sensor health (a test read), USB presence.
    Boards {
        #[arg(long)]
        json: bool,
    },
    /// Live readings from power sensors, stored in the results database.
    Sense(SenseArgs),
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

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerAction {
    On,
    Off,
    Cycle,
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

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
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

/// `5s`, `500ms`, `2m`, `1h`, or plain seconds (`1.5`).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 5s, 500ms, 2m)"))?;
    if !(v.is_finite() && v >= 0.0 && v * mult < 1e9) {
        return Err(format!("{s:?} is not a usable duration"));
    }
    Ok(std::time::Duration::from_secs_f64(v * mult))
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
