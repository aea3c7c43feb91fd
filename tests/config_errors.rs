//! `labctl config check` on malformed lab files: each mistake exits 2 with an error naming
//! file:line:column and the field, and nothing panics.

use labctl_integration_tests::{run, text};

/// A valid lab: every case below changes one thing.
const BASE: &str = r#"name = "bench"

[[buses]]
name = "i2c"
simulated = true
frequency_hz = 400000

[[relays]]
name = "r1"
driver = "simulated"

[[relays]]
name = "r2"
driver = "simulated"

[[sensors]]
name = "s1"
chip = "ina219"
bus = "i2c"
address = 0x40
shunt_ohms = 0.1
max_current_a = 0.4
adc_bits = 11
rate_hz = 1000

[[sensors]]
name = "s2"
chip = "ina219"
bus = "i2c"
address = 0x41
shunt_ohms = 0.1
max_current_a = 0.4
adc_bits = 11
rate_hz = 1000

[[boards]]
name = "b1"
platform = "virtual"
profile = "esp32s3"
relay = "r1"
sensor = "s1"

[[boards]]
name = "b2"
platform = "virtual"
profile = "rp2040"
relay = "r2"
sensor = "s2"
"#;

/// (what, edited lab text, expected field, expected line)
fn cases() -> Vec<(&'static str, String, &'static str, usize)> {
    let r = |from: &str, to: &str| {
        assert!(BASE.contains(from), "{from}");
        BASE.replacen(from, to, 1)
    };
    vec![
        ("bad TOML syntax", r("name = \"b1\"", "name = \"b1"), "boards[0].name", 37),
        ("unknown top-level key", r("name = \"bench\"", "name = \"bench\"\ncolour = \"red\""), "colour", 2),
        ("unknown key in a table", r("shunt_ohms = 0.1\nmax_current_a = 0.4\nadc_bits = 11\nrate_hz = 1000\n\n[[sensors]]", "shunt_ohm = 0.1\nmax_current_a = 0.4\nadc_bits = 11\nrate_hz = 1000\n\n[[sensors]]"), "sensors[0].shunt_ohm", 21),
        ("wrong type", r("frequency_hz = 400000", "frequency_hz = \"fast\""), "buses[0].frequency_hz", 6),
        ("missing field", r("chip = \"ina219\"\nbus = \"i2c\"\naddress = 0x41", "bus = \"i2c\"\naddress = 0x41"), "sensors[1].chip", 26),
        ("duplicate name", r("name = \"b2\"", "name = \"b1\""), "boards[1].name", 44),
        ("dangling bus", r("bus = \"i2c\"\naddress = 0x40", "bus = \"i2c0\"\naddress = 0x40"), "sensors[0].bus", 19),
        ("dangling relay", r("relay = \"r1\"", "relay = \"r9\""), "boards[0].relay", 40),
        ("dangling sensor", r("sensor = \"s2\"", "sensor = \"s7\""), "boards[1].sensor", 48),
        ("two sensors at one address", r("address = 0x41", "address = 0x40"), "sensors[1].address", 30),
        ("two boards on one relay", r("relay = \"r2\"", "relay = \"r1\""), "boards[1].relay", 47),
        ("rate the chip cannot reach", r("adc_bits = 11\nrate_hz = 1000\n\n[[sensors]]", "adc_bits = 12\nrate_hz = 1000\n\n[[sensors]]"), "sensors[0].rate_hz", 24),
        ("bus too slow for its sensors", r("frequency_hz = 400000", "frequency_hz = 100000"), "buses[0].frequency_hz", 6),
        ("unknown relay driver", r("driver = \"simulated\"", "driver = \"gpoi\""), "relays[0].driver", 10),
        ("gpio relay without line", r("driver = \"simulated\"", "driver = \"gpio\"\nchip = \"gpiochip0\""), "relays[0].line", 9),
        ("external mqtt without url", format!("{BASE}\n[mqtt]\nmode = \"external\"\n"), "mqtt.url", 51),
        ("bad mqtt listen address", format!("{BASE}\n[mqtt]\nlisten = \"localhost\"\n"), "mqtt.listen", 51),
        ("unknown board profile", r("profile = \"rp2040\"", "profile = \"rp2050\""), "boards[1].profile", 46),
        ("address outside 7-bit range", r("address = 0x40", "address = 0x90"), "sensors[0].address", 20),
        ("averaging below 12-bit", r("adc_bits = 11\nrate_hz = 1000\n\n[[sensors]]", "adc_bits = 11\naveraging = 4\nrate_hz = 10\n\n[[sensors]]"), "sensors[0]", 17),
        ("bus both device and simulated", r("simulated = true", "simulated = true\ndevice = \"/dev/i2c-1\""), "buses[0].device", 6),
        ("negative shunt", r("shunt_ohms = 0.1\nmax_current_a = 0.4\nadc_bits = 11\nrate_hz = 1000\n\n[[sensors]]", "shunt_ohms = -0.1\nmax_current_a = 0.4\nadc_bits = 11\nrate_hz = 1000\n\n[[sensors]]"), "sensors[0].shunt_ohms", 21),
        ("password without username", format!("{BASE}\n[mqtt]\nmode = \"external\"\nurl = \"mqtt://broker:1883\"\npassword_env = \"MQTT_PW\"\n"), "mqtt.username", 53),
        ("unknown platform", r("platform = \"virtual\"\nprofile = \"rp2040\"", "platform = \"virtuel\"\nprofile = \"rp2040\""), "boards[1].platform", 45),
        ("another driver's key", r("driver = \"simulated\"", "driver = \"usb-port\"\nhub = \"1-1.2\"\nport = 3\nvid = 0x16c0"), "relays[0].vid", 13),
        ("not a hub location", r("driver = \"simulated\"", "driver = \"usb-port\"\nhub = \"hub one\"\nport = 3"), "relays[0].hub", 11),
        ("command relay without off", r("driver = \"simulated\"", "driver = \"command\"\non = [\"plug\", \"on\"]"), "relays[0].off", 9),
        ("real board without a console", r("platform = \"virtual\"\nprofile = \"esp32s3\"", "platform = \"serial\"\nprofile = \"generic\""), "boards[0]", 37),
        ("usb_id without usb_serial", r("sensor = \"s1\"", "sensor = \"s1\"\nusb_id = \"2e8a:000a\""), "boards[0].usb_id", 42),
        ("usb_id not VID:PID", r("sensor = \"s1\"", "sensor = \"s1\"\nusb_serial = \"X1\"\nusb_id = \"2e8a\""), "boards[0].usb_id", 43),
        ("power-cycle reset without a relay", r("relay = \"r1\"\nsensor = \"s1\"", "sensor = \"s1\"\nreset = \"power-cycle\""), "boards[0].reset", 41),
        ("baud without a console", r("sensor = \"s1\"", "sensor = \"s1\"\nbaud = 9600"), "boards[0].baud", 42),
    ]
}

#[test]
fn the_base_lab_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("lab.toml");
    std::fs::write(&f, BASE).unwrap();
    let o = run(&["config", "check", f.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn every_malformed_lab_exits_2_naming_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    assert!(cases.len() >= 15);
    let mut failures = vec![];
    for (i, (what, src, field, line)) in cases.iter().enumerate() {
        let f = dir.path().join(format!("case{i}.toml"));
        std::fs::write(&f, src).unwrap();
        let o = run(&["config", "check", f.to_str().unwrap()]);
        let (out, err) = text(&o);
        let all = format!("{out}{err}");
        let want = format!("{}:{line}:", f.display());
        let ok = o.status.code() == Some(2)
            && all.contains(&want)
            && all.contains(field)
            && !all.contains("panicked");
        if !ok {
            failures.push(format!(
                "{what}: exit {:?}, wanted `{want}` and `{field}` in:\n{all}",
                o.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}

#[test]
fn json_errors_carry_line_column_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("lab.toml");
    std::fs::write(&f, BASE.replacen("relay = \"r2\"", "relay = \"r1\"", 1)).unwrap();
    let o = run(&["config", "check", "--json", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["field"], "boards[1].relay");
    assert_eq!(v["errors"][0]["line"], 47);
    assert_eq!(v["errors"][0]["column"], 9);
}

#[test]
fn unreadable_or_missing_file_is_bad_input() {
    let o = run(&["config", "check", "/nonexistent/lab.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("cannot read the lab file"));
}
