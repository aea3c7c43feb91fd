//! The power-driver plugin: the built-in ways to switch a board's supply, one module each —
//! [`gpio`] (a relay on a GPIO line), [`usb_hid`] (the common "USBRelayN" HID relay boards),
//! [`usb_port`] (per-port power of a USB hub), [`command`] (a user's own programs, e.g. for a smart
//! plug) and [`simulated`]. The host passes a relay's lab-file keys as a JSON object; opening
//! switches nothing.

pub mod command;
pub mod gpio;
pub mod simulated;
pub mod usb_hid;
pub mod usb_port;

use abi_stable::{
    export_root_module,
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{RNone, RResult, RSome, RStr, RString, RVec},
};
use labctl_plugin_api::{
    guard, plugin_info, ErrorKind, PluginError, PluginInfo, PluginMod, PluginModRef, PowerApi,
    PowerSwitch, PowerSwitchBox, PowerSwitch_TO,
};

#[export_root_module]
pub fn get_library() -> PluginModRef {
    PluginMod {
        info,
        platform: RNone,
        sensor: RNone,
        power: RSome(PowerApi { drivers, open }.leak_into_prefix()),
    }
    .leak_into_prefix()
}

extern "C" fn info() -> PluginInfo {
    plugin_info(
        "power",
        env!("CARGO_PKG_VERSION"),
        "power drivers: gpio, usb-hid, usb-port, command, simulated",
    )
}

/// The drivers this plugin serves, as a relay's `driver` key names them.
pub const DRIVERS: &[&str] = &["gpio", "usb-hid", "usb-port", "command", "simulated"];

extern "C" fn drivers() -> RVec<RString> {
    DRIVERS.iter().map(|d| RString::from(*d)).collect()
}

/// A relay's keys are not what its driver needs.
pub fn bad_keys(driver: &str, e: impl std::fmt::Display) -> PluginError {
    PluginError::new(
        ErrorKind::InvalidConfig,
        format!("{driver} relay keys: {e}"),
    )
}

fn boxed(s: impl PowerSwitch + 'static) -> PowerSwitchBox {
    PowerSwitch_TO::from_value(s, TD_Opaque)
}

/// Opens one relay without switching it.
pub fn open_switch(driver: &str, keys: &str) -> Result<PowerSwitchBox, PluginError> {
    let keys: serde_json::Value = serde_json::from_str(keys).map_err(|e| bad_keys(driver, e))?;
    Ok(match driver {
        "gpio" => boxed(gpio::Gpio::from_keys(&keys)?),
        "usb-hid" => boxed(usb_hid::UsbHid::from_keys(&keys)?),
        "usb-port" => boxed(usb_port::UsbPort::from_keys(&keys)?),
        "command" => boxed(command::CommandSwitch::from_keys(&keys)?),
        "simulated" => boxed(simulated::Simulated),
        other => {
            return Err(PluginError::new(
                ErrorKind::Unsupported,
                format!(
                    "no power driver {other:?} here (drivers: {})",
                    DRIVERS.join(", ")
                ),
            ))
        }
    })
}

extern "C" fn open(driver: RStr<'_>, keys: RStr<'_>) -> RResult<PowerSwitchBox, PluginError> {
    guard(|| open_switch(driver.as_str(), keys.as_str()))
}

/// The root that `/sys` and `/dev` are under (`LABCTL_SYSROOT` in tests), as the host uses.
pub fn sysroot() -> std::path::PathBuf {
    std::env::var_os("LABCTL_SYSROOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/"))
}
