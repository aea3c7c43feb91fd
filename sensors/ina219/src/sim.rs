//! A register-level model of the TI INA219, written from the datasheet (SBOS448), not from the
//! driver, so that the real `ina219` driver can be tested against it.
//!
//! Modelled: the six registers (0 config, 1 shunt, 2 bus, 3 power, 4 current, 5 calibration),
//! the register pointer, reset, the operating modes (power-down, triggered, continuous, ADC off),
//! conversion times by resolution and averaging, LSB quantisation (shunt 10 µV, bus 4 mV, coarser
//! at 9–11 bits), PGA ranges, the current/power arithmetic, and the CNVR/OVF flags.
//! Time comes from the simulated bus (`t_ns`); values come from a [`SupplyRail`](labctl_plugin_api::SupplyRail).

use labctl_plugin_api::{I2cError, I2cErrorKind, RailPoint};

/// Register addresses.
pub const REG_CONFIG: u8 = 0;
pub const REG_SHUNT: u8 = 1;
pub const REG_BUS: u8 = 2;
pub const REG_POWER: u8 = 3;
pub const REG_CURRENT: u8 = 4;
pub const REG_CALIBRATION: u8 = 5;

/// Power-on value of the configuration register (datasheet table 4).
pub const CONFIG_DEFAULT: u16 = 0x399F;

/// Shunt register LSB in volts.
pub const SHUNT_LSB_V: f64 = 10e-6;
/// Bus register LSB in volts.
pub const BUS_LSB_V: f64 = 4e-3;

/// ADC setting (4 bits of BADC/SADC) → (conversion time in µs, samples averaged, resolution bits).
/// Datasheet table 5: 84/148/276/532 µs at 9–12 bit; 2…128 samples at 12 bit take 1.06…68.10 ms.
pub fn adc_setting(bits4: u16) -> (f64, u32, u32) {
    match bits4 & 0xF {
        0b0000 | 0b0100 => (84.0, 1, 9),
        0b0001 | 0b0101 => (148.0, 1, 10),
        0b0010 | 0b0110 => (276.0, 1, 11),
        0b0011 | 0b0111 | 0b1000 => (532.0, 1, 12),
        0b1001 => (1_060.0, 2, 12),
        0b1010 => (2_130.0, 4, 12),
        0b1011 => (4_260.0, 8, 12),
        0b1100 => (8_510.0, 16, 12),
        0b1101 => (17_020.0, 32, 12),
        0b1110 => (34_050.0, 64, 12),
        _ => (68_100.0, 128, 12),
    }
}

/// Where the rail is read: one function of time, so tests can drive it.
pub trait Rail: Send {
    fn at(&self, t_ns: u64) -> RailPoint;
}

impl<F: Fn(u64) -> RailPoint + Send> Rail for F {
    fn at(&self, t_ns: u64) -> RailPoint {
        self(t_ns)
    }
}

/// The simulated chip.
pub struct SimIna219<R: Rail> {
    rail: R,
    shunt_ohms: f64,
    config: u16,
    calibration: u16,
    pointer: u8,
    shunt: i16,
    bus_4mv: u16,
    current: i16,
    power: u16,
    cnvr: bool,
    ovf: bool,
    /// Start of the current conversion sequence (set by power-up, reset and mode writes).
    seq_start_ns: Option<u64>,
    /// Conversions completed since `seq_start_ns`.
    done: u64,
}

impl<R: Rail> SimIna219<R> {
    pub fn new(rail: R, shunt_ohms: f64) -> Self {
        Self {
            rail,
            shunt_ohms,
            config: CONFIG_DEFAULT,
            calibration: 0,
            pointer: 0,
            shunt: 0,
            bus_4mv: 0,
            current: 0,
            power: 0,
            cnvr: false,
            ovf: false,
            seq_start_ns: None,
            done: 0,
        }
    }

    fn reset(&mut self, t_ns: u64) {
        self.config = CONFIG_DEFAULT;
        self.calibration = 0;
        self.shunt = 0;
        self.bus_4mv = 0;
        self.current = 0;
        self.power = 0;
        self.cnvr = false;
        self.ovf = false;
        self.seq_start_ns = Some(t_ns);
        self.done = 0;
    }

    fn mode(&self) -> u16 {
        self.config & 0b111
    }

    fn shunt_setting(&self) -> (f64, u32, u32) {
        adc_setting((self.config >> 3) & 0xF)
    }

    fn bus_setting(&self) -> (f64, u32, u32) {
        adc_setting((self.config >> 7) & 0xF)
    }

    /// PGA full-scale range in volts (bits 12:11).
    fn shunt_fsr_v(&self) -> f64 {
        0.040 * f64::from(1u16 << ((self.config >> 11) & 0b11))
    }

    fn bus_fsr_v(&self) -> f64 {
        if self.config & (1 << 13) != 0 {
            32.0
        } else {
            16.0
        }
    }

    /// (measures shunt, measures bus) for the current mode.
    fn signals(&self) -> (bool, bool) {
        let m = self.mode();
        (m & 0b001 != 0, m & 0b010 != 0)
    }

    fn cycle_ns(&self) -> Option<u64> {
        let m = self.mode();
        if m == 0 || m == 0b100 {
            return None;
        }
        let (s, b) = self.signals();
        let mut us = 0.0;
        if s {
            us += self.shunt_setting().0;
        }
        if b {
            us += self.bus_setting().0;
        }
        Some((us * 1000.0).round() as u64)
    }

    /// Brings the registers up to time `t_ns`: finishes every conversion due by then.
    fn advance(&mut self, t_ns: u64) {
        let start = *self.seq_start_ns.get_or_insert(t_ns);
        let Some(cycle) = self.cycle_ns() else { return };
        if t_ns < start {
            return;
        }
        let triggered = self.mode() & 0b100 == 0;
        let mut due = (t_ns - start) / cycle.max(1);
        if triggered {
            due = due.min(1);
        }
        if due > self.done {
            self.done = due;
            let end = start + due * cycle;
            self.convert(end - cycle);
        }
    }

    /// Runs one conversion sequence over [t0, t1]: shunt first, then bus (datasheet 8.3.1),
    /// each the average of its samples spread evenly over its own conversion window.
    fn convert(&mut self, t0: u64) {
        let (s, b) = self.signals();
        let (s_us, s_n, s_bits) = self.shunt_setting();
        let (b_us, b_n, b_bits) = self.bus_setting();
        let mut t = t0;
        if s {
            let span = (s_us * 1000.0) as u64;
            let amps = self.average(t, span, s_n, |p| p.amps);
            let v = amps * self.shunt_ohms;
            let step = SHUNT_LSB_V * f64::from(1u32 << (12 - s_bits));
            let fsr = self.shunt_fsr_v();
            let clipped = v.clamp(-fsr, fsr);
            let counts = ((clipped / step).round() * step / SHUNT_LSB_V).round();
            self.shunt = counts as i16;
            t += span;
        }
        if b {
            let span = (b_us * 1000.0) as u64;
            let volts = self.average(t, span, b_n, |p| p.bus_volts);
            let step = BUS_LSB_V * f64::from(1u32 << (12 - b_bits));
            let v = volts.clamp(0.0, self.bus_fsr_v());
            let counts = ((v / step).floor() * step / BUS_LSB_V).round();
            self.bus_4mv = (counts as u16).min(0x1FFF);
        }
        self.compute();
        self.cnvr = true;
    }

    fn average(&self, t0: u64, span: u64, n: u32, f: impl Fn(RailPoint) -> f64) -> f64 {
        let n = n.max(1);
        let sum: f64 = (0..n)
            .map(|i| {
                let t = t0 + span * (2 * u64::from(i) + 1) / (2 * u64::from(n));
                f(self.rail.at(t))
            })
            .sum();
        sum / f64::from(n)
    }

    /// Current = shunt × cal / 4096; Power = current × bus / 5000 (datasheet eq. 4, 5).
    /// OVF is set when either result is out of its register's range.
    fn compute(&mut self) {
        let cur = i64::from(self.shunt) * i64::from(self.calibration) / 4096;
        let mut ovf = false;
        self.current = if cur > i64::from(i16::MAX) || cur < i64::from(i16::MIN) {
            ovf = true;
            cur.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16
        } else {
            cur as i16
        };
        let pow = cur.abs() * i64::from(self.bus_4mv) / 5000;
        self.power = if pow > i64::from(u16::MAX) {
            ovf = true;
            u16::MAX
        } else {
            pow as u16
        };
        self.ovf = ovf;
    }

    fn register(&self, reg: u8) -> u16 {
        match reg {
            REG_CONFIG => self.config,
            REG_SHUNT => self.shunt as u16,
            REG_BUS => (self.bus_4mv << 3) | (u16::from(self.cnvr) << 1) | u16::from(self.ovf),
            REG_POWER => self.power,
            REG_CURRENT => self.current as u16,
            _ => self.calibration,
        }
    }

    /// Bytes of an I2C write: a pointer byte, optionally followed by a 16-bit value (MSB first).
    pub fn write(&mut self, t_ns: u64, bytes: &[u8]) -> Result<(), I2cError> {
        self.advance(t_ns);
        let Some(&reg) = bytes.first() else {
            return Ok(()); // an address-only write (a probe) is acknowledged
        };
        if reg > REG_CALIBRATION {
            return Err(I2cError::new(
                I2cErrorKind::NoAcknowledgeData,
                format!("INA219 has no register {reg:#04x}"),
            ));
        }
        self.pointer = reg;
        match bytes.len() {
            1 => Ok(()),
            3 => {
                let value = u16::from_be_bytes([bytes[1], bytes[2]]);
                match reg {
                    REG_CONFIG => {
                        if value & 0x8000 != 0 {
                            self.reset(t_ns);
                        } else {
                            self.config = value & 0x3FFF;
                            // A mode write restarts conversions and clears CNVR (datasheet 8.6.3.2).
                            self.seq_start_ns = Some(t_ns);
                            self.done = 0;
                            if self.mode() != 0 && self.mode() != 0b100 {
                                self.cnvr = false;
                            }
                        }
                    }
                    REG_CALIBRATION => {
                        // Bit 0 (FS0) is void and always reads 0.
                        self.calibration = value & 0xFFFE;
                        self.compute();
                    }
                    _ => {} // data registers are read-only: the write is acknowledged and ignored
                }
                Ok(())
            }
            n => Err(I2cError::new(
                I2cErrorKind::NoAcknowledgeData,
                format!("INA219 write of {n} bytes (expected 1 or 3)"),
            )),
        }
    }

    /// Bytes of an I2C read: the register at the pointer, MSB first; the pointer does not move.
    pub fn read(&mut self, t_ns: u64, buf: &mut [u8]) -> Result<(), I2cError> {
        self.advance(t_ns);
        let value = self.register(self.pointer).to_be_bytes();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = value[i % 2];
        }
        if self.pointer == REG_POWER {
            // Reading the power register clears CNVR (datasheet 8.6.3.2).
            self.cnvr = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rail(amps: f64, volts: f64) -> impl Rail {
        move |_t: u64| RailPoint {
            bus_volts: volts,
            amps,
        }
    }

    fn reg(chip: &mut SimIna219<impl Rail>, t: u64, r: u8) -> u16 {
        chip.write(t, &[r]).unwrap();
        let mut b = [0u8; 2];
        chip.read(t, &mut b).unwrap();
        u16::from_be_bytes(b)
    }

    #[test]
    fn power_on_defaults_and_first_conversion() {
        let mut c = SimIna219::new(rail(0.1, 5.0), 0.1);
        assert_eq!(reg(&mut c, 0, REG_CONFIG), CONFIG_DEFAULT);
        // Nothing converted yet: CNVR clear.
        assert_eq!(reg(&mut c, 0, REG_BUS) & 0b10, 0);
        // Default: 12-bit shunt + 12-bit bus = 1064 µs per cycle.
        assert_eq!(reg(&mut c, 1_063_000, REG_BUS) & 0b10, 0);
        let bus = reg(&mut c, 1_064_000, REG_BUS);
        assert_eq!(bus & 0b10, 0b10);
        assert_eq!(bus >> 3, 1250); // 5 V / 4 mV
        assert_eq!(reg(&mut c, 1_064_000, REG_SHUNT), 1000); // 10 mV / 10 µV
    }

    #[test]
    fn reading_power_clears_cnvr() {
        let mut c = SimIna219::new(rail(0.1, 5.0), 0.1);
        reg(&mut c, 0, REG_CONFIG);
        assert_ne!(reg(&mut c, 2_000_000, REG_BUS) & 0b10, 0);
        reg(&mut c, 2_000_000, REG_POWER);
        assert_eq!(reg(&mut c, 2_000_000, REG_BUS) & 0b10, 0);
        // The next conversion sets it again.
        assert_ne!(reg(&mut c, 3_200_000, REG_BUS) & 0b10, 0);
    }

    #[test]
    fn math_overflow_sets_ovf() {
        // 3 A through 0.1 Ω = 300 mV: inside the 320 mV range, but with a tiny current LSB the
        // current register overflows.
        let mut c = SimIna219::new(rail(3.0, 5.0), 0.1);
        c.write(0, &[REG_CALIBRATION, 0x7F, 0xFE]).unwrap();
        let bus = reg(&mut c, 2_000_000, REG_BUS);
        assert_eq!(bus & 1, 1, "OVF set");
        // A sane calibration clears it at the next conversion.
        c.write(2_000_000, &[REG_CALIBRATION, 0x10, 0x00]).unwrap();
        let bus = reg(&mut c, 4_000_000, REG_BUS);
        assert_eq!(bus & 1, 0, "OVF clear");
    }

    #[test]
    fn resolution_sets_conversion_time_and_step() {
        let mut c = SimIna219::new(rail(0.012_34, 5.0), 1.0);
        // 9-bit shunt and bus, continuous both: 168 µs cycle; shunt step 80 µV.
        // (BADC = SADC = 0b0000: 9 bit)
        let cfg: u16 = (0b11 << 11) | 0b111;
        c.write(0, &[REG_CONFIG, (cfg >> 8) as u8, cfg as u8])
            .unwrap();
        assert_eq!(reg(&mut c, 167_000, REG_BUS) & 0b10, 0);
        assert_ne!(reg(&mut c, 168_000, REG_BUS) & 0b10, 0);
        let shunt = reg(&mut c, 168_000, REG_SHUNT) as i16;
        assert_eq!(shunt % 8, 0);
        assert!((f64::from(shunt) * 10e-6 - 0.01234).abs() <= 40e-6);
    }

    #[test]
    fn triggered_mode_converts_once() {
        let mut c = SimIna219::new(rail(0.05, 3.3), 0.1);
        let cfg: u16 = CONFIG_DEFAULT & !0b111 | 0b011;
        c.write(0, &[REG_CONFIG, (cfg >> 8) as u8, cfg as u8])
            .unwrap();
        assert_ne!(reg(&mut c, 1_100_000, REG_BUS) & 0b10, 0);
        reg(&mut c, 1_100_000, REG_POWER);
        assert_eq!(
            reg(&mut c, 5_000_000, REG_BUS) & 0b10,
            0,
            "no new conversion"
        );
    }

    #[test]
    fn bad_register_is_nacked_and_reset_restores_defaults() {
        let mut c = SimIna219::new(rail(0.05, 3.3), 0.1);
        assert!(c.write(0, &[9]).is_err());
        c.write(0, &[REG_CALIBRATION, 0x10, 0x01]).unwrap();
        assert_eq!(reg(&mut c, 0, REG_CALIBRATION), 0x1000, "FS0 reads 0");
        c.write(0, &[REG_CONFIG, 0x80, 0x00]).unwrap();
        assert_eq!(reg(&mut c, 0, REG_CALIBRATION), 0);
        assert_eq!(reg(&mut c, 0, REG_CONFIG), CONFIG_DEFAULT);
    }
}
