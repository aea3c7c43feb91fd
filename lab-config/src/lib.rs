//! The lab file: its TOML schema, parsing with source positions, and validation.
//!
//! [`load`] turns a lab file into a validated [`Lab`] or a list of [`ConfigError`]s, each naming
//! file:line:column and the field. Checks that need plugin knowledge (what a chip can sample at,
//! which platforms exist) run in [`Lab::check_with`] against a [`Catalog`] the host builds from the
//! plugins it loaded.

mod raw;
mod validate;

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
};

pub use validate::{Catalog, SensorTiming};

/// Default I2C clock when a bus gives none (standard mode).
pub const DEFAULT_FREQUENCY_HZ: u32 = 100_000;
/// Default MQTT listen address of the embedded broker.
pub const DEFAULT_MQTT_LISTEN: &str = "127.0.0.1:1883";
/// Default database file name, beside the lab file.
pub const DEFAULT_DB: &str = "lab.duckdb";

/// A position in the lab file (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loc {
    pub line: usize,
    pub col: usize,
}

/// Whether an error is a mistake in the file or a name that no loaded plugin provides. The
/// latter faults only the boards that depend on it when a lab is used rather than checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Invalid,
    Unresolved,
}

/// One problem in a lab file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub loc: Loc,
    /// Dotted path of the field, e.g. `sensors[1].rate_hz`.
    pub field: String,
    pub message: String,
    pub kind: ErrorKind,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.loc.line,
            self.loc.col,
            self.field,
            self.message
        )
    }
}

/// All problems found in a lab file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lab {
    pub name: String,
    /// The lab file, as given.
    pub file: PathBuf,
    /// Directory relative paths are resolved against.
    pub dir: PathBuf,
    /// Where plugins are searched; `None` means beside the running `labctl`.
    pub plugin_dirs: Option<Vec<PathBuf>>,
    /// The DuckDB results database.
    pub storage_path: PathBuf,
    /// Model files: generated presets, and the only files jobs from the network may name
    /// (`[storage] models`; default `models/` beside the database).
    pub models_dir: PathBuf,
    pub buses: Vec<Bus>,
    pub relays: Vec<Relay>,
    pub sensors: Vec<Sensor>,
    pub boards: Vec<Board>,
    pub mqtt: Option<Mqtt>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bus {
    pub name: String,
    pub kind: BusKind,
    pub frequency_hz: u32,
    pub loc: Loc,
    pub frequency_loc: Loc,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusKind {
    /// A Linux i2c-dev node, e.g. `/dev/i2c-1`.
    Device(PathBuf),
    Simulated,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Relay {
    pub name: String,
    pub driver: RelayDriver,
    pub loc: Loc,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RelayDriver {
    /// A GPIO line through the character device (`/dev/gpiochipN`).
    Gpio {
        chip: PathBuf,
        line: u32,
        active_low: bool,
    },
    /// A USB-HID relay board (the common `16c0:05df` "USBRelayN" kind).
    UsbHid {
        vid: u16,
        pid: u16,
        serial: Option<String>,
        channel: u8,
    },
    /// Per-port power of a USB hub: the hub's location (`1-1.2`, `usb1`) and a 1-based port.
    UsbPort {
        hub: String,
        port: u8,
    },
    /// The user's own programs (argv arrays, no shell): `status` exits 0 = on, 1 = off.
    Command {
        on: Vec<String>,
        off: Vec<String>,
        status: Option<Vec<String>>,
        timeout_ms: u64,
    },
    Simulated,
}

impl RelayDriver {
    /// The `driver` key's value, which names the power-driver plugin's driver.
    pub fn name(&self) -> &'static str {
        match self {
            RelayDriver::Gpio { .. } => "gpio",
            RelayDriver::UsbHid { .. } => "usb-hid",
            RelayDriver::UsbPort { .. } => "usb-port",
            RelayDriver::Command { .. } => "command",
            RelayDriver::Simulated => "simulated",
        }
    }

    /// The driver's keys as the power-driver plugin takes them (a JSON object).
    pub fn keys_json(&self) -> String {
        use serde_json::json;
        match self {
            RelayDriver::Gpio {
                chip,
                line,
                active_low,
            } => json!({"chip": chip.to_string_lossy(), "line": line, "active_low": active_low}),
            RelayDriver::UsbHid {
                vid,
                pid,
                serial,
                channel,
            } => json!({"vid": vid, "pid": pid, "serial": serial, "channel": channel}),
            RelayDriver::UsbPort { hub, port } => json!({"hub": hub, "port": port}),
            RelayDriver::Command {
                on,
                off,
                status,
                timeout_ms,
            } => json!({"on": on, "off": off, "status": status,
                        "timeout_s": *timeout_ms as f64 / 1000.0}),
            RelayDriver::Simulated => json!({}),
        }
        .to_string()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sensor {
    pub name: String,
    pub chip: String,
    pub bus: String,
    pub address: u8,
    pub shunt_ohms: f64,
    pub max_current_a: f64,
    pub adc_bits: u8,
    pub averaging: u16,
    /// 1-based channel of a multi-channel chip (1 on single-channel chips).
    pub channel: u8,
    /// The chip's own conversion rate where it has one (0 = the plugin's default).
    pub sample_rate_sps: f64,
    pub bipolar: bool,
    pub rate_hz: f64,
    /// `sensors[i]`
    pub field: String,
    pub loc: Loc,
    pub chip_loc: Loc,
    pub rate_loc: Loc,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Board {
    pub name: String,
    pub platform: String,
    pub profile: String,
    pub relay: Option<String>,
    pub sensor: Option<String>,
    /// The board's console, if it has a real one (absent for emulated boards, whose console is
    /// a pseudo-terminal the host makes).
    pub console: Option<Console>,
    /// How to reset the board between sessions.
    pub reset: Reset,
    /// Silence after which the board is hung mid-run (`hang_timeout_s`; the run's token timeout
    /// when absent): recovery escalates reset → power cycle → reflash → quarantine.
    pub hang_timeout: Option<std::time::Duration>,
    /// How to reach a single-board computer over SSH (`host`, `user`, `identity`, …).
    pub ssh: Option<Ssh>,
    /// How to flash the board (`flash_tool`, `flash_program`, `probe_serial`), for platforms
    /// that flash.
    pub flash: Option<Flash>,
    pub field: String,
    pub loc: Loc,
    pub platform_loc: Loc,
    pub profile_loc: Loc,
}

/// A board reached over SSH: key authentication only, its host key checked against
/// `known_hosts` (the user's own when not given).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ssh {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The private key's path (the key itself is never read by labctl).
    pub identity: PathBuf,
    pub known_hosts: Option<PathBuf>,
    /// The posix firmware built for the board's architecture; `None`: the host's own.
    pub firmware: Option<PathBuf>,
}

/// The flashing tool a board's platform runs: which one (the platform's default when absent),
/// the program to run (found on PATH when absent), and which debug probe (when several are
/// attached).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Flash {
    pub tool: Option<String>,
    pub program: Option<PathBuf>,
    pub probe_serial: Option<String>,
}

/// Default console speed.
pub const DEFAULT_BAUD: u32 = 115_200;

/// A board's serial console on the bench.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Console {
    pub port: ConsolePort,
    pub baud: u32,
}

/// Where the console is: a fixed device path, or a USB device found by its serial number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsolePort {
    /// `serial = "/dev/ttyACM0"` or a `/dev/serial/by-id/…` link.
    Path(PathBuf),
    /// `usb_serial = "…"`, optionally narrowed by `usb_id = "VID:PID"` and `usb_interface`;
    /// resolved to the current tty each time the board is brought up (its name changes when the
    /// board re-enumerates).
    Usb {
        serial: String,
        id: Option<(u16, u16)>,
        interface: Option<u8>,
    },
}

/// `reset` in the lab file. Default `none`: toggling DTR puts some boards into their bootloader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reset {
    #[default]
    None,
    Dtr,
    Rts,
    PowerCycle,
}

impl Reset {
    pub fn name(self) -> &'static str {
        match self {
            Reset::None => "none",
            Reset::Dtr => "dtr",
            Reset::Rts => "rts",
            Reset::PowerCycle => "power-cycle",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttMode {
    /// `labctl serve` hosts a broker at `listen`.
    Embedded { listen: SocketAddr },
    /// Connect to a broker at `url`.
    External { url: String, tls: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mqtt {
    pub mode: MqttMode,
    pub client_id: Option<String>,
    pub username: Option<String>,
    /// Secret sources; the secret itself is read only when connecting and never logged.
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Topic prefix; default `labctl/<lab name>`.
    pub prefix: String,
}

impl Lab {
    pub fn bus(&self, name: &str) -> Option<&Bus> {
        self.buses.iter().find(|b| b.name == name)
    }
    pub fn relay(&self, name: &str) -> Option<&Relay> {
        self.relays.iter().find(|r| r.name == name)
    }
    pub fn sensor(&self, name: &str) -> Option<&Sensor> {
        self.sensors.iter().find(|s| s.name == name)
    }
    pub fn board(&self, name: &str) -> Option<&Board> {
        self.boards.iter().find(|b| b.name == name)
    }
    /// The board a sensor measures, if any.
    pub fn board_of_sensor(&self, sensor: &str) -> Option<&Board> {
        self.boards
            .iter()
            .find(|b| b.sensor.as_deref() == Some(sensor))
    }
    /// Checks that need plugin knowledge; see [`Catalog`].
    pub fn check_with(&self, catalog: &dyn Catalog) -> Vec<ConfigError> {
        validate::check_with(self, catalog)
    }
    /// Where relay state is kept: beside the database, `<db stem>.state.json`.
    pub fn state_path(&self) -> PathBuf {
        let stem = self
            .storage_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "lab".into());
        self.storage_path
            .with_file_name(format!("{stem}.state.json"))
    }
}

/// Reads and validates a lab file.
pub fn load(path: &Path) -> Result<Lab, ConfigErrors> {
    let src = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            loc: Loc { line: 0, col: 0 },
            field: "(file)".into(),
            message: format!("cannot read the lab file: {e}"),
            kind: ErrorKind::Invalid,
        }])
    })?;
    parse(&src, path)
}

/// Validates lab-file text; `path` names the file in errors and anchors relative paths.
pub fn parse(src: &str, path: &Path) -> Result<Lab, ConfigErrors> {
    validate::parse(src, path)
}
