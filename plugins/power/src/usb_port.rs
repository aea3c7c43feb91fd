//! `driver = "usb-port"`: per-port power switching of a USB hub (`uhubctl`'s job), for boards
//! powered from a hub port. Keys: `hub` (the hub's location, e.g. `1-1.2`, or `usb1` for a root
//! hub) and `port` (1-based). On current kernels through sysfs (`…/<hub>-port<N>/disable`,
//! 1 = off); where that file is missing, with libusb: the USB 2.0 hub class request
//! SET_FEATURE / CLEAR_FEATURE(PORT_POWER) to the port. After power-on it waits (up to
//! [`ENUMERATE_WAIT`]) for the board to enumerate again, so its console is there when the host
//! looks for it. Only hubs with per-port power switching really cut the supply.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use abi_stable::std_types::{ROption, RResult, RSome};
use labctl_plugin_api::{guard, ErrorKind, PluginError, PowerSwitch, Step};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct UsbPort {
    pub hub: String,
    pub port: u8,
}

/// How long power-on waits for the board behind the port to enumerate.
pub const ENUMERATE_WAIT: Duration = Duration::from_secs(5);

/// bmRequestType of a hub class request to a port (host to device, class, other).
pub const PORT_REQUEST_TYPE: u8 = 0x23;
pub const SET_FEATURE: u8 = 0x03;
pub const CLEAR_FEATURE: u8 = 0x01;
pub const GET_STATUS: u8 = 0x00;
/// The PORT_POWER feature selector (USB 2.0, table 11-17).
pub const PORT_POWER: u16 = 8;

/// The control transfer that switches `port`'s power: (bmRequestType, bRequest, wValue, wIndex).
pub fn port_power_request(port: u8, on: bool) -> (u8, u8, u16, u16) {
    (
        PORT_REQUEST_TYPE,
        if on { SET_FEATURE } else { CLEAR_FEATURE },
        PORT_POWER,
        u16::from(port),
    )
}

/// sysfs names: the hub's interface and the port device under it. A root hub `usbN` has
/// interface `N-0:1.0` and ports `usbN-portM`; any other hub `L` has `L:1.0` and `L-portM`.
pub fn disable_path(root: &Path, hub: &str, port: u8) -> PathBuf {
    let intf = match hub.strip_prefix("usb") {
        Some(bus) => format!("{bus}-0:1.0"),
        None => format!("{hub}:1.0"),
    };
    root.join("sys/bus/usb/devices")
        .join(intf)
        .join(format!("{hub}-port{port}"))
        .join("disable")
}

/// Where the device behind the port shows up once it has enumerated.
pub fn child_path(root: &Path, hub: &str, port: u8) -> PathBuf {
    let name = match hub.strip_prefix("usb") {
        Some(bus) => format!("{bus}-{port}"),
        None => format!("{hub}.{port}"),
    };
    root.join("sys/bus/usb/devices").join(name)
}

impl UsbPort {
    pub fn from_keys(keys: &serde_json::Value) -> Result<UsbPort, PluginError> {
        let p = UsbPort::deserialize(keys).map_err(|e| crate::bad_keys("usb-port", e))?;
        if p.port == 0 || p.hub.is_empty() {
            return Err(crate::bad_keys(
                "usb-port",
                "`hub` is a hub location such as \"1-1.2\" and `port` is 1 or more",
            ));
        }
        Ok(p)
    }

    fn what(&self) -> String {
        format!("USB hub {} port {}", self.hub, self.port)
    }

    fn io(&self, e: impl std::fmt::Display) -> PluginError {
        PluginError::new(ErrorKind::Io, format!("{}: {e}", self.what()))
    }

    /// The hub as libusb sees it: bus number and port chain from its location.
    fn hub_device(&self) -> Result<rusb::DeviceHandle<rusb::Context>, PluginError> {
        use rusb::UsbContext;
        let (bus, chain): (u8, Vec<u8>) = match self.hub.strip_prefix("usb") {
            Some(b) => (
                b.parse().map_err(|_| self.io("not a hub location"))?,
                vec![],
            ),
            None => {
                let (b, ports) = self
                    .hub
                    .split_once('-')
                    .ok_or_else(|| self.io("not a hub location"))?;
                let chain = ports
                    .split('.')
                    .map(|p| p.parse::<u8>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| self.io("not a hub location"))?;
                (b.parse().map_err(|_| self.io("not a hub location"))?, chain)
            }
        };
        let ctx = rusb::Context::new().map_err(|e| self.io(e))?;
        for dev in ctx.devices().map_err(|e| self.io(e))?.iter() {
            if dev.bus_number() == bus && dev.port_numbers().ok().as_deref() == Some(&chain[..]) {
                return dev.open().map_err(|e| self.io(e));
            }
        }
        Err(self.io("no such hub attached"))
    }

    fn switch(&self, on: bool) -> Result<(), PluginError> {
        let root = crate::sysroot();
        let disable = disable_path(&root, &self.hub, self.port);
        if disable.exists() {
            std::fs::write(&disable, if on { "0" } else { "1" })
                .map_err(|e| self.io(format!("writing {}: {e}", disable.display())))?;
        } else {
            let (rt, rq, v, i) = port_power_request(self.port, on);
            self.hub_device()?
                .write_control(rt, rq, v, i, &[], Duration::from_millis(1000))
                .map_err(|e| self.io(e))?;
        }
        if on {
            // The board re-enumerates: wait for it, so that its console can be found.
            let child = child_path(&root, &self.hub, self.port);
            let deadline = Instant::now() + ENUMERATE_WAIT;
            while !child.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    fn read(&self) -> Result<bool, PluginError> {
        let disable = disable_path(&crate::sysroot(), &self.hub, self.port);
        if let Ok(s) = std::fs::read_to_string(&disable) {
            return Ok(s.trim() == "0");
        }
        // GET_STATUS to the port: wPortStatus bit 8 is PORT_POWER.
        let mut st = [0u8; 4];
        self.hub_device()?
            .read_control(
                0xA3,
                GET_STATUS,
                0,
                u16::from(self.port),
                &mut st,
                Duration::from_millis(1000),
            )
            .map_err(|e| self.io(e))?;
        Ok(u16::from_le_bytes([st[0], st[1]]) & (1 << PORT_POWER) != 0)
    }
}

impl PowerSwitch for UsbPort {
    fn set(&mut self, on: bool) -> RResult<(), PluginError> {
        guard(|| self.switch(on))
    }

    fn state(&mut self) -> RResult<ROption<bool>, PluginError> {
        guard(|| self.read().map(RSome))
    }

    fn plan(&self, on: bool) -> Step {
        let disable = disable_path(&crate::sysroot(), &self.hub, self.port);
        let (rt, rq, v, i) = port_power_request(self.port, on);
        Step::new(
            "power",
            &[],
            &format!(
                "{}: write {} to {} (or hub request {rt:#04x} {} PORT_POWER={v} port {i})",
                self.what(),
                if on { 0 } else { 1 },
                disable.display(),
                if rq == SET_FEATURE {
                    "SET_FEATURE"
                } else {
                    "CLEAR_FEATURE"
                }
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_the_usb2_hub_class_port_power_request() {
        assert_eq!(port_power_request(3, true), (0x23, 0x03, 8, 3));
        assert_eq!(port_power_request(1, false), (0x23, 0x01, 8, 1));
    }

    #[test]
    fn sysfs_paths_for_hubs_and_root_hubs() {
        let r = Path::new("/");
        assert_eq!(
            disable_path(r, "1-1.2", 3),
            Path::new("/sys/bus/usb/devices/1-1.2:1.0/1-1.2-port3/disable")
        );
        assert_eq!(
            disable_path(r, "usb1", 2),
            Path::new("/sys/bus/usb/devices/1-0:1.0/usb1-port2/disable")
        );
        assert_eq!(
            child_path(r, "1-1.2", 3),
            Path::new("/sys/bus/usb/devices/1-1.2.3")
        );
        assert_eq!(
            child_path(r, "usb1", 2),
            Path::new("/sys/bus/usb/devices/1-2")
        );
    }
}
