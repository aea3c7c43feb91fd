//! The INA219 power-sensor plugin: drives the chip with the `ina219` crate over the bus the host
//! lends it, and offers the register-level simulated chip ([`sim`]) for simulated buses.
//!
//! Sampling reads only the shunt and bus registers (two 16-bit register reads) and derives
//! current and power from the shunt resistor, so three sensors at 1 kHz fit one 400 kHz bus; the
//! chip's own current/power registers (which depend on calibration) are read by the self test.

pub mod bus;
pub mod sim;

use abi_stable::{
    export_root_module,
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{RNone, RResult, RSlice, RSliceMut, RSome, RVec},
};
use ina219::{
    address::Address,
    calibration::{IntCalibration, MicroAmpere},
    configuration::{
        BusVoltageRange, Configuration, MeasuredSignals, OperatingMode, Reset, Resolution,
        ShuntVoltageRange,
    },
    SyncIna219,
};
use labctl_plugin_api::{
    guard, plugin_info, wire, ChipInfo, ErrorKind, I2cBusBox, I2cDevice, I2cDeviceBox, I2cError,
    PluginError, PluginMod, PluginModRef, PowerSensor, PowerSensorBox, PowerSensor_TO, RailPoint,
    SensorApi, SensorConfig, SensorSample, SensorTiming, SupplyRailBox,
};

use crate::bus::BusAdapter;

pub const CHIP: &str = "ina219";

#[export_root_module]
pub fn get_library() -> PluginModRef {
    PluginMod {
        info,
        platform: RNone,
        sensor: RSome(sensor_api()),
        power: RNone,
    }
    .leak_into_prefix()
}

fn sensor_api() -> labctl_plugin_api::SensorApiRef {
    SensorApi {
        chips,
        timing,
        open,
        simulate,
    }
    .leak_into_prefix()
}

extern "C" fn info() -> labctl_plugin_api::PluginInfo {
    plugin_info(
        CHIP,
        env!("CARGO_PKG_VERSION"),
        "TI INA219 high-side current/power monitor (I2C), with a register-level simulated chip",
    )
}

extern "C" fn chips() -> RVec<ChipInfo> {
    RVec::from(vec![ChipInfo {
        name: CHIP.into(),
        description: "INA219: 12-bit shunt (10 µV LSB) and bus (4 mV LSB) ADC, 0x40-0x4F".into(),
        // 9-bit shunt + 9-bit bus: 84 µs + 84 µs.
        max_rate_hz: 1e6 / 168.0,
    }])
}

/// The ADC setting for a resolution/averaging pair (datasheet table 5).
pub fn resolution(adc_bits: u8, averaging: u16) -> Result<Resolution, PluginError> {
    let bad = |m: String| Err(PluginError::new(ErrorKind::InvalidConfig, m));
    match (adc_bits, averaging) {
        (9, 1) => Ok(Resolution::Res9Bit),
        (10, 1) => Ok(Resolution::Res10Bit),
        (11, 1) => Ok(Resolution::Res11Bit),
        (12, 1) => Ok(Resolution::Res12Bit),
        (12, 2) => Ok(Resolution::Avg2),
        (12, 4) => Ok(Resolution::Avg4),
        (12, 8) => Ok(Resolution::Avg8),
        (12, 16) => Ok(Resolution::Avg16),
        (12, 32) => Ok(Resolution::Avg32),
        (12, 64) => Ok(Resolution::Avg64),
        (12, 128) => Ok(Resolution::Avg128),
        (9..=11, a) if a > 1 => bad(format!(
            "the INA219 averages only at 12-bit resolution (adc_bits = {adc_bits}, averaging = {a})"
        )),
        (9..=12, a) => bad(format!(
            "averaging = {a} is not one the INA219 offers (1, 2, 4, 8, 16, 32, 64, 128)"
        )),
        (b, _) => bad(format!("adc_bits = {b}: the INA219 offers 9, 10, 11 or 12")),
    }
}

/// Smallest PGA range that holds the full-scale shunt voltage.
pub fn shunt_range(cfg: &SensorConfig) -> Result<ShuntVoltageRange, PluginError> {
    // Rounded to a nano-volt so that 3.2 A × 0.1 Ω counts as the 320 mV it is.
    let mv = (cfg.max_current_a * cfg.shunt_ohms * 1e9).round() / 1e6;
    Ok(if mv <= 40.0 {
        ShuntVoltageRange::Fsr40mv
    } else if mv <= 80.0 {
        ShuntVoltageRange::Fsr80mv
    } else if mv <= 160.0 {
        ShuntVoltageRange::Fsr160mv
    } else if mv <= 320.0 {
        ShuntVoltageRange::Fsr320mv
    } else {
        return Err(PluginError::new(
            ErrorKind::InvalidConfig,
            format!(
                "max_current_a × shunt_ohms = {mv:.0} mV exceeds the INA219's largest shunt range (320 mV)"
            ),
        ));
    })
}

/// Calibration from shunt and full-scale current: Current_LSB = max / 2^15, rounded up to a whole
/// µA; Cal = trunc(0.04096 / (Current_LSB × R)) (datasheet eq. 1, 2).
pub fn calibration(cfg: &SensorConfig) -> Result<IntCalibration, PluginError> {
    let lsb_ua = (cfg.max_current_a * 1e6 / 32768.0).ceil().max(1.0) as i64;
    let shunt_uohm = (cfg.shunt_ohms * 1e6).round();
    if !(1.0..=f64::from(u32::MAX)).contains(&shunt_uohm) {
        return Err(PluginError::new(
            ErrorKind::InvalidConfig,
            format!("shunt_ohms = {} is out of range", cfg.shunt_ohms),
        ));
    }
    IntCalibration::new(MicroAmpere(lsb_ua), shunt_uohm as u32).ok_or_else(|| {
        PluginError::new(
            ErrorKind::InvalidConfig,
            format!(
                "no INA219 calibration for shunt_ohms = {} and max_current_a = {}",
                cfg.shunt_ohms, cfg.max_current_a
            ),
        )
    })
}

fn validate(cfg: &SensorConfig) -> Result<(Resolution, ShuntVoltageRange), PluginError> {
    if !(0x40..=0x4F).contains(&cfg.address) {
        return Err(PluginError::new(
            ErrorKind::InvalidConfig,
            format!(
                "address {:#04x}: the INA219's A0/A1 pins select 0x40-0x4f",
                cfg.address
            ),
        ));
    }
    if !(cfg.shunt_ohms > 0.0 && cfg.max_current_a > 0.0) {
        return Err(PluginError::new(
            ErrorKind::InvalidConfig,
            "shunt_ohms and max_current_a must be positive",
        ));
    }
    let res = resolution(cfg.adc_bits, cfg.averaging)?;
    let range = shunt_range(cfg)?;
    calibration(cfg)?;
    Ok((res, range))
}

/// Two register reads per sample: shunt and bus, each a pointer write plus a 2-byte read.
pub const BUS_BITS_PER_SAMPLE: u32 = 2 * wire::write_read_bits(1, 2);

pub fn sensor_timing(cfg: &SensorConfig) -> Result<SensorTiming, PluginError> {
    let (res, _) = validate(cfg)?;
    Ok(SensorTiming {
        // Shunt and bus convert in turn with the same setting.
        min_period_us: 2.0 * f64::from(res.conversion_time_us()),
        bus_bits_per_sample: BUS_BITS_PER_SAMPLE,
    })
}

/// The one configuration of a single-channel chip: several are a mistake in the lab file.
fn single(cfgs: &[SensorConfig]) -> Result<&SensorConfig, PluginError> {
    match cfgs {
        [one] if one.channel <= 1 => Ok(one),
        [one] => Err(PluginError::new(
            ErrorKind::InvalidConfig,
            format!(
                "the INA219 has one channel; channel {} asked for",
                one.channel
            ),
        )),
        _ => Err(PluginError::new(
            ErrorKind::InvalidConfig,
            format!(
                "the INA219 has one channel; {} sensors share its address",
                cfgs.len()
            ),
        )),
    }
}

extern "C" fn timing(cfgs: RSlice<'_, SensorConfig>) -> RResult<SensorTiming, PluginError> {
    guard(|| sensor_timing(single(cfgs.as_slice())?))
}

/// An opened INA219.
pub struct Ina219 {
    dev: SyncIna219<BusAdapter, IntCalibration>,
    shunt_ohms: f64,
    shunt_fsr_10uv: i32,
}

impl Ina219 {
    /// Resets, checks and calibrates the chip, then configures it for continuous sampling.
    pub fn open(bus: I2cBusBox, cfg: &SensorConfig) -> Result<Self, PluginError> {
        let (res, range) = validate(cfg)?;
        let cal = calibration(cfg)?;
        let addr = Address::from_byte(cfg.address)
            .map_err(|_| PluginError::new(ErrorKind::InvalidConfig, "address out of range"))?;
        let mut dev = SyncIna219::new_calibrated(BusAdapter(bus), addr, cal).map_err(|e| {
            PluginError::new(
                ErrorKind::Io,
                format!(
                    "INA219 at {:#04x} did not initialise: {:?}",
                    cfg.address, e.reason
                ),
            )
        })?;
        dev.set_configuration(Configuration {
            reset: Reset::Run,
            bus_voltage_range: BusVoltageRange::Fsr32v,
            shunt_voltage_range: range,
            bus_resolution: res,
            shunt_resolution: res,
            operating_mode: OperatingMode::Continous(MeasuredSignals::ShutAndBusVoltage),
        })
        .map_err(|e| io_err(cfg.address, "configure", e))?;
        let shunt_fsr_10uv = i32::from(*range.range_mv().end()) * 100;
        Ok(Self {
            dev,
            shunt_ohms: cfg.shunt_ohms,
            shunt_fsr_10uv,
        })
    }

    /// Fast path: shunt and bus registers only.
    pub fn sample(&mut self) -> Result<SensorSample, PluginError> {
        // A failed transfer is an I/O error with the bus's own words; anything else is the
        // driver rejecting what it read.
        let shunt = self.dev.shunt_voltage().map_err(|e| match e {
            ina219::errors::ShuntVoltageReadError::I2cError(b) => read_err("shunt voltage", b),
            other => PluginError::new(ErrorKind::BadData, format!("shunt voltage: {other:?}")),
        })?;
        let bus = self.dev.bus_voltage().map_err(|e| match e {
            ina219::errors::BusVoltageReadError::I2cError(b) => read_err("bus voltage", b),
            other => PluginError::new(ErrorKind::BadData, format!("bus voltage: {other:?}")),
        })?;
        let shunt_10uv = i32::from(shunt.shunt_voltage_10uv());
        Ok(self.derive(shunt_10uv, bus.voltage_mv(), bus.has_math_overflowed()))
    }

    fn derive(&self, shunt_10uv: i32, bus_mv: u16, ovf: bool) -> SensorSample {
        let shunt_uv = f64::from(shunt_10uv) * 10.0;
        let current_ma = shunt_uv / self.shunt_ohms / 1000.0;
        let bus_mv = f64::from(bus_mv);
        SensorSample {
            channel: 1,
            bus_mv,
            shunt_uv,
            current_ma,
            power_mw: bus_mv * current_ma / 1000.0,
            overflow: ovf || shunt_10uv.abs() >= self.shunt_fsr_10uv,
            // The INA219 has no energy accumulator; the host integrates power.
            energy_mj: RNone,
        }
    }

    /// Thorough read: all measurement registers through the driver's checked path; current and
    /// power come from the chip's own registers.
    pub fn self_test(&mut self) -> Result<SensorSample, PluginError> {
        let m = match self.dev.next_measurement() {
            Ok(Some(m)) => m,
            Ok(None) => {
                // No conversion finished since the last power read: the registers still hold the
                // previous result, which is a valid test read.
                let mut s = self.sample()?;
                s.current_ma = f64::from(self.dev.current_raw().map_err(io_bus)?.0 as i16);
                return Ok(s);
            }
            Err(e) => {
                return Err(PluginError::new(
                    ErrorKind::BadData,
                    format!("INA219 measurement: {e:?}"),
                ))
            }
        };
        let mut s = self.derive(
            i32::from(m.shunt_voltage.shunt_voltage_10uv()),
            m.bus_voltage.voltage_mv(),
            m.bus_voltage.has_math_overflowed(),
        );
        s.current_ma = m.current.0 as f64 / 1000.0;
        s.power_mw = m.power.0 as f64 / 1000.0;
        Ok(s)
    }
}

fn read_err(what: &str, e: bus::BusError) -> PluginError {
    PluginError::new(ErrorKind::Io, format!("{what} read: {}", e.0.message))
}

fn io_bus(e: bus::BusError) -> PluginError {
    PluginError::new(ErrorKind::Io, format!("{}", e.0.message))
}

fn io_err(addr: u8, what: &str, e: bus::BusError) -> PluginError {
    PluginError::new(
        ErrorKind::Io,
        format!("INA219 at {addr:#04x}: {what}: {}", e.0.message),
    )
}

impl PowerSensor for Ina219 {
    fn sample(&mut self) -> RResult<RVec<SensorSample>, PluginError> {
        guard(|| Ina219::sample(self).map(|s| RVec::from(vec![s])))
    }
    fn self_test(&mut self) -> RResult<RVec<SensorSample>, PluginError> {
        guard(|| Ina219::self_test(self).map(|s| RVec::from(vec![s])))
    }
}

extern "C" fn open(
    bus: I2cBusBox,
    cfgs: RSlice<'_, SensorConfig>,
) -> RResult<PowerSensorBox, PluginError> {
    guard(|| {
        Ok(PowerSensor_TO::from_value(
            Ina219::open(bus, single(cfgs.as_slice())?)?,
            TD_Opaque,
        ))
    })
}

/// The simulated chip as a device on the host's simulated bus.
struct SimDevice(sim::SimIna219<RailAdapter>);

struct RailAdapter(SupplyRailBox);

impl sim::Rail for RailAdapter {
    fn at(&self, t_ns: u64) -> RailPoint {
        self.0.at(t_ns)
    }
}

impl I2cDevice for SimDevice {
    fn on_write(&mut self, t_ns: u64, bytes: RSlice<'_, u8>) -> RResult<(), I2cError> {
        self.0.write(t_ns, bytes.as_slice()).into()
    }
    fn on_read(&mut self, t_ns: u64, mut buf: RSliceMut<'_, u8>) -> RResult<(), I2cError> {
        self.0.read(t_ns, buf.as_mut_slice()).into()
    }
}

extern "C" fn simulate(
    cfgs: RSlice<'_, SensorConfig>,
    rails: RVec<SupplyRailBox>,
) -> RResult<I2cDeviceBox, PluginError> {
    guard(|| {
        let cfg = single(cfgs.as_slice())?;
        let rail = rails.into_iter().next().ok_or_else(|| {
            PluginError::new(
                ErrorKind::InvalidConfig,
                "a simulated INA219 needs its rail",
            )
        })?;
        let chip = sim::SimIna219::new(RailAdapter(rail), cfg.shunt_ohms);
        Ok(labctl_plugin_api::I2cDevice_TO::from_value(
            SimDevice(chip),
            TD_Opaque,
        ))
    })
}
