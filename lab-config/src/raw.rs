//! The lab file exactly as written: serde structs that reject unknown keys and keep each value's
//! position, before any validation.

use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLab {
    pub name: S<String>,
    pub plugin_dirs: Option<S<Vec<S<String>>>>,
    pub storage: Option<RawStorage>,
    #[serde(default)]
    pub buses: Vec<S<RawBus>>,
    #[serde(default)]
    pub relays: Vec<S<RawRelay>>,
    #[serde(default)]
    pub sensors: Vec<S<RawSensor>>,
    #[serde(default)]
    pub boards: Vec<S<RawBoard>>,
    pub mqtt: Option<S<RawMqtt>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    pub path: Option<S<String>>,
    pub models: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBus {
    pub name: S<String>,
    pub device: Option<S<String>>,
    pub simulated: Option<S<bool>>,
    pub frequency_hz: Option<S<u32>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RawRelayDriver {
    Gpio,
    UsbHid,
    UsbPort,
    Command,
    Simulated,
}

impl RawRelayDriver {
    pub fn name(self) -> &'static str {
        match self {
            RawRelayDriver::Gpio => "gpio",
            RawRelayDriver::UsbHid => "usb-hid",
            RawRelayDriver::UsbPort => "usb-port",
            RawRelayDriver::Command => "command",
            RawRelayDriver::Simulated => "simulated",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelay {
    pub name: S<String>,
    pub driver: S<RawRelayDriver>,
    pub chip: Option<S<String>>,
    pub line: Option<S<u32>>,
    pub active_low: Option<S<bool>>,
    pub vid: Option<S<u16>>,
    pub pid: Option<S<u16>>,
    pub serial: Option<S<String>>,
    pub channel: Option<S<u8>>,
    pub hub: Option<S<String>>,
    pub port: Option<S<u8>>,
    pub on: Option<S<Vec<String>>>,
    pub off: Option<S<Vec<String>>>,
    pub status: Option<S<Vec<String>>>,
    pub timeout_s: Option<S<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSensor {
    pub name: S<String>,
    pub chip: S<String>,
    pub bus: S<String>,
    pub address: S<u8>,
    pub shunt_ohms: S<f64>,
    pub max_current_a: S<f64>,
    pub adc_bits: Option<S<u8>>,
    pub averaging: Option<S<u16>>,
    pub channel: Option<S<u8>>,
    pub sample_rate_sps: Option<S<f64>>,
    pub bipolar: Option<S<bool>>,
    pub rate_hz: Option<S<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBoard {
    pub name: S<String>,
    pub platform: S<String>,
    pub profile: S<String>,
    pub relay: Option<S<String>>,
    pub sensor: Option<S<String>>,
    pub serial: Option<S<String>>,
    pub usb_serial: Option<S<String>>,
    pub usb_id: Option<S<String>>,
    pub usb_interface: Option<S<u8>>,
    pub baud: Option<S<u32>>,
    pub reset: Option<S<RawReset>>,
    pub hang_timeout_s: Option<S<f64>>,
    /// A single-board computer reached over SSH.
    pub host: Option<S<String>>,
    pub port: Option<S<u16>>,
    pub user: Option<S<String>>,
    pub identity: Option<S<String>>,
    pub known_hosts: Option<S<String>>,
    /// The posix firmware built for the board (default: the host's own).
    pub firmware: Option<S<String>>,
    /// How a flashed board is flashed: the tool, its program, which probe.
    pub flash_tool: Option<S<String>>,
    pub flash_program: Option<S<String>>,
    pub probe_serial: Option<S<String>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RawReset {
    None,
    Dtr,
    Rts,
    PowerCycle,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RawMqttMode {
    Embedded,
    External,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    pub mode: Option<S<RawMqttMode>>,
    pub listen: Option<S<String>>,
    pub url: Option<S<String>>,
    pub client_id: Option<S<String>>,
    pub username: Option<S<String>>,
    pub password_env: Option<S<String>>,
    pub password_file: Option<S<String>>,
    pub ca: Option<S<String>>,
    pub cert: Option<S<String>>,
    pub key: Option<S<String>>,
    pub prefix: Option<S<String>>,
}
