//! Crash safety: a run's `running` row is committed before its board is prompted, so a labctl
//! killed with SIGKILL mid-run leaves it; the next labctl that opens the database for writing
//! marks it `aborted` / `host-crashed` naming the dead process, and everything committed before
//! the crash stays.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
};

use labctl_integration_tests::{labctl, open_ro, run_ok, virtual_lab};

/// The labctl-fw-posix children of `parent` (the virtual boards' firmware).
fn firmware_children(parent: u32) -> Vec<i32> {
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces, so split after the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && head.contains("labctl-fw-posi") {
            out.push(pid);
        }
    }
    out
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a process this test started (or its child).
    unsafe { libc::kill(pid, sig) };
}

#[test]
fn sigkill_mid_run_leaves_the_run_and_the_next_writer_marks_it_aborted() {
    let (dir, lab) = virtual_lab();
    let lab_s = lab.to_str().unwrap();
    let mut child = labctl()
        .args([
            "--lab", lab_s, "run", "--tokens", "48", "--repeat", "100000",
        ])
        .args(["--token-timeout", "600s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Once runs complete, hang one board mid-protocol: its firmware stopped (SIGSTOP), the run
    // it is in (or the next, whose start is committed before the prompt) stays `running`.
    let mut stopped = vec![];
    let mut after = 0;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if !line.contains(" ok") {
            continue;
        }
        if stopped.is_empty() {
            let fw = firmware_children(pid);
            assert_eq!(fw.len(), 3, "three virtual boards' firmware: {fw:?}");
            signal(fw[0], libc::SIGSTOP);
            stopped.push(fw[0]);
        } else {
            // The other boards go on: time passes with the hung board's run open.
            after += 1;
            if after == 20 {
                break;
            }
        }
    }
    assert_eq!(after, 20, "the other boards kept running");
    child.kill().unwrap();
    child.wait().unwrap();
    for fw in firmware_children(1).into_iter().chain(stopped) {
        // Orphaned firmware (reparented): stop it for good.
        signal(fw, libc::SIGKILL);
    }
    let db = dir.path().join("lab.duckdb");
    // The next writer: a short run of one board.
    run_ok(&["--lab", lab_s, "run", "--boards", "pico", "--tokens", "2"]);
    let c = open_ro(&db);
    let (aborted, why): (i64, String) = c
        .query_row(
            "SELECT count(*), coalesce(any_value(error), '') FROM runs WHERE status = 'aborted' AND reason_code = 'host-crashed'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(aborted >= 1, "the hung board's run was left and marked");
    assert!(
        why.contains(&format!("pid {pid}")) && why.contains("without closing"),
        "{why}"
    );
    let running: i64 = c
        .query_row(
            "SELECT count(*) FROM runs WHERE status = 'running'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(running, 0);
    // What was committed before the crash stays: the finished runs, each with its tokens.
    let (ok, short): (i64, i64) = c
        .query_row(
            "SELECT count(*), count(*) FILTER (WHERE n < 48) FROM (SELECT r.run_id, count(t.idx) FILTER (WHERE t.phase = 'decode') AS n FROM runs r LEFT JOIN tokens t USING (run_id) WHERE r.status = 'ok' AND r.batch_id <> (SELECT max(batch_id) FROM runs) GROUP BY r.run_id)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(ok >= 20, "{ok} finished runs before the crash");
    assert_eq!(short, 0, "a finished run lost tokens");
}
