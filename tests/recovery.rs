//! Hang recovery: a board silent past its `hang_timeout_s` mid-run is brought back by the first
//! step that works (reset → power cycle → reflash), each step stored in `board_events`, and the
//! remaining runs go on; a board nothing brings back is quarantined — shown by `labctl boards`,
//! given no runs — until `labctl boards release`.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::Instant,
};

use labctl_integration_tests::{
    firmware_children, have_socat, labctl, open_ro, run, run_ok, signal, text, virtual_lab, Line,
};

/// `hang_timeout_s` on the virtual lab's pico board.
fn with_hang_timeout(lab: &std::path::Path, secs: &str) {
    let s = std::fs::read_to_string(lab).unwrap().replace(
        "name = \"pico\"\nplatform = \"virtual\"\n",
        &format!("name = \"pico\"\nplatform = \"virtual\"\nhang_timeout_s = {secs}\n"),
    );
    assert!(s.contains("hang_timeout_s"));
    std::fs::write(lab, s).unwrap();
}

#[test]
fn a_hung_virtual_board_is_power_cycled_and_its_runs_go_on() {
    let (dir, lab) = virtual_lab();
    with_hang_timeout(&lab, "0.5");
    let lab_s = lab.to_str().unwrap();
    let mut child = labctl()
        .args(["--lab", lab_s, "run", "--boards", "pico", "--tokens", "32"])
        .args(["--repeat", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut notes = vec![];
    let mut stopped_at = None;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if stopped_at.is_none() && line.contains("run 1/300 ok") {
            let fw = firmware_children(pid);
            assert_eq!(fw.len(), 1, "{fw:?}");
            signal(fw[0], libc::SIGSTOP);
            stopped_at = Some(Instant::now());
        }
        notes.push(line);
    }
    let status = child.wait().unwrap();
    let all = notes.join("\n");
    let recovered = notes
        .iter()
        .find(|l| l.contains("recovered by"))
        .unwrap_or_else(|| panic!("no recovery:\n{all}"));
    println!("{recovered} (hang detected after the 0.5 s hang timeout)");
    assert!(recovered.contains("power-cycle"), "{all}");
    // The one hung run failed; the board went on and finished the others.
    assert_eq!(status.code(), Some(1), "{all}");
    let c = open_ro(&dir.path().join("lab.duckdb"));
    let count = |q: &str| -> i64 { c.query_row(q, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count(
            "SELECT count(*) FROM runs WHERE status = 'failed' AND reason_code = 'token-timeout'"
        ),
        1
    );
    assert!(
        count("SELECT count(*) FROM runs WHERE status = 'ok'") >= 290,
        "{all}"
    );
    assert_eq!(
        count("SELECT count(*) FROM board_events WHERE state = 'recovering' AND reason_code = 'power-cycle'"),
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM board_events WHERE state = 'quarantined'"),
        0
    );
}

#[test]
fn a_board_nothing_brings_back_is_quarantined_until_released() {
    if !have_socat() {
        return;
    }
    let (dir, lab) = virtual_lab();
    let d = dir.path();
    let line = Line::new(d, "bench");
    let model = d.join("m.ltlm");
    run_ok(&[
        "model",
        "gen",
        "--preset",
        "stories260k",
        "--quant",
        "q8_0",
        "-o",
        model.to_str().unwrap(),
    ]);
    // A board flashed by hand on a serial line: no probe, no reset wired, no relay — once its
    // firmware hangs, re-running bring-up is all labctl can try.
    let mut fw = line.firmware(
        &model,
        "bench-board",
        &[
            "--clock-hz",
            "100000000",
            "--ram",
            "524288",
            "--flash",
            "4194304",
            "--ctx",
            "512",
        ],
    );
    let mut s = std::fs::read_to_string(&lab).unwrap();
    s.push_str(&format!(
        "\n[[boards]]\nname = \"bench\"\nplatform = \"serial\"\nprofile = \"generic\"\nserial = \"{}\"\nhang_timeout_s = 0.5\n",
        line.host.display()
    ));
    std::fs::write(&lab, s).unwrap();
    let lab_s = lab.to_str().unwrap();
    let m = model.to_str().unwrap();
    let args = [
        "--lab",
        lab_s,
        "run",
        "--boards",
        "bench",
        "--model",
        m,
        "--tokens",
        "16",
        "--boot-timeout",
        "2s",
    ];
    // The first run of three goes well; then the firmware stops answering for good.
    let mut child = labctl()
        .args(args)
        .args(["--repeat", "200"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut notes = vec![];
    for l in BufReader::new(child.stderr.take().unwrap()).lines() {
        let l = l.unwrap();
        if l.contains("run 1/200 ok") {
            signal(fw.id() as i32, libc::SIGSTOP);
        }
        notes.push(l);
    }
    assert_eq!(child.wait().unwrap().code(), Some(1));
    let all = notes.join("\n");
    assert!(all.contains("bench: quarantined"), "{all}");
    assert!(all.contains("labctl boards release bench"), "{all}");
    {
        let c = open_ro(&d.join("lab.duckdb"));
        let (n, why): (i64, String) = c
            .query_row(
                "SELECT count(*), any_value(reason) FROM board_events WHERE board = 'bench' AND state = 'quarantined'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(n, 1);
        assert!(why.contains("reflash"), "what was tried is said: {why}");
    }
    // Shown by `boards`, and given no runs.
    let o = run_ok(&["--lab", lab_s, "boards", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    let bench = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["board"] == "bench")
        .unwrap();
    assert!(
        bench["quarantined"].as_str().unwrap().contains("release"),
        "{bench}"
    );
    assert!(
        bench["flakiness"]["not_ok"].as_i64().unwrap() >= 1,
        "{bench}"
    );
    let o = run(&args);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o).1);
    {
        let c = open_ro(&d.join("lab.duckdb"));
        let code: String = c
            .query_row(
                "SELECT reason_code FROM runs WHERE board = 'bench' ORDER BY started_at DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(code, "quarantined");
    }
    // Looked at and fixed: released, it runs again.
    signal(fw.id() as i32, libc::SIGCONT);
    let o = run_ok(&["--lab", lab_s, "boards", "release", "bench"]);
    assert!(text(&o).0.contains("back in service"), "{}", text(&o).0);
    run_ok(&args);
    let _ = fw.kill();
    let _ = fw.wait();
}
