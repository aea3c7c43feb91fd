//! A bench's own parts through the real binary: the `--dry-run` plan of the virtual lab against
//! golden text, and power drivers served by the power-driver plugin (`plugins/power`): a USB hub
//! port switched through a sysfs-shaped tree (`LABCTL_SYSROOT`), a `command` relay running argv
//! without a shell, and a failing driver that faults only its own board.

use std::path::{Path, PathBuf};

use labctl_integration_tests::{golden, labctl, open_ro, repo, run_ok, text, virtual_lab};
use serde_json::Value;

#[test]
fn the_virtual_lab_dry_run_is_the_golden_plan_and_touches_nothing() {
    let (dir, lab) = virtual_lab();
    let o = run_ok(&["--lab", lab.to_str().unwrap(), "run", "--dry-run"]);
    let (out, _) = text(&o);
    assert_eq!(out, golden("virtual-lab.dry-run.txt", dir.path()));
    // Nothing was opened or made: no database, no relay state, no generated model.
    let made: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p != &lab)
        .collect();
    assert!(made.is_empty(), "a dry run made {made:?}");
    let o = run_ok(&["--lab", lab.to_str().unwrap(), "run", "--dry-run", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let steps: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["board"] == "pico")
        .map(|l| l["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["power", "start", "console"]);
}

/// The virtual lab with relay `relay-3` (pico's) replaced by `relay`.
fn lab_with_relay(dir: &Path, relay: &str) -> PathBuf {
    let src = std::fs::read_to_string(repo().join("lab-config/examples/virtual-lab.toml"))
        .unwrap()
        .replace(
            "[[relays]]\nname = \"relay-3\"\ndriver = \"simulated\"",
            &format!("[[relays]]\nname = \"relay-3\"\n{relay}"),
        );
    assert!(src.contains(relay), "the example lab changed shape");
    let lab = dir.join("lab.toml");
    std::fs::write(&lab, src).unwrap();
    lab
}

#[test]
fn a_usb_hub_port_is_switched_through_sysfs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let port = root.join("sys/bus/usb/devices/1-1.2:1.0/1-1.2-port3");
    std::fs::create_dir_all(&port).unwrap();
    std::fs::write(port.join("disable"), "0\n").unwrap();
    // The board behind the port, so power-on finds it enumerated.
    std::fs::create_dir_all(root.join("sys/bus/usb/devices/1-1.2.3")).unwrap();
    let lab = lab_with_relay(
        dir.path(),
        "driver = \"usb-port\"\nhub = \"1-1.2\"\nport = 3",
    );
    let power = |action: &str| {
        let o = labctl()
            .env("LABCTL_SYSROOT", &root)
            .args([
                "--lab",
                lab.to_str().unwrap(),
                "power",
                "pico",
                action,
                "--json",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o).1);
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let r = power("off");
    assert_eq!(r["driver"], "usb-port");
    assert_eq!(std::fs::read_to_string(port.join("disable")).unwrap(), "1");
    power("on");
    assert_eq!(std::fs::read_to_string(port.join("disable")).unwrap(), "0");
    // The plan says what it would write, and where.
    let o = labctl()
        .env("LABCTL_SYSROOT", &root)
        .args([
            "--lab",
            lab.to_str().unwrap(),
            "run",
            "--dry-run",
            "--boards",
            "pico",
        ])
        .output()
        .unwrap();
    let (out, _) = text(&o);
    let want = format!("write 0 to {}", port.join("disable").display());
    assert!(out.contains(&want), "{out}");
}

#[test]
fn a_command_relay_runs_argv_without_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("plug is on; rm -rf ~");
    let lab = lab_with_relay(
        dir.path(),
        &format!(
            "driver = \"command\"\non = [\"touch\", {m:?}]\noff = [\"rm\", \"-f\", {m:?}]\nstatus = [\"test\", \"-e\", {m:?}]",
            m = mark.display().to_string()
        ),
    );
    let l = lab.to_str().unwrap();
    run_ok(&["--lab", l, "power", "pico", "on"]);
    assert!(
        mark.exists(),
        "the `on` argv ran, its `;` a plain character"
    );
    run_ok(&["--lab", l, "power", "pico", "off"]);
    assert!(!mark.exists());
}

#[test]
fn a_failing_power_driver_faults_only_its_board() {
    let dir = tempfile::tempdir().unwrap();
    let lab = lab_with_relay(
        dir.path(),
        "driver = \"command\"\non = [\"false\"]\noff = [\"true\"]",
    );
    let o = labctl()
        .args([
            "--lab",
            lab.to_str().unwrap(),
            "run",
            "--json",
            "--tokens",
            "8",
        ])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    for r in rows.as_array().unwrap() {
        if r["board"] == "pico" {
            assert_eq!(r["status"], "error", "{r}");
            assert_eq!(r["reason_code"], "power", "{r}");
            assert!(
                r["error"]
                    .as_str()
                    .unwrap()
                    .contains("`false` exited with status 1"),
                "{r}"
            );
        } else {
            assert_eq!(r["status"], "ok", "{r}");
        }
    }
    // The bring-up of each board, as stored: the full sequence where it worked, `off` with the
    // reason where the power driver failed.
    let c = open_ro(&dir.path().join("lab.duckdb"));
    let states = |board: &str| -> Vec<(String, Option<String>, Option<String>)> {
        c.prepare("SELECT state, reason, reason_code FROM board_events WHERE board = ? ORDER BY recorded_at")
            .unwrap()
            .query_map([board], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let ok: Vec<String> = states("nucleo-f746").into_iter().map(|s| s.0).collect();
    assert_eq!(
        ok,
        ["powered", "flashed", "booted", "ready", "running", "ready", "off"],
        "{ok:?}"
    );
    let pico = states("pico");
    assert_eq!(pico.len(), 1, "{pico:?}");
    assert_eq!(pico[0].0, "off");
    assert_eq!(pico[0].2.as_deref(), Some("power"));
    assert!(
        pico[0].1.as_deref().unwrap().contains("`false` exited"),
        "{pico:?}"
    );
}

#[test]
fn the_virtual_platform_runs_another_platforms_profile() {
    let dir = tempfile::tempdir().unwrap();
    let lab = dir.path().join("lab.toml");
    std::fs::write(
        &lab,
        "name = \"foreign\"\n[[boards]]\nname = \"m4-on-host\"\nplatform = \"virtual\"\nprofile = \"qemu/cortex-m4-168\"\n",
    )
    .unwrap();
    let l = lab.to_str().unwrap();
    // The plan shows the qemu profile's clock and memory given to the posix firmware.
    let o = run_ok(&["--lab", l, "run", "--dry-run"]);
    let plan = text(&o).0;
    assert!(
        plan.contains("--clock-hz 168000000 --ram 4194304"),
        "{plan}"
    );
    let o = run_ok(&["--lab", l, "run", "--json", "--tokens", "8"]);
    let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows[0]["status"], "ok", "{rows}");
    assert_eq!(rows[0]["simulated"], true, "an emulation stays simulated");
    let c = open_ro(&dir.path().join("lab.duckdb"));
    let (timing, hz): (String, i64) = c
        .query_row("SELECT timing_source, clock_hz FROM runs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert!(
        timing.starts_with("host-cpu"),
        "timed as the running platform times: {timing}"
    );
    assert_eq!(hz, 168_000_000);
    // A profile the other platform does not have is a mistake in the file.
    std::fs::write(
        &lab,
        std::fs::read_to_string(&lab)
            .unwrap()
            .replace("cortex-m4-168", "nope"),
    )
    .unwrap();
    let o = labctl_integration_tests::run(&["config", "check", l]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o)
            .1
            .contains("platform \"qemu\" has no profile \"nope\""),
        "{}",
        text(&o).1
    );
}
