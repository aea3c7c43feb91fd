//! The real `ina219` driver (through the plugin's sensor type) against the register-level simulated
//! chip: readings match the rail within one LSB across calibrations; flags as the datasheet says.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RSlice, RSliceMut},
};
use labctl_plugin_api::{wire, I2cBus, I2cBus_TO, I2cError, RailPoint, SensorConfig};
use labctl_sensor_ina219::{sim::SimIna219, Ina219};

type Shared = Arc<Mutex<RailPoint>>;

/// A one-chip bus on a virtual clock that advances by each transfer's duration at 400 kHz.
struct TestBus {
    chip: SimIna219<Box<dyn Fn(u64) -> RailPoint + Send>>,
    clock: Arc<AtomicU64>,
}

impl TestBus {
    fn tick(&self, bits: u32) -> u64 {
        self.clock
            .fetch_add(u64::from(bits) * 2_500, Ordering::SeqCst)
    }
}

impl I2cBus for TestBus {
    fn write(&mut self, _a: u8, bytes: RSlice<'_, u8>) -> RResult<(), I2cError> {
        let t = self.tick(wire::write_bits(bytes.len() as u32));
        self.chip.write(t, bytes.as_slice()).into()
    }
    fn read(&mut self, _a: u8, mut buf: RSliceMut<'_, u8>) -> RResult<(), I2cError> {
        let t = self.tick(wire::read_bits(buf.len() as u32));
        self.chip.read(t, buf.as_mut_slice()).into()
    }
    fn write_read(
        &mut self,
        _a: u8,
        bytes: RSlice<'_, u8>,
        mut buf: RSliceMut<'_, u8>,
    ) -> RResult<(), I2cError> {
        let t = self.tick(wire::write_read_bits(bytes.len() as u32, buf.len() as u32));
        if let Err(e) = self.chip.write(t, bytes.as_slice()) {
            return RResult::RErr(e);
        }
        self.chip.read(t, buf.as_mut_slice()).into()
    }
}

fn cfg(shunt_ohms: f64, max_current_a: f64, adc_bits: u8) -> SensorConfig {
    SensorConfig {
        chip: "ina219".into(),
        address: 0x40,
        channel: 1,
        shunt_ohms,
        max_current_a,
        adc_bits,
        averaging: 1,
        rate_hz: 100.0,
        sample_rate_sps: 0.0,
        bipolar: false,
    }
}

fn open(c: &SensorConfig) -> (Ina219, Shared, Arc<AtomicU64>) {
    let rail: Shared = Arc::new(Mutex::new(RailPoint {
        bus_volts: 5.0,
        amps: 0.0,
    }));
    let r = rail.clone();
    let clock = Arc::new(AtomicU64::new(0));
    let bus = TestBus {
        chip: SimIna219::new(Box::new(move |_| *r.lock().unwrap()), c.shunt_ohms),
        clock: clock.clone(),
    };
    let dev = Ina219::open(I2cBus_TO::from_value(bus, TD_Opaque), c).expect("driver opens");
    (dev, rail, clock)
}

#[test]
fn driver_reads_rail_within_one_lsb_across_calibrations() {
    // (shunt Ω, full-scale A, test currents A)
    let cases = [
        (0.1, 3.2, [0.0123, 0.5, 2.9]),
        (0.1, 0.4, [0.0012, 0.08, 0.39]),
        (1.0, 0.032, [0.0001, 0.0101, 0.031]),
        (0.01, 10.0, [0.25, 3.3, 9.5]),
    ];
    for (ohms, max_a, currents) in cases {
        let c = cfg(ohms, max_a, 12);
        let (mut dev, rail, clock) = open(&c);
        let current_lsb_ma = (max_a * 1e6 / 32768.0).ceil() / 1000.0;
        for (i, amps) in currents.into_iter().enumerate() {
            let volts = [3.3, 5.0, 12.0][i];
            *rail.lock().unwrap() = RailPoint {
                bus_volts: volts,
                amps,
            };
            // Let two full conversion cycles pass so the registers hold the new rail.
            clock.fetch_add(3_000_000, Ordering::SeqCst);
            let s = dev.self_test().expect("self test");
            // The chip's current register is the datasheet arithmetic on the quantised shunt
            // voltage: bit-exact, and within one current LSB plus the calibration's truncation
            // and the void FS0 bit (together up to 2·|I|/Cal) of the rail.
            let lsb_ua = (max_a * 1e6 / 32768.0).ceil();
            // Bit 0 of the calibration register (FS0) is void on the chip: it always reads 0.
            let cal = f64::from(((0.04096 / (lsb_ua * 1e-6 * ohms)).trunc() as u32) & !1);
            let shunt_counts = (amps * ohms / 10e-6).round();
            let reg = (shunt_counts * cal / 4096.0).trunc();
            assert_eq!(
                s.current_ma,
                reg * lsb_ua / 1000.0,
                "current register arithmetic"
            );
            let want_ma = amps * 1000.0;
            let tol = current_lsb_ma + 2.0 * want_ma / cal + 0.01 / ohms;
            assert!(
                (s.current_ma - want_ma).abs() <= tol,
                "{ohms} Ω / {max_a} A: current {} mA vs rail {want_ma} mA (tolerance {tol} mA)",
                s.current_ma
            );
            assert!(
                (s.bus_mv - volts * 1000.0).abs() <= 4.0,
                "bus {} mV vs {volts} V",
                s.bus_mv
            );
            let fast = dev.sample().expect("sample");
            // Fast path: shunt within one LSB (10 µV), so current within 10 µV / R.
            assert!((fast.shunt_uv - amps * ohms * 1e6).abs() <= 10.0);
            assert!((fast.current_ma - want_ma).abs() <= 0.01 / ohms + 1e-9);
            assert!((fast.bus_mv - volts * 1000.0).abs() <= 4.0);
            assert!(!fast.overflow);
        }
    }
}

#[test]
fn shunt_over_range_is_flagged() {
    // 0.4 A full scale on 0.1 Ω picks the 40 mV range; 0.6 A is 60 mV: over range.
    let c = cfg(0.1, 0.4, 12);
    let (mut dev, rail, clock) = open(&c);
    *rail.lock().unwrap() = RailPoint {
        bus_volts: 5.0,
        amps: 0.6,
    };
    clock.fetch_add(3_000_000, Ordering::SeqCst);
    assert!(dev.sample().unwrap().overflow);
}

#[test]
fn invalid_configurations_are_refused() {
    use labctl_sensor_ina219::sensor_timing;
    assert!(sensor_timing(&cfg(0.1, 3.2, 13)).is_err());
    assert!(
        sensor_timing(&cfg(1.0, 1.0, 12)).is_err(),
        "1 V across the shunt"
    );
    let mut c = cfg(0.1, 3.2, 11);
    c.averaging = 4;
    assert!(sensor_timing(&c).is_err(), "averaging needs 12-bit");
    c.address = 0x20;
    c.averaging = 1;
    assert!(sensor_timing(&c).is_err());
    // 11-bit shunt + bus: 2 × 276 µs.
    let t = sensor_timing(&cfg(0.1, 3.2, 11)).unwrap();
    assert_eq!(t.min_period_us, 552.0);
}
