//! From raw TOML to a validated [`Lab`]: syntax and type errors with positions, cross-references,
//! uniqueness, physical conflicts, and (with a [`Catalog`]) chip rates and bus capacity.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    path::{Path, PathBuf},
};

use crate::raw::{RawLab, RawMqttMode, RawRelayDriver, RawReset, S};
use crate::{
    Board, Bus, BusKind, ConfigError, ConfigErrors, Console, ConsolePort, ErrorKind, Flash, Lab,
    Loc, Mqtt, MqttMode, Relay, RelayDriver, Reset, Sensor, Ssh, DEFAULT_BAUD, DEFAULT_DB,
    DEFAULT_FREQUENCY_HZ, DEFAULT_MQTT_LISTEN,
};

/// What one sensor sample costs, as its plugin reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SensorTiming {
    pub min_period_us: f64,
    pub bus_bits_per_sample: u32,
}

/// Plugin knowledge the host supplies for the checks that need it.
pub trait Catalog {
    /// Names of the chips that loaded sensor plugins provide.
    fn chips(&self) -> Vec<String>;
    /// The timing of a sensor's configuration; `Err` if its plugin rejects the configuration.
    /// Only called for chips listed by [`Catalog::chips`].
    fn sensor_timing(&self, sensor: &Sensor) -> Result<SensorTiming, String>;
    /// Profiles of a platform, or `None` if no loaded plugin provides it.
    fn platform_profiles(&self, platform: &str) -> Option<Vec<String>>;
    /// Whether boards of this profile are reached over a serial console the lab file must name
    /// (`serial` or `usb_serial`): real hardware on a serial line, not an emulator's pty or an
    /// SSH channel. `None` when unknown.
    fn profile_needs_console(&self, _platform: &str, _profile: &str) -> Option<bool> {
        None
    }
}

struct Ctx<'a> {
    src: &'a str,
    file: &'a Path,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn loc(&self, offset: usize) -> Loc {
        loc_of(self.src, offset)
    }
    fn err<T>(&mut self, v: &S<T>, field: impl Into<String>, message: impl Into<String>) {
        let loc = self.loc(v.span().start);
        self.push(loc, field, message);
    }
    fn push(&mut self, loc: Loc, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            loc,
            field: field.into(),
            message: message.into(),
            kind: ErrorKind::Invalid,
        });
    }
}

pub fn loc_of(src: &str, offset: usize) -> Loc {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    Loc {
        line,
        col: before[line_start..].chars().count() + 1,
    }
}

/// The dotted field path at a byte offset, recovered from the text: the enclosing table header
/// (`[[sensors]]` counted to an index) and the key on that line. Used for errors the TOML
/// deserializer reports only by position.
fn path_at(src: &str, offset: usize, message: &str) -> String {
    let offset = offset.min(src.len());
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut table = String::new();
    let mut pos = 0;
    let mut key_here = None;
    for line in src.split_inclusive('\n') {
        let end = pos + line.len();
        let t = line.trim();
        if pos > offset {
            break;
        }
        if let Some(h) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let h = h.trim().to_string();
            let n = counts.entry(h.clone()).or_insert(0);
            table = format!("{h}[{n}]");
            *n += 1;
        } else if let Some(h) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = h.trim().to_string();
        }
        if offset < end || end == src.len() {
            if let Some((k, _)) = t.split_once('=') {
                if !t.starts_with('[') && !t.starts_with('#') {
                    key_here = Some(k.trim().trim_matches('"').to_string());
                }
            }
            break;
        }
        pos = end;
    }
    // serde names the field in "missing field `x`" / "unknown field `x`" messages.
    let named = ["missing field `", "unknown field `", "duplicate key `"]
        .iter()
        .find_map(|p| message.split(p).nth(1))
        .and_then(|r| r.split('`').next())
        .map(str::to_string);
    let key = named.or(key_here);
    match (table.is_empty(), key) {
        (true, Some(k)) => k,
        (true, None) => "(top level)".into(),
        (false, Some(k)) => format!("{table}.{k}"),
        (false, None) => table,
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn resolve(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

pub fn parse(src: &str, file: &Path) -> Result<Lab, ConfigErrors> {
    let mut cx = Ctx {
        src,
        file,
        errors: vec![],
    };
    let raw: RawLab = match toml::from_str(src) {
        Ok(r) => r,
        Err(e) => {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            let msg = e.message().trim().to_string();
            let field = path_at(src, offset, &msg);
            let loc = cx.loc(offset);
            cx.push(loc, field, msg);
            return Err(ConfigErrors(cx.errors));
        }
    };
    let dir = file
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();

    if !valid_name(raw.name.get_ref()) {
        cx.err(
            &raw.name,
            "name",
            "a lab name is 1-64 letters, digits, '-', '_' or '.' (it becomes part of MQTT topics)",
        );
    }

    // Names: valid and unique per kind.
    fn names<T>(
        cx: &mut Ctx,
        kind: &str,
        items: &[S<T>],
        name: impl Fn(&T) -> &S<String>,
    ) -> HashSet<String> {
        let mut seen: HashMap<String, Loc> = HashMap::new();
        for (i, it) in items.iter().enumerate() {
            let n = name(it.get_ref());
            if !valid_name(n.get_ref()) {
                cx.err(
                    n,
                    format!("{kind}[{i}].name"),
                    format!(
                        "{:?}: names are 1-64 letters, digits, '-', '_' or '.'",
                        n.get_ref()
                    ),
                );
            }
            if let Some(first) = seen.get(n.get_ref()) {
                let first = *first;
                cx.err(
                    n,
                    format!("{kind}[{i}].name"),
                    format!(
                        "duplicate name {:?} (first used at line {})",
                        n.get_ref(),
                        first.line
                    ),
                );
            } else {
                let l = cx.loc(n.span().start);
                seen.insert(n.get_ref().clone(), l);
            }
        }
        seen.into_keys().collect()
    }
    let bus_names = names(&mut cx, "buses", &raw.buses, |b| &b.name);
    let relay_names = names(&mut cx, "relays", &raw.relays, |r| &r.name);
    let sensor_names = names(&mut cx, "sensors", &raw.sensors, |s| &s.name);
    names(&mut cx, "boards", &raw.boards, |b| &b.name);

    // Buses.
    let mut buses = vec![];
    for (i, sb) in raw.buses.iter().enumerate() {
        let b = sb.get_ref();
        let f = format!("buses[{i}]");
        let simulated = b.simulated.as_ref().is_some_and(|s| *s.get_ref());
        let kind = match (&b.device, simulated) {
            (Some(d), true) => {
                cx.err(
                    d,
                    format!("{f}.device"),
                    "a bus is either `device = \"/dev/i2c-N\"` or `simulated = true`, not both",
                );
                BusKind::Simulated
            }
            (Some(d), false) => {
                if d.get_ref().is_empty() {
                    cx.err(d, format!("{f}.device"), "empty device path");
                }
                BusKind::Device(PathBuf::from(d.get_ref()))
            }
            (None, true) => BusKind::Simulated,
            (None, false) => {
                cx.err(
                    &b.name,
                    format!("{f}.device"),
                    "a bus needs `device = \"/dev/i2c-N\"` or `simulated = true`",
                );
                BusKind::Simulated
            }
        };
        let freq = b
            .frequency_hz
            .as_ref()
            .map(|v| *v.get_ref())
            .unwrap_or(DEFAULT_FREQUENCY_HZ);
        if let Some(fz) = &b.frequency_hz {
            if !(1_000..=3_400_000).contains(fz.get_ref()) {
                cx.err(fz, format!("{f}.frequency_hz"), format!("{} Hz: I2C runs between 1 kHz and 3.4 MHz (100000 standard, 400000 fast mode)", fz.get_ref()));
            }
        }
        let loc = cx.loc(b.name.span().start);
        buses.push(Bus {
            name: b.name.get_ref().clone(),
            kind,
            frequency_hz: freq,
            loc,
            frequency_loc: b
                .frequency_hz
                .as_ref()
                .map(|v| cx.loc(v.span().start))
                .unwrap_or(loc),
        });
    }

    // Relays.
    let mut relays = vec![];
    let mut channels: HashMap<RelayDriver, String> = HashMap::new();
    for (i, sr) in raw.relays.iter().enumerate() {
        let r = sr.get_ref();
        let f = format!("relays[{i}]");
        let drv = *r.driver.get_ref();
        // Every driver's keys; a key another driver takes is an error naming that driver.
        let present: [(&str, Option<Loc>, &str); 14] = [
            (
                "chip",
                r.chip.as_ref().map(|v| cx.loc(v.span().start)),
                "gpio",
            ),
            (
                "line",
                r.line.as_ref().map(|v| cx.loc(v.span().start)),
                "gpio",
            ),
            (
                "active_low",
                r.active_low.as_ref().map(|v| cx.loc(v.span().start)),
                "gpio",
            ),
            (
                "vid",
                r.vid.as_ref().map(|v| cx.loc(v.span().start)),
                "usb-hid",
            ),
            (
                "pid",
                r.pid.as_ref().map(|v| cx.loc(v.span().start)),
                "usb-hid",
            ),
            (
                "serial",
                r.serial.as_ref().map(|v| cx.loc(v.span().start)),
                "usb-hid",
            ),
            (
                "channel",
                r.channel.as_ref().map(|v| cx.loc(v.span().start)),
                "usb-hid",
            ),
            (
                "hub",
                r.hub.as_ref().map(|v| cx.loc(v.span().start)),
                "usb-port",
            ),
            (
                "port",
                r.port.as_ref().map(|v| cx.loc(v.span().start)),
                "usb-port",
            ),
            (
                "on",
                r.on.as_ref().map(|v| cx.loc(v.span().start)),
                "command",
            ),
            (
                "off",
                r.off.as_ref().map(|v| cx.loc(v.span().start)),
                "command",
            ),
            (
                "status",
                r.status.as_ref().map(|v| cx.loc(v.span().start)),
                "command",
            ),
            (
                "timeout_s",
                r.timeout_s.as_ref().map(|v| cx.loc(v.span().start)),
                "command",
            ),
            ("driver", None, ""),
        ];
        let this = drv.name();
        for (key, loc, owner) in present {
            if let Some(loc) = loc {
                if owner != this {
                    cx.push(
                        loc,
                        format!("{f}.{key}"),
                        format!("`{key}` applies only to driver = \"{owner}\""),
                    );
                }
            }
        }
        let driver = match drv {
            RawRelayDriver::Gpio => {
                let chip = match &r.chip {
                    Some(c) => {
                        let c = c.get_ref();
                        if c.starts_with('/') {
                            PathBuf::from(c)
                        } else {
                            PathBuf::from(format!("/dev/{c}"))
                        }
                    }
                    None => {
                        cx.err(
                            &r.name,
                            format!("{f}.chip"),
                            "a gpio relay needs `chip` (e.g. \"gpiochip0\")",
                        );
                        PathBuf::new()
                    }
                };
                let line = match &r.line {
                    Some(l) => *l.get_ref(),
                    None => {
                        cx.err(
                            &r.name,
                            format!("{f}.line"),
                            "a gpio relay needs `line` (the GPIO line offset, e.g. 17 for BCM 17)",
                        );
                        0
                    }
                };
                RelayDriver::Gpio {
                    chip,
                    line,
                    active_low: r.active_low.as_ref().map(|v| *v.get_ref()).unwrap_or(false),
                }
            }
            RawRelayDriver::UsbHid => {
                let need = |cx: &mut Ctx, v: Option<u16>, key: &str| {
                    if v.is_none() {
                        cx.err(
                            &r.name,
                            format!("{f}.{key}"),
                            format!("a usb-hid relay needs `{key}`"),
                        );
                    }
                    v.unwrap_or(0)
                };
                let vid = need(&mut cx, r.vid.as_ref().map(|v| *v.get_ref()), "vid");
                let pid = need(&mut cx, r.pid.as_ref().map(|v| *v.get_ref()), "pid");
                let channel = need(
                    &mut cx,
                    r.channel.as_ref().map(|v| u16::from(*v.get_ref())),
                    "channel",
                ) as u8;
                if let Some(c) = &r.channel {
                    if !(1..=8).contains(c.get_ref()) {
                        cx.err(
                            c,
                            format!("{f}.channel"),
                            "USB-HID relay channels are numbered 1-8",
                        );
                    }
                }
                RelayDriver::UsbHid {
                    vid,
                    pid,
                    serial: r.serial.as_ref().map(|s| s.get_ref().clone()),
                    channel,
                }
            }
            RawRelayDriver::UsbPort => {
                let hub = match &r.hub {
                    Some(h) if is_hub_location(h.get_ref()) => h.get_ref().clone(),
                    Some(h) => {
                        cx.err(
                            h,
                            format!("{f}.hub"),
                            format!(
                                "{:?} is not a USB hub location (\"1-1.2\": bus 1, port 1, port 2; or \"usb1\" for a root hub; `lsusb -t` shows them)",
                                h.get_ref()
                            ),
                        );
                        String::new()
                    }
                    None => {
                        cx.err(
                            &r.name,
                            format!("{f}.hub"),
                            "a usb-port relay needs `hub` (e.g. \"1-1.2\")",
                        );
                        String::new()
                    }
                };
                let port = match &r.port {
                    Some(p) if *p.get_ref() >= 1 => *p.get_ref(),
                    Some(p) => {
                        cx.err(p, format!("{f}.port"), "hub ports are numbered from 1");
                        0
                    }
                    None => {
                        cx.err(
                            &r.name,
                            format!("{f}.port"),
                            "a usb-port relay needs `port`",
                        );
                        0
                    }
                };
                RelayDriver::UsbPort { hub, port }
            }
            RawRelayDriver::Command => {
                let mut argv = |v: &Option<S<Vec<String>>>, key: &str, needed: bool| match v {
                    Some(a) if !a.get_ref().is_empty() && !a.get_ref()[0].is_empty() => {
                        Some(a.get_ref().clone())
                    }
                    Some(a) => {
                        cx.err(
                            a,
                            format!("{f}.{key}"),
                            format!(
                                "`{key}` is a command as an argv array, e.g. [\"plugctl\", \"on\"]"
                            ),
                        );
                        None
                    }
                    None => {
                        if needed {
                            cx.err(
                                &r.name,
                                format!("{f}.{key}"),
                                format!("a command relay needs `{key}` (an argv array; no shell)"),
                            );
                        }
                        None
                    }
                };
                let on = argv(&r.on, "on", true).unwrap_or_default();
                let off = argv(&r.off, "off", true).unwrap_or_default();
                let status = argv(&r.status, "status", false);
                let timeout_s = match &r.timeout_s {
                    Some(t)
                        if t.get_ref().is_finite()
                            && *t.get_ref() > 0.0
                            && *t.get_ref() <= 600.0 =>
                    {
                        *t.get_ref()
                    }
                    Some(t) => {
                        cx.err(
                            t,
                            format!("{f}.timeout_s"),
                            "`timeout_s` is seconds, more than 0 and at most 600",
                        );
                        10.0
                    }
                    None => 10.0,
                };
                RelayDriver::Command {
                    on,
                    off,
                    status,
                    timeout_ms: (timeout_s * 1000.0) as u64,
                }
            }
            RawRelayDriver::Simulated => RelayDriver::Simulated,
        };
        if driver != RelayDriver::Simulated {
            let mut key = driver.clone();
            if let RelayDriver::Gpio { active_low, .. } = &mut key {
                *active_low = false;
            }
            if let Some(other) = channels.get(&key) {
                cx.err(
                    &r.name,
                    f.clone(),
                    format!(
                        "relay {:?} drives the same physical channel as relay {other:?}",
                        r.name.get_ref()
                    ),
                );
            } else {
                channels.insert(key, r.name.get_ref().clone());
            }
        }
        relays.push(Relay {
            name: r.name.get_ref().clone(),
            driver,
            loc: cx.loc(r.name.span().start),
        });
    }

    // Sensors.
    let mut sensors = vec![];
    // (bus, address) → (sensor name, chip, channel if given); entries sharing an address must be
    // distinct channels of one multi-channel chip.
    let mut addresses: HashMap<(String, u8), Vec<ChipUser>> = HashMap::new();
    for (i, ss) in raw.sensors.iter().enumerate() {
        let s = ss.get_ref();
        let f = format!("sensors[{i}]");
        if !bus_names.contains(s.bus.get_ref()) {
            cx.err(
                &s.bus,
                format!("{f}.bus"),
                format!(
                    "no bus named {:?} (buses: {})",
                    s.bus.get_ref(),
                    list(&bus_names)
                ),
            );
        }
        let addr = *s.address.get_ref();
        if !(0x08..=0x77).contains(&addr) {
            cx.err(
                &s.address,
                format!("{f}.address"),
                format!("{addr:#04x} is not a usable 7-bit I2C address (0x08-0x77)"),
            );
        }
        let channel = s.channel.as_ref().map(|v| *v.get_ref());
        if let Some(c) = &s.channel {
            if !(1..=4).contains(c.get_ref()) {
                cx.err(
                    c,
                    format!("{f}.channel"),
                    format!("channel {} is not 1-4", c.get_ref()),
                );
            }
        }
        let users = addresses
            .entry((s.bus.get_ref().clone(), addr))
            .or_default();
        if let Some((other, other_chip, other_ch)) = users.first().cloned() {
            let clash = users.iter().any(|u| u.2 == channel);
            if other_chip != *s.chip.get_ref() {
                cx.err(
                    &s.address,
                    format!("{f}.address"),
                    format!(
                        "sensor {other:?} ({other_chip}) already uses address {addr:#04x} on bus {:?}; one address is one chip",
                        s.bus.get_ref()
                    ),
                );
            } else if channel.is_none() || other_ch.is_none() {
                cx.err(
                    &s.address,
                    format!("{f}.address"),
                    format!(
                        "sensor {other:?} already uses address {addr:#04x} on bus {:?}; entries that share a multi-channel chip each name a distinct `channel`",
                        s.bus.get_ref()
                    ),
                );
            } else if clash {
                let c = s.channel.as_ref().expect("checked");
                cx.err(
                    c,
                    format!("{f}.channel"),
                    format!(
                        "channel {} of the chip at {addr:#04x} on bus {:?} is already sensor {:?}",
                        c.get_ref(),
                        s.bus.get_ref(),
                        users
                            .iter()
                            .find(|u| u.2 == channel)
                            .map(|u| u.0.clone())
                            .unwrap_or_default()
                    ),
                );
            }
        }
        users.push((s.name.get_ref().clone(), s.chip.get_ref().clone(), channel));
        for (v, key) in [
            (&s.shunt_ohms, "shunt_ohms"),
            (&s.max_current_a, "max_current_a"),
        ] {
            if !(v.get_ref().is_finite() && *v.get_ref() > 0.0) {
                cx.err(
                    v,
                    format!("{f}.{key}"),
                    format!("{} must be a positive number", v.get_ref()),
                );
            }
        }
        let rate = s.rate_hz.as_ref().map(|v| *v.get_ref()).unwrap_or(100.0);
        if let Some(r) = &s.rate_hz {
            if !(r.get_ref().is_finite() && *r.get_ref() > 0.0 && *r.get_ref() <= 100_000.0) {
                cx.err(
                    r,
                    format!("{f}.rate_hz"),
                    format!("{} Hz: a rate is positive and at most 100000", r.get_ref()),
                );
            }
        }
        let loc = cx.loc(s.name.span().start);
        sensors.push(Sensor {
            name: s.name.get_ref().clone(),
            chip: s.chip.get_ref().clone(),
            bus: s.bus.get_ref().clone(),
            address: addr,
            shunt_ohms: *s.shunt_ohms.get_ref(),
            max_current_a: *s.max_current_a.get_ref(),
            adc_bits: s.adc_bits.as_ref().map(|v| *v.get_ref()).unwrap_or(12),
            averaging: s.averaging.as_ref().map(|v| *v.get_ref()).unwrap_or(1),
            channel: channel.unwrap_or(1),
            sample_rate_sps: s
                .sample_rate_sps
                .as_ref()
                .map(|v| *v.get_ref())
                .unwrap_or(0.0),
            bipolar: s.bipolar.as_ref().map(|v| *v.get_ref()).unwrap_or(false),
            rate_hz: rate,
            field: f,
            loc,
            chip_loc: cx.loc(s.chip.span().start),
            rate_loc: s
                .rate_hz
                .as_ref()
                .map(|v| cx.loc(v.span().start))
                .unwrap_or(loc),
        });
    }

    // Boards.
    let mut boards = vec![];
    let mut relay_users: HashMap<String, String> = HashMap::new();
    let mut sensor_users: HashMap<String, String> = HashMap::new();
    for (i, sb) in raw.boards.iter().enumerate() {
        let b = sb.get_ref();
        let f = format!("boards[{i}]");
        if let Some(r) = &b.relay {
            if !relay_names.contains(r.get_ref()) {
                cx.err(
                    r,
                    format!("{f}.relay"),
                    format!(
                        "no relay named {:?} (relays: {})",
                        r.get_ref(),
                        list(&relay_names)
                    ),
                );
            } else if let Some(other) = relay_users.get(r.get_ref()) {
                cx.err(r, format!("{f}.relay"), format!("relay {:?} already switches board {other:?}; a relay is one channel for one board", r.get_ref()));
            } else {
                relay_users.insert(r.get_ref().clone(), b.name.get_ref().clone());
            }
        }
        if let Some(s) = &b.sensor {
            if !sensor_names.contains(s.get_ref()) {
                cx.err(
                    s,
                    format!("{f}.sensor"),
                    format!(
                        "no sensor named {:?} (sensors: {})",
                        s.get_ref(),
                        list(&sensor_names)
                    ),
                );
            } else if let Some(other) = sensor_users.get(s.get_ref()) {
                cx.err(
                    s,
                    format!("{f}.sensor"),
                    format!("sensor {:?} already measures board {other:?}", s.get_ref()),
                );
            } else {
                sensor_users.insert(s.get_ref().clone(), b.name.get_ref().clone());
            }
        }
        if let (Some(r), None) = (&b.reset, &b.relay) {
            if *r.get_ref() == RawReset::PowerCycle {
                cx.err(
                    r,
                    format!("{f}.reset"),
                    "`reset = \"power-cycle\"` switches the board's relay; this board has no `relay`",
                );
            }
        }
        let hang_timeout = b.hang_timeout_s.as_ref().and_then(|v| {
            let s = *v.get_ref();
            if s.is_finite() && (0.1..=86_400.0).contains(&s) {
                Some(std::time::Duration::from_secs_f64(s))
            } else {
                cx.err(
                    v,
                    format!("{f}.hang_timeout_s"),
                    "a number of seconds from 0.1 to 86400",
                );
                None
            }
        });
        boards.push(Board {
            name: b.name.get_ref().clone(),
            platform: b.platform.get_ref().clone(),
            profile: b.profile.get_ref().clone(),
            relay: b.relay.as_ref().map(|v| v.get_ref().clone()),
            sensor: b.sensor.as_ref().map(|v| v.get_ref().clone()),
            console: console(&mut cx, b, &f, &dir),
            ssh: ssh(&mut cx, b, &f, &dir),
            flash: flash(&mut cx, b, &f, &dir),
            reset: match b.reset.as_ref().map(|v| *v.get_ref()) {
                None | Some(RawReset::None) => Reset::None,
                Some(RawReset::Dtr) => Reset::Dtr,
                Some(RawReset::Rts) => Reset::Rts,
                Some(RawReset::PowerCycle) => Reset::PowerCycle,
            },
            hang_timeout,
            field: f,
            loc: cx.loc(b.name.span().start),
            platform_loc: cx.loc(b.platform.span().start),
            profile_loc: cx.loc(b.profile.span().start),
        });
    }

    let mqtt = raw
        .mqtt
        .as_ref()
        .map(|m| mqtt(&mut cx, m, &dir, raw.name.get_ref()));

    let plugin_dirs = raw.plugin_dirs.as_ref().map(|d| {
        d.get_ref()
            .iter()
            .map(|p| resolve(&dir, p.get_ref()))
            .collect()
    });
    let storage_path = raw
        .storage
        .as_ref()
        .and_then(|s| s.path.as_ref())
        .map(|p| resolve(&dir, p.get_ref()))
        .unwrap_or_else(|| dir.join(DEFAULT_DB));
    let models_dir = raw
        .storage
        .as_ref()
        .and_then(|s| s.models.as_ref())
        .map(|p| resolve(&dir, p.get_ref()))
        .unwrap_or_else(|| {
            storage_path
                .parent()
                .map(|d| d.join("models"))
                .unwrap_or_else(|| PathBuf::from("models"))
        });

    if !cx.errors.is_empty() {
        cx.errors.sort_by_key(|e| (e.loc.line, e.loc.col));
        return Err(ConfigErrors(cx.errors));
    }
    Ok(Lab {
        name: raw.name.into_inner(),
        file: file.to_path_buf(),
        dir,
        plugin_dirs,
        storage_path,
        models_dir,
        buses,
        relays,
        sensors,
        boards,
        mqtt,
    })
}

/// `1-1.2` (bus, then ports joined by dots) or `usb1` (a root hub).
fn is_hub_location(s: &str) -> bool {
    if let Some(bus) = s.strip_prefix("usb") {
        return !bus.is_empty() && bus.chars().all(|c| c.is_ascii_digit());
    }
    let Some((bus, ports)) = s.split_once('-') else {
        return false;
    };
    !bus.is_empty()
        && bus.chars().all(|c| c.is_ascii_digit())
        && ports
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// A sensor entry on a chip address: its name, the chip, and its channel if it names one.
type ChipUser = (String, String, Option<u8>);

/// A board's console keys: `serial` or `usb_serial` (not both), `usb_id`/`usb_interface` only
/// with `usb_serial`, `baud` only with a console.
fn console(cx: &mut Ctx, b: &crate::raw::RawBoard, f: &str, dir: &Path) -> Option<Console> {
    if let (Some(_), Some(u)) = (&b.serial, &b.usb_serial) {
        cx.err(
            u,
            format!("{f}.usb_serial"),
            "give `serial` (a device path) or `usb_serial` (a USB serial number), not both",
        );
    }
    if b.usb_serial.is_none() {
        if let Some(v) = &b.usb_id {
            cx.err(
                v,
                format!("{f}.usb_id"),
                "`usb_id` narrows `usb_serial`; this board has none",
            );
        }
        if let Some(v) = &b.usb_interface {
            cx.err(
                v,
                format!("{f}.usb_interface"),
                "`usb_interface` narrows `usb_serial`; this board has none",
            );
        }
    }
    let baud = match &b.baud {
        Some(v) if *v.get_ref() == 0 || *v.get_ref() > 12_000_000 => {
            cx.err(
                v,
                format!("{f}.baud"),
                format!("{} is not a serial speed (1 to 12000000)", v.get_ref()),
            );
            DEFAULT_BAUD
        }
        Some(v) => *v.get_ref(),
        None => DEFAULT_BAUD,
    };
    if let Some(p) = &b.serial {
        if p.get_ref().trim().is_empty() {
            cx.err(p, format!("{f}.serial"), "an empty device path");
        }
        return Some(Console {
            port: ConsolePort::Path(resolve(dir, p.get_ref())),
            baud,
        });
    }
    if let Some(u) = &b.usb_serial {
        if u.get_ref().trim().is_empty() {
            cx.err(u, format!("{f}.usb_serial"), "an empty USB serial number");
        }
        let id = b
            .usb_id
            .as_ref()
            .and_then(|v| match parse_usb_id(v.get_ref()) {
                Some(id) => Some(id),
                None => {
                    cx.err(
                        v,
                        format!("{f}.usb_id"),
                        format!(
                            "{:?} is not \"VID:PID\" in hex (e.g. \"2e8a:000a\")",
                            v.get_ref()
                        ),
                    );
                    None
                }
            });
        return Some(Console {
            port: ConsolePort::Usb {
                serial: u.get_ref().clone(),
                id,
                interface: b.usb_interface.as_ref().map(|v| *v.get_ref()),
            },
            baud,
        });
    }
    if let Some(v) = &b.baud {
        cx.err(
            v,
            format!("{f}.baud"),
            "`baud` is the speed of a console; this board has no `serial` or `usb_serial`",
        );
    }
    None
}

/// A board's SSH keys: `host`, `user` and `identity` together (`port`, `known_hosts` and
/// `firmware` optional), and no serial console beside them.
fn ssh(cx: &mut Ctx, b: &crate::raw::RawBoard, f: &str, dir: &Path) -> Option<Ssh> {
    let any = b.host.is_some()
        || b.user.is_some()
        || b.identity.is_some()
        || b.port.is_some()
        || b.known_hosts.is_some()
        || b.firmware.is_some();
    if !any {
        return None;
    }
    let mut missing = vec![];
    if b.host.is_none() {
        missing.push("host");
    }
    if b.user.is_none() {
        missing.push("user");
    }
    if b.identity.is_none() {
        missing.push("identity");
    }
    if !missing.is_empty() {
        cx.err(
            &b.name,
            f.to_string(),
            format!(
                "a board reached over SSH needs `host`, `user` and `identity` (a private key file); missing: {}",
                missing.join(", ")
            ),
        );
        return None;
    }
    let (host, user, identity) = (b.host.as_ref()?, b.user.as_ref()?, b.identity.as_ref()?);
    if let Some(c) = b.serial.as_ref().or(b.usb_serial.as_ref()) {
        cx.err(
            c,
            f.to_string(),
            "a board reached over SSH talks over its SSH connection; give `host` or a serial console, not both",
        );
    }
    for (v, key) in [(host, "host"), (user, "user"), (identity, "identity")] {
        if v.get_ref().trim().is_empty() || v.get_ref().contains(char::is_whitespace) {
            cx.err(v, format!("{f}.{key}"), "empty, or contains whitespace");
        }
    }
    if host.get_ref().starts_with('-') || user.get_ref().starts_with('-') {
        cx.err(
            host,
            format!("{f}.host"),
            "a host or user may not start with '-'",
        );
    }
    let port = match &b.port {
        Some(p) if *p.get_ref() == 0 => {
            cx.err(p, format!("{f}.port"), "port 0 is not an SSH port");
            22
        }
        Some(p) => *p.get_ref(),
        None => 22,
    };
    Some(Ssh {
        host: host.get_ref().clone(),
        port,
        user: user.get_ref().clone(),
        identity: resolve(dir, identity.get_ref()),
        known_hosts: b.known_hosts.as_ref().map(|k| resolve(dir, k.get_ref())),
        firmware: b.firmware.as_ref().map(|k| resolve(dir, k.get_ref())),
    })
}

/// A board's flashing keys: words without whitespace; `flash_program` resolved like a path.
fn flash(cx: &mut Ctx, b: &crate::raw::RawBoard, f: &str, dir: &Path) -> Option<Flash> {
    if b.flash_tool.is_none() && b.flash_program.is_none() && b.probe_serial.is_none() {
        return None;
    }
    for (v, key) in [
        (&b.flash_tool, "flash_tool"),
        (&b.flash_program, "flash_program"),
        (&b.probe_serial, "probe_serial"),
    ] {
        if let Some(v) = v {
            let t = v.get_ref();
            if t.trim().is_empty() || t.contains(char::is_whitespace) || t.starts_with('-') {
                cx.err(
                    v,
                    format!("{f}.{key}"),
                    "empty, starts with '-', or contains whitespace",
                );
            }
        }
    }
    Some(Flash {
        tool: b.flash_tool.as_ref().map(|v| v.get_ref().clone()),
        program: b.flash_program.as_ref().map(|v| {
            let p = v.get_ref();
            // A bare name is looked up on PATH; anything with a slash is a path.
            if p.contains('/') {
                resolve(dir, p)
            } else {
                PathBuf::from(p)
            }
        }),
        probe_serial: b.probe_serial.as_ref().map(|v| v.get_ref().clone()),
    })
}

/// `"2e8a:000a"` → (0x2e8a, 0x000a).
pub fn parse_usb_id(s: &str) -> Option<(u16, u16)> {
    let (v, p) = s.split_once(':')?;
    let hex = |x: &str| {
        (x.len() == 4)
            .then(|| u16::from_str_radix(x, 16).ok())
            .flatten()
    };
    Some((hex(v)?, hex(p)?))
}

fn mqtt(cx: &mut Ctx, sm: &S<crate::raw::RawMqtt>, dir: &Path, lab: &str) -> Mqtt {
    let m = sm.get_ref();
    let mode_v = m
        .mode
        .as_ref()
        .map(|v| *v.get_ref())
        .unwrap_or(RawMqttMode::Embedded);
    let mode = match mode_v {
        RawMqttMode::Embedded => {
            if let Some(u) = &m.url {
                cx.err(
                    u,
                    "mqtt.url",
                    "`url` is for mode = \"external\"; the embedded broker uses `listen`",
                );
            }
            let listen = match &m.listen {
                Some(l) => l.get_ref().parse::<SocketAddr>().unwrap_or_else(|_| {
                    cx.err(
                        l,
                        "mqtt.listen",
                        format!(
                            "{:?} is not an address:port such as \"127.0.0.1:1883\"",
                            l.get_ref()
                        ),
                    );
                    DEFAULT_MQTT_LISTEN.parse().expect("default parses")
                }),
                None => DEFAULT_MQTT_LISTEN.parse().expect("default parses"),
            };
            MqttMode::Embedded { listen }
        }
        RawMqttMode::External => {
            if let Some(l) = &m.listen {
                cx.err(
                    l,
                    "mqtt.listen",
                    "`listen` is for mode = \"embedded\"; an external broker is reached at `url`",
                );
            }
            match &m.url {
                Some(u) => {
                    let url = u.get_ref();
                    let tls = url.starts_with("mqtts://");
                    let rest = url
                        .strip_prefix("mqtt://")
                        .or_else(|| url.strip_prefix("mqtts://"));
                    match rest {
                        Some(hp) if !hp.is_empty() && !hp.contains('/') => {}
                        _ => cx.err(
                            u,
                            "mqtt.url",
                            format!("{url:?}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"),
                        ),
                    }
                    MqttMode::External {
                        url: url.clone(),
                        tls,
                    }
                }
                None => {
                    let at = m
                        .mode
                        .as_ref()
                        .map(|v| v.span().start)
                        .unwrap_or(sm.span().start);
                    let loc = cx.loc(at);
                    cx.push(
                        loc,
                        "mqtt.url",
                        "mode = \"external\" needs `url` (mqtt://HOST:PORT or mqtts://HOST:PORT)",
                    );
                    MqttMode::External {
                        url: String::new(),
                        tls: false,
                    }
                }
            }
        }
    };
    if let (Some(_), Some(f)) = (&m.password_env, &m.password_file) {
        cx.err(
            f,
            "mqtt.password_file",
            "give either `password_env` or `password_file`, not both",
        );
    }
    if (m.password_env.is_some() || m.password_file.is_some()) && m.username.is_none() {
        let v = m
            .password_env
            .as_ref()
            .or(m.password_file.as_ref())
            .expect("one is set");
        cx.err(v, "mqtt.username", "a password needs a `username`");
    }
    match (&m.cert, &m.key) {
        (Some(c), None) => cx.err(c, "mqtt.key", "a client `cert` needs its `key`"),
        (None, Some(k)) => cx.err(k, "mqtt.cert", "a client `key` needs its `cert`"),
        _ => {}
    }
    if let MqttMode::Embedded { .. } = mode {
        for (v, k) in [(&m.ca, "ca"), (&m.cert, "cert"), (&m.key, "key")] {
            if let Some(v) = v {
                cx.err(
                    v,
                    format!("mqtt.{k}"),
                    format!("`{k}` (TLS) applies to mode = \"external\" with an mqtts:// url"),
                );
            }
        }
    }
    let prefix = m
        .prefix
        .as_ref()
        .map(|p| p.get_ref().clone())
        .unwrap_or_else(|| format!("labctl/{lab}"));
    if let Some(p) = &m.prefix {
        let s = p.get_ref();
        if s.is_empty() || s.contains(['+', '#']) || s.starts_with('/') || s.ends_with('/') {
            cx.err(
                p,
                "mqtt.prefix",
                format!(
                    "{s:?}: a topic prefix has no wildcards (+ #) and no leading or trailing '/'"
                ),
            );
        }
    }
    Mqtt {
        mode,
        client_id: m.client_id.as_ref().map(|v| v.get_ref().clone()),
        username: m.username.as_ref().map(|v| v.get_ref().clone()),
        password_env: m.password_env.as_ref().map(|v| v.get_ref().clone()),
        password_file: m.password_file.as_ref().map(|v| resolve(dir, v.get_ref())),
        ca: m.ca.as_ref().map(|v| resolve(dir, v.get_ref())),
        cert: m.cert.as_ref().map(|v| resolve(dir, v.get_ref())),
        key: m.key.as_ref().map(|v| resolve(dir, v.get_ref())),
        prefix,
    }
}

fn list(names: &HashSet<String>) -> String {
    let mut v: Vec<&str> = names.iter().map(String::as_str).collect();
    v.sort_unstable();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

pub fn check_with(lab: &Lab, catalog: &dyn Catalog) -> Vec<ConfigError> {
    let mut errors = vec![];
    let mut push = |loc: Loc, field: String, message: String, kind: ErrorKind| {
        errors.push(ConfigError {
            file: lab.file.clone(),
            loc,
            field,
            message,
            kind,
        });
    };
    let chips = catalog.chips();
    // Per bus: (first sensor name, rate, bits per sample, address) per chip.
    let mut bus_load: HashMap<&str, Vec<(&str, f64, u32, u8)>> = HashMap::new();
    for s in &lab.sensors {
        if !chips.contains(&s.chip) {
            push(
                s.chip_loc,
                format!("{}.chip", s.field),
                format!(
                    "no loaded sensor plugin provides chip {:?} (available: {})",
                    s.chip,
                    if chips.is_empty() {
                        "none".into()
                    } else {
                        chips.join(", ")
                    }
                ),
                ErrorKind::Unresolved,
            );
            continue;
        }
        match catalog.sensor_timing(s) {
            Err(m) => push(
                s.loc,
                s.field.clone(),
                format!("sensor {:?}: {m}", s.name),
                ErrorKind::Invalid,
            ),
            Ok(t) => {
                let max_hz = 1e6 / t.min_period_us;
                if s.rate_hz > max_hz * (1.0 + 1e-9) {
                    push(s.rate_loc, format!("{}.rate_hz", s.field), format!(
                        "{} Hz is faster than the {} delivers at adc_bits = {}, averaging = {}: one sample takes {:.0} µs (at most {:.1} Hz); lower rate_hz, adc_bits or averaging",
                        s.rate_hz, s.chip, s.adc_bits, s.averaging, t.min_period_us, max_hz), ErrorKind::Invalid);
                }
                // One chip is read once per sample for all its channels: its bus cost counts once,
                // at the fastest rate any of its channels asks for.
                let load = bus_load.entry(s.bus.as_str()).or_default();
                match load.iter_mut().find(|(_, _, _, a)| *a == s.address) {
                    Some(chip) => chip.1 = chip.1.max(s.rate_hz),
                    None => load.push((&s.name, s.rate_hz, t.bus_bits_per_sample, s.address)),
                }
            }
        }
    }
    for b in &lab.buses {
        let Some(load) = bus_load.get(b.name.as_str()) else {
            continue;
        };
        let need: f64 = load
            .iter()
            .map(|(_, r, bits, _)| r * f64::from(*bits))
            .sum();
        if need > f64::from(b.frequency_hz) {
            let parts: Vec<String> = load
                .iter()
                .map(|(n, r, bits, _)| format!("{n}: {r} Hz × {bits}"))
                .collect();
            push(b.frequency_loc, format!("buses[{}].frequency_hz", lab.buses.iter().position(|x| x.name == b.name).unwrap_or(0)), format!(
                "bus {:?} at {} Hz cannot carry its sensors' register reads: they need {:.0} clock cycles/s ({}), {:.0}% of the bus; raise frequency_hz (400000 is fast mode) or lower rates",
                b.name, b.frequency_hz, need, parts.join(", "), 100.0 * need / f64::from(b.frequency_hz)), ErrorKind::Invalid);
        }
    }
    for b in &lab.boards {
        // `profile = "OWNER/NAME"`: another platform's profile, run by this board's platform.
        let (owner, name) = b
            .profile
            .split_once('/')
            .unwrap_or((b.platform.as_str(), b.profile.as_str()));
        let Some(_) = catalog.platform_profiles(&b.platform) else {
            push(
                b.platform_loc,
                format!("{}.platform", b.field),
                format!(
                    "no loaded platform plugin provides platform {:?}",
                    b.platform
                ),
                ErrorKind::Unresolved,
            );
            continue;
        };
        match catalog.platform_profiles(owner) {
            None => push(
                b.profile_loc,
                format!("{}.profile", b.field),
                format!(
                    "no loaded platform plugin provides platform {owner:?} (of profile {:?})",
                    b.profile
                ),
                ErrorKind::Unresolved,
            ),
            Some(profiles) if !profiles.iter().any(|p| p == name) => push(
                b.profile_loc,
                format!("{}.profile", b.field),
                format!(
                    "platform {owner:?} has no profile {name:?} (profiles: {})",
                    profiles.join(", ")
                ),
                ErrorKind::Invalid,
            ),
            Some(_) => {
                if catalog.profile_needs_console(&b.platform, &b.profile) == Some(true)
                    && b.console.is_none()
                {
                    push(
                        b.loc,
                        b.field.clone(),
                        format!(
                            "board {:?} is real hardware ({}/{}): give its console as `serial = \"/dev/ttyACM0\"` (or a /dev/serial/by-id/ link) or `usb_serial = \"…\"`",
                            b.name, b.platform, b.profile
                        ),
                        ErrorKind::Invalid,
                    );
                }
            }
        }
    }
    errors.sort_by_key(|e| (e.loc.line, e.loc.col));
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_at_finds_table_index_and_key() {
        let src = "name = \"x\"\n[[sensors]]\nname = \"a\"\n[[sensors]]\nname = \"b\"\nrate_hz = \"fast\"\n";
        let off = src.find("\"fast\"").unwrap();
        assert_eq!(path_at(src, off, "invalid type"), "sensors[1].rate_hz");
        assert_eq!(path_at(src, 0, "x"), "name");
        let off = src.find("[[sensors]]\nname = \"b\"").unwrap();
        assert_eq!(path_at(src, off, "missing field `chip`"), "sensors[1].chip");
    }

    #[test]
    fn loc_counts_lines_and_columns() {
        assert_eq!(loc_of("ab\ncd", 4), Loc { line: 2, col: 2 });
        assert_eq!(loc_of("", 0), Loc { line: 1, col: 1 });
    }
}
