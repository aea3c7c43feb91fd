//! `driver = "usb-hid"`: the common "USBRelayN" HID relay boards (dcttech, V-USB, 16c0:05df).
//! Switching is a HID SET_REPORT of feature report 0 (`0xFF` = on, `0xFD` = off, then the 1-based
//! channel); the board's serial number and every channel's state come back in the feature report
//! (GET_REPORT): five serial characters, then the states as a bit mask in byte 7.
//! Keys: `vid`, `pid`, `serial` (optional), `channel`.

use std::time::Duration;

use abi_stable::std_types::{ROption, RResult, RSome};
use labctl_plugin_api::{guard, ErrorKind, PluginError, PowerSwitch, Step};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct UsbHid {
    pub vid: u16,
    pub pid: u16,
    #[serde(default)]
    pub serial: Option<String>,
    pub channel: u8,
}

/// The SET_REPORT control transfer: (bmRequestType, bRequest, wValue, wIndex). Class request to
/// the interface, SET_REPORT (0x09), report type feature (3) and id 0.
pub const SET_REPORT: (u8, u8, u16, u16) = (0x21, 0x09, 0x0300, 0);
/// The GET_REPORT control transfer reading the feature report back.
pub const GET_REPORT: (u8, u8, u16, u16) = (0xA1, 0x01, 0x0300, 0);

/// The 8 bytes that switch `channel` on or off.
pub fn report(on: bool, channel: u8) -> [u8; 8] {
    [if on { 0xFF } else { 0xFD }, channel, 0, 0, 0, 0, 0, 0]
}

/// From a feature report: the board's serial and whether `channel` is on.
pub fn parse_report(buf: &[u8; 8], channel: u8) -> (String, bool) {
    let serial = String::from_utf8_lossy(&buf[..5])
        .trim_end_matches('\0')
        .to_string();
    let on = (1..=8).contains(&channel) && buf[7] & (1 << (channel - 1)) != 0;
    (serial, on)
}

const TIMEOUT: Duration = Duration::from_millis(500);

impl UsbHid {
    pub fn from_keys(keys: &serde_json::Value) -> Result<UsbHid, PluginError> {
        let h = UsbHid::deserialize(keys).map_err(|e| crate::bad_keys("usb-hid", e))?;
        if !(1..=8).contains(&h.channel) {
            return Err(crate::bad_keys(
                "usb-hid",
                format!("channel {} is not 1-8", h.channel),
            ));
        }
        Ok(h)
    }

    fn what(&self) -> String {
        format!(
            "USB-HID relay {:04x}:{:04x}{} channel {}",
            self.vid,
            self.pid,
            self.serial
                .as_deref()
                .map(|s| format!(" serial {s}"))
                .unwrap_or_default(),
            self.channel
        )
    }

    /// The board's handle and its feature report, found by VID:PID and serial.
    fn find(&self) -> Result<(rusb::DeviceHandle<rusb::Context>, [u8; 8]), PluginError> {
        use rusb::UsbContext;
        let io = |e: rusb::Error| PluginError::new(ErrorKind::Io, format!("{}: {e}", self.what()));
        let ctx = rusb::Context::new().map_err(io)?;
        for dev in ctx.devices().map_err(io)?.iter() {
            let Ok(desc) = dev.device_descriptor() else {
                continue;
            };
            if desc.vendor_id() != self.vid || desc.product_id() != self.pid {
                continue;
            }
            let handle = dev.open().map_err(io)?;
            let mut buf = [0u8; 8];
            let (rt, rq, v, i) = GET_REPORT;
            handle
                .read_control(rt, rq, v, i, &mut buf, TIMEOUT)
                .map_err(io)?;
            // These boards keep their serial in the feature report, not the USB descriptor.
            let (serial, _) = parse_report(&buf, self.channel);
            if self.serial.as_deref().is_some_and(|want| want != serial) {
                continue;
            }
            let _ = handle.set_auto_detach_kernel_driver(true);
            return Ok((handle, buf));
        }
        Err(PluginError::new(
            ErrorKind::Io,
            format!("{}: no such device attached", self.what()),
        ))
    }
}

impl PowerSwitch for UsbHid {
    fn set(&mut self, on: bool) -> RResult<(), PluginError> {
        guard(|| {
            let (handle, _) = self.find()?;
            let (rt, rq, v, i) = SET_REPORT;
            handle
                .write_control(rt, rq, v, i, &report(on, self.channel), TIMEOUT)
                .map(|_| ())
                .map_err(|e| PluginError::new(ErrorKind::Io, format!("{}: {e}", self.what())))
        })
    }

    fn state(&mut self) -> RResult<ROption<bool>, PluginError> {
        guard(|| {
            let (_, buf) = self.find()?;
            Ok(RSome(parse_report(&buf, self.channel).1))
        })
    }

    fn plan(&self, on: bool) -> Step {
        let r = report(on, self.channel);
        Step::new(
            "power",
            &[],
            &format!(
                "{}: HID SET_REPORT feature [{}]",
                self.what(),
                r.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bytes_are_those_usbrelay_boards_take() {
        // What labctl sent before power drivers became a plugin (host/src/relay.rs, ABI 2).
        assert_eq!(SET_REPORT, (0x21, 0x09, 0x0300, 0));
        assert_eq!(report(true, 2), [0xFF, 2, 0, 0, 0, 0, 0, 0]);
        assert_eq!(report(false, 1), [0xFD, 1, 0, 0, 0, 0, 0, 0]);
        let buf = *b"QWERT\0\0\x05";
        assert_eq!(parse_report(&buf, 1), ("QWERT".to_string(), true));
        assert!(!parse_report(&buf, 2).1);
        assert!(parse_report(&buf, 3).1);
    }
}
