//! Multi-channel sensors: two boards measured by two channels of one chip (the `dual-sim` test
//! fixture, a simulated two-channel monitor loaded as a real plugin). The chip is opened once
//! with both channels' configurations and read by one sampler: in `sense` both channels' rows
//! carry the same instants; in `run` each channel's rows belong to its own board's runs, and each
//! board's energy matches its own simulated rail.

use std::path::{Path, PathBuf};

use labctl_integration_tests::{labctl, open_ro, plugin_lib, text};
use serde_json::Value;

/// A lab in `dir` with two virtual boards on channels 1 and 2 of one `dual-sim` chip.
fn dual_lab(dir: &Path) -> PathBuf {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for (lib, name) in [
        ("labctl_platform_virtual", "liblabctl_platform_virtual.so"),
        ("labctl_power", "liblabctl_power.so"),
        ("fixture_sensor_dual", "liblabctl_dual.so"),
    ] {
        std::fs::copy(plugin_lib(lib), plugins.join(name)).unwrap();
    }
    let lab = dir.join("lab.toml");
    std::fs::write(
        &lab,
        format!(
            r#"name = "dual"
plugin_dirs = [{plugins:?}]

[[buses]]
name = "i2c-sim"
simulated = true
frequency_hz = 400000

[[relays]]
name = "r1"
driver = "simulated"

[[relays]]
name = "r2"
driver = "simulated"

[[sensors]]
name = "ch-a"
chip = "dual-sim"
bus = "i2c-sim"
address = 0x50
channel = 1
shunt_ohms = 0.1
max_current_a = 0.4
rate_hz = 1000

[[sensors]]
name = "ch-b"
chip = "dual-sim"
bus = "i2c-sim"
address = 0x50
channel = 2
shunt_ohms = 0.1
max_current_a = 0.4
rate_hz = 1000

[[boards]]
name = "a"
platform = "virtual"
profile = "esp32s3"
relay = "r1"
sensor = "ch-a"

[[boards]]
name = "b"
platform = "virtual"
profile = "esp32s3"
relay = "r2"
sensor = "ch-b"
"#,
            plugins = plugins.display().to_string()
        ),
    )
    .unwrap();
    lab
}

#[test]
fn one_sampler_reads_both_channels_of_a_chip() {
    let dir = tempfile::tempdir().unwrap();
    let lab = dual_lab(dir.path());
    let o = labctl()
        .args(["--lab", lab.to_str().unwrap(), "config", "check"])
        .arg(&lab)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let o = labctl()
        .args([
            "--lab",
            lab.to_str().unwrap(),
            "sense",
            "--duration",
            "1s",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let c = open_ro(&dir.path().join("lab.duckdb"));
    let (a, b, same): (i64, i64, i64) = c
        .query_row(
            "SELECT count(*) FILTER (WHERE sensor = 'ch-a'), count(*) FILTER (WHERE sensor = 'ch-b'),
                    (SELECT count(*) FROM power_samples x JOIN power_samples y
                       ON x.t_us = y.t_us AND x.sensor = 'ch-a' AND y.sensor = 'ch-b')
             FROM power_samples",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert!(a > 500, "{a} samples on channel 1");
    assert_eq!(a, b, "one read gives both channels");
    assert_eq!(same, a, "both channels' rows carry the same instants");
}

#[test]
fn two_boards_on_one_chip_each_get_their_own_channel() {
    let dir = tempfile::tempdir().unwrap();
    let lab = dual_lab(dir.path());
    let o = labctl()
        .args(["--lab", lab.to_str().unwrap(), "run", "--json"])
        .args([
            "--model",
            "small4m:q4_0",
            "--tokens",
            "300",
            "--prompt",
            "Hi",
        ])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert_eq!(r["status"], "ok", "{r}");
        assert!(r["energy_mj"].as_f64().unwrap() > 0.0, "{r}");
    }
    let c = open_ro(&dir.path().join("lab.duckdb"));
    // Every sample inside a run is its own board's, from its own channel.
    let crossed: i64 = c
        .query_row(
            "SELECT count(*) FROM power_samples s JOIN runs r USING (run_id)
             WHERE (s.sensor = 'ch-a') <> (r.board = 'a')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(crossed, 0);
    // Each board's measured energy against its own rail's ground truth, over the whole run.
    let mut st = c
        .prepare(
            "WITH steps AS (SELECT run_id, t_us, bus_mv * current_ma / 1000.0 AS mw,
                                   lead(t_us) OVER (PARTITION BY run_id ORDER BY t_us) AS next_t
                            FROM rail_truth),
                  e2e AS (SELECT run_id, max(t_us) AS t1 FROM tokens GROUP BY run_id),
                  truth AS (SELECT run_id, sum(mw * greatest(0, least(coalesce(next_t, t1), t1) - greatest(t_us, 0))) / 1e6 AS mj
                            FROM steps JOIN e2e USING (run_id) GROUP BY run_id)
             SELECT s.board, s.energy_mj, truth.mj FROM run_summary s JOIN truth USING (run_id)",
        )
        .unwrap();
    let got: Vec<(String, f64, f64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got.len(), 2);
    for (board, measured, truth) in got {
        let err = (measured - truth).abs() / truth;
        println!(
            "{board}: energy {measured:.4} mJ, truth {truth:.4} mJ ({:.2} %)",
            err * 100.0
        );
        assert!(
            err < 0.05,
            "{board}: measured {measured} mJ vs truth {truth} mJ"
        );
    }
}
