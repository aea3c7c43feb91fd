//! `labctl power` switches simulated relays and keeps their state beside the database;
//! `labctl boards` reports relay state, a sensor test read and USB presence.

use labctl_integration_tests::{labctl, text, virtual_lab};
use serde_json::Value;

fn boards(lab: &str) -> Vec<Value> {
    let o = labctl()
        .args(["--lab", lab, "boards", "--json"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn power_state_persists_and_boards_reads_the_rail() {
    let (dir, lab) = virtual_lab();
    let lab = lab.to_str().unwrap();
    let b = boards(lab);
    assert_eq!(b.len(), 3);
    for x in &b {
        assert_eq!(x["power"], "off");
        assert_eq!(x["usb"], "emulated (no USB)");
        assert_eq!(x["simulated"], true);
        // Off: the simulated rail carries no current.
        assert_eq!(x["reading"]["current_ma"], 0.0, "{x}");
    }

    let o = labctl()
        .args(["--lab", lab, "power", "esp32s3-devkit", "on"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(dir.path().join("lab.state.json").exists());

    let b = boards(lab);
    let esp = b.iter().find(|x| x["board"] == "esp32s3-devkit").unwrap();
    assert_eq!(esp["power"], "on");
    assert_eq!(esp["sensor_health"], "ok");
    // The virtual esp32s3 idles at 32 mA on 5 V; the INA219's current register (0.4 A full
    // scale: 13 µA LSB) reads it back within a few LSB.
    let ma = esp["reading"]["current_ma"].as_f64().unwrap();
    assert!((ma - 32.0).abs() < 0.05, "{ma}");
    let mv = esp["reading"]["bus_mv"].as_f64().unwrap();
    assert!((mv - 5000.0).abs() <= 4.0, "{mv}");
    let pico = b.iter().find(|x| x["board"] == "pico").unwrap();
    assert_eq!(pico["power"], "off");

    let o = labctl()
        .args([
            "--lab",
            lab,
            "power",
            "esp32s3-devkit",
            "cycle",
            "--off-time",
            "10ms",
            "--json",
        ])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["on"], true);

    let o = labctl()
        .args(["--lab", lab, "power", "esp32s3-devkit", "off"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let b = boards(lab);
    assert_eq!(
        b.iter().find(|x| x["board"] == "esp32s3-devkit").unwrap()["power"],
        "off"
    );
}

#[test]
fn unknown_board_is_bad_input() {
    let (_dir, lab) = virtual_lab();
    let o = labctl()
        .args(["--lab", lab.to_str().unwrap(), "power", "nope", "on"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("no board named \"nope\""));
}
