//! I2C buses the host owns and lends to sensor plugins: a Linux `/dev/i2c-N` through
//! linux-embedded-hal, or a simulated bus whose transfers take as long as they would on a real bus
//! at its `frequency_hz` and reach register-level simulated chips.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RSlice, RSliceMut},
};
use embedded_hal::i2c::{Error as _, ErrorKind, I2c as _, NoAcknowledgeSource};
use labctl_plugin_api::{wire, I2cBus, I2cBusBox, I2cBus_TO, I2cDeviceBox, I2cError, I2cErrorKind};
use linux_embedded_hal::I2cdev;

use crate::clock;

/// A simulated I2C bus: one transfer at a time, each occupying the bus for its bit time.
pub struct SimBus {
    freq_hz: u32,
    inner: Mutex<SimInner>,
    /// A device that falls off the bus (stops acknowledging) at a given time: fault injection
    /// through [`UNPLUG_ENV`], so tests and users can watch a sensor fail mid-run.
    unplug: Option<(u8, Instant)>,
}

/// `LABCTL_SIM_UNPLUG=BUS:ADDRESS@DELAY` (e.g. `i2c-sim:0x40@300ms`): on the simulated bus BUS,
/// the device at ADDRESS stops acknowledging DELAY after the bus was set up.
pub const UNPLUG_ENV: &str = "LABCTL_SIM_UNPLUG";

/// Parses [`UNPLUG_ENV`]'s value for the bus `bus`.
fn parse_unplug(v: &str, bus: &str) -> Result<Option<(u8, Duration)>, String> {
    let bad = || format!("{UNPLUG_ENV}={v:?}: expected BUS:ADDRESS@DELAY, e.g. i2c-sim:0x40@300ms");
    let (name, rest) = v.rsplit_once(':').ok_or_else(bad)?;
    let (addr, delay) = rest.split_once('@').ok_or_else(bad)?;
    let addr = match addr.strip_prefix("0x") {
        Some(h) => u8::from_str_radix(h, 16),
        None => addr.parse(),
    }
    .map_err(|_| bad())?;
    let delay = crate::units::parse_duration(delay).map_err(|e| format!("{}: {e}", bad()))?;
    Ok((name == bus).then_some((addr, delay)))
}

struct SimInner {
    devices: HashMap<u8, I2cDeviceBox>,
    busy_until: Instant,
}

impl SimBus {
    pub fn new(name: &str, freq_hz: u32) -> Arc<SimBus> {
        let now = Instant::now();
        let unplug = match std::env::var(UNPLUG_ENV) {
            Ok(v) => match parse_unplug(&v, name) {
                Ok(u) => u.map(|(a, d)| (a, now + d)),
                Err(e) => {
                    tracing::warn!("{e}; ignored");
                    None
                }
            },
            Err(_) => None,
        };
        Arc::new(SimBus {
            freq_hz,
            inner: Mutex::new(SimInner {
                devices: HashMap::new(),
                busy_until: now,
            }),
            unplug,
        })
    }

    pub fn attach(&self, address: u8, dev: I2cDeviceBox) {
        self.lock().devices.insert(address, dev);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimInner> {
        // A panic elsewhere cannot leave the device map inconsistent: keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Occupies the bus for `bits` clock periods, then lets `f` act on the addressed device at
    /// the transfer's end time.
    fn transfer<T>(
        &self,
        address: u8,
        bits: u32,
        f: impl FnOnce(&mut I2cDeviceBox, u64) -> RResult<T, I2cError>,
    ) -> RResult<T, I2cError> {
        // Reserve the next free slot on the bus, then wait for it to pass without holding the
        // lock, so that waiting transfers queue up the way they would behind a real bus master.
        let end = {
            let mut inner = self.lock();
            let start = inner.busy_until.max(Instant::now());
            let end = start
                + Duration::from_nanos(u64::from(bits) * 1_000_000_000 / u64::from(self.freq_hz));
            inner.busy_until = end;
            end
        };
        clock::wait_until(end);
        if self.unplug.is_some_and(|(a, at)| a == address && end >= at) {
            return RResult::RErr(I2cError::new(
                I2cErrorKind::NoAcknowledgeAddress,
                format!("device {address:#04x} no longer acknowledges (unplugged by {UNPLUG_ENV})"),
            ));
        }
        let t_ns = clock::ns_of(end);
        let mut inner = self.lock();
        match inner.devices.get_mut(&address) {
            Some(dev) => f(dev, t_ns),
            None => RResult::RErr(I2cError::new(
                I2cErrorKind::NoAcknowledgeAddress,
                format!("no device acknowledged address {address:#04x} on the simulated bus"),
            )),
        }
    }

    /// A handle to lend to a sensor plugin.
    pub fn handle(self: &Arc<Self>) -> I2cBusBox {
        I2cBus_TO::from_value(SimBusHandle(self.clone()), TD_Opaque)
    }
}

struct SimBusHandle(Arc<SimBus>);

impl I2cBus for SimBusHandle {
    fn write(&mut self, address: u8, bytes: RSlice<'_, u8>) -> RResult<(), I2cError> {
        let bits = wire::write_bits(bytes.len() as u32);
        self.0.transfer(address, bits, |d, t| d.on_write(t, bytes))
    }

    fn read(&mut self, address: u8, buf: RSliceMut<'_, u8>) -> RResult<(), I2cError> {
        let bits = wire::read_bits(buf.len() as u32);
        self.0.transfer(address, bits, |d, t| d.on_read(t, buf))
    }

    fn write_read(
        &mut self,
        address: u8,
        bytes: RSlice<'_, u8>,
        buf: RSliceMut<'_, u8>,
    ) -> RResult<(), I2cError> {
        let bits = wire::write_read_bits(bytes.len() as u32, buf.len() as u32);
        self.0
            .transfer(address, bits, |d, t| match d.on_write(t, bytes) {
                RResult::ROk(()) => d.on_read(t, buf),
                e => e,
            })
    }
}

/// A Linux i2c-dev bus shared by the sensors on it.
pub struct LinuxBus(Arc<Mutex<I2cdev>>);

impl LinuxBus {
    pub fn open(path: &Path) -> Result<LinuxBus, String> {
        I2cdev::new(path)
            .map(|d| LinuxBus(Arc::new(Mutex::new(d))))
            .map_err(|e| format!("cannot open I2C bus {}: {e}", path.display()))
    }

    pub fn handle(&self) -> I2cBusBox {
        I2cBus_TO::from_value(LinuxBusHandle(self.0.clone()), TD_Opaque)
    }
}

struct LinuxBusHandle(Arc<Mutex<I2cdev>>);

fn map_err(e: linux_embedded_hal::I2CError) -> I2cError {
    let kind = match e.kind() {
        ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data) => I2cErrorKind::NoAcknowledgeData,
        ErrorKind::NoAcknowledge(_) => I2cErrorKind::NoAcknowledgeAddress,
        ErrorKind::Bus => I2cErrorKind::Bus,
        ErrorKind::ArbitrationLoss => I2cErrorKind::ArbitrationLoss,
        ErrorKind::Overrun => I2cErrorKind::Overrun,
        _ => I2cErrorKind::Other,
    };
    I2cError::new(kind, e.to_string())
}

impl LinuxBusHandle {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut I2cdev) -> Result<T, linux_embedded_hal::I2CError>,
    ) -> RResult<T, I2cError> {
        let mut dev = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut dev).map_err(map_err).into()
    }
}

impl I2cBus for LinuxBusHandle {
    fn write(&mut self, address: u8, bytes: RSlice<'_, u8>) -> RResult<(), I2cError> {
        self.with(|d| d.write(address, bytes.as_slice()))
    }

    fn read(&mut self, address: u8, mut buf: RSliceMut<'_, u8>) -> RResult<(), I2cError> {
        self.with(|d| d.read(address, buf.as_mut_slice()))
    }

    fn write_read(
        &mut self,
        address: u8,
        bytes: RSlice<'_, u8>,
        mut buf: RSliceMut<'_, u8>,
    ) -> RResult<(), I2cError> {
        self.with(|d| d.write_read(address, bytes.as_slice(), buf.as_mut_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unplug_spec_is_parsed_for_its_bus_only() {
        assert_eq!(
            parse_unplug("i2c-sim:0x40@300ms", "i2c-sim"),
            Ok(Some((0x40, Duration::from_millis(300))))
        );
        assert_eq!(parse_unplug("i2c-sim:64@1s", "other"), Ok(None));
        for bad in [
            "",
            "i2c-sim",
            "i2c-sim:0x40",
            "i2c-sim:0xZZ@1s",
            "i2c-sim:0x40@soon",
        ] {
            assert!(parse_unplug(bad, "i2c-sim").is_err(), "{bad}");
        }
    }
}
