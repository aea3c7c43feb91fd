//! `labctl sense` on the virtual lab: three simulated INA219s at 1 kHz for 5 s store at least
//! 99 % of the expected samples in DuckDB, with strictly increasing timestamps per sensor and
//! readings that match the simulated rails.

use duckdb::{AccessMode, Config, Connection};
use labctl_integration_tests::{labctl, text, virtual_lab};

/// sensor, samples, real samples, mean mA, first t, last t, sessions, with run id.
type SensorRow = (String, i64, i64, f64, i64, i64, i64, i64);

#[test]
fn sense_three_sensors_at_1khz_for_5s() {
    let (dir, lab) = virtual_lab();
    let lab = lab.to_str().unwrap();
    for b in ["esp32s3-devkit", "nucleo-f746", "pico"] {
        let o = labctl()
            .args(["--lab", lab, "power", b, "on"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o).1);
    }
    let o = labctl()
        .args(["--lab", lab, "sense", "--duration", "5s"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("pwr-esp32s3"),
        "plain live lines when not on a terminal: {out}"
    );

    let db = dir.path().join("lab.duckdb");
    let conn = Connection::open_with_flags(
        &db,
        Config::default().access_mode(AccessMode::ReadOnly).unwrap(),
    )
    .unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT sensor, count(*), count(*) FILTER (WHERE NOT simulated), avg(current_ma), \
             min(t_us), max(t_us), count(DISTINCT session_id), count(*) FILTER (WHERE run_id IS NOT NULL) \
             FROM power_samples GROUP BY sensor ORDER BY sensor",
        )
        .unwrap();
    let rows: Vec<SensorRow> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let idle = |s: &str| match s {
        "pwr-esp32s3" => 32.0,
        "pwr-stm32f7" => 48.0,
        _ => 19.0,
    };
    for (sensor, n, not_sim, avg_ma, min_t, max_t, sessions, with_run) in &rows {
        assert!(*n >= 4950, "{sensor}: {n} of 5000 samples");
        assert_eq!(*not_sim, 0);
        assert_eq!(*sessions, 1);
        assert_eq!(*with_run, 0, "run_id is null outside a run");
        assert!(*min_t >= 0 && *max_t <= 5_100_000, "{min_t}..{max_t}");
        // 0.1 Ω shunt: 10 µV LSB = 0.1 mA.
        assert!(
            (avg_ma - idle(sensor)).abs() <= 0.1,
            "{sensor}: {avg_ma} mA"
        );
    }
    let not_increasing: i64 = conn
        .query_row(
            "SELECT count(*) FROM (SELECT t_us - lag(t_us) OVER (PARTITION BY sensor ORDER BY rowid) AS d \
             FROM power_samples) WHERE d <= 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        not_increasing, 0,
        "timestamps strictly increase per sensor in arrival order"
    );
    let (status, samples): (String, i64) = conn
        .query_row("SELECT status, samples FROM sense_sessions", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(status, "ok");
    assert_eq!(samples, rows.iter().map(|r| r.1).sum::<i64>());
}

#[test]
fn sigint_flushes_what_was_measured_and_exits_1() {
    let (dir, lab) = virtual_lab();
    let mut child = labctl()
        .args([
            "--lab",
            lab.to_str().unwrap(),
            "sense",
            "--sensor",
            "pwr-pico-missing",
        ])
        .spawn()
        .unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(2), "unknown sensor is bad input");

    let mut child = labctl()
        .args([
            "--lab",
            lab.to_str().unwrap(),
            "sense",
            "--sensor",
            "pwr-rp2040",
            "--rate",
            "200",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: sending a signal to our own child process.
    unsafe { libc_kill(child.id() as i32, 2) };
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(1));
    let conn = Connection::open_with_flags(
        dir.path().join("lab.duckdb"),
        Config::default().access_mode(AccessMode::ReadOnly).unwrap(),
    )
    .unwrap();
    let (n, status): (i64, String) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM power_samples), (SELECT status FROM sense_sessions)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(n >= 100, "samples measured before Ctrl-C are kept: {n}");
    assert_eq!(status, "aborted");
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
