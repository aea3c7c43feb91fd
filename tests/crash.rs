//! Crash safety: a run's `running` row is committed before its board is prompted, so a labctl
//! killed with SIGKILL mid-run leaves it; the next labctl that opens the database for writing
//! marks it `aborted` / `host-crashed` naming the dead process, and everything committed before
//! the crash stays.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
};

use labctl_integration_tests::{firmware_children, labctl, open_ro, run_ok, signal, virtual_lab};

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

/// A small filesystem of its own for the database: a 3 MiB tmpfs (`mount` needs privileges; None
/// when the machine does not grant them, and the test says so).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &std::path::Path) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "disk-full test skipped: this machine does not let the test mount a tmpfs (no privileges), and nothing else fills a filesystem without them"
            );
            return None;
        }
        Some(SmallDisk(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_ends_the_runs_as_storage_errors_and_the_database_stays_openable() {
    let (dir, lab) = virtual_lab();
    let Some(disk) = SmallDisk::mount(&dir.path().join("small")) else {
        return;
    };
    let text = std::fs::read_to_string(&lab).unwrap().replace(
        "path = \"lab.duckdb\"",
        &format!("path = \"{}/lab.duckdb\"", disk.0.display()),
    );
    std::fs::write(&lab, &text).unwrap();
    let t = std::time::Instant::now();
    let o = labctl()
        .args(["--lab", lab.to_str().unwrap(), "run", "--tokens", "32"])
        .args(["--repeat", "5000"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    println!(
        "disk full: labctl stopped {:.1} s after starting",
        t.elapsed().as_secs_f64()
    );
    // Space again (the files moved to a roomier disk): the database opens, what was committed
    // is there, and the runs the full disk cut off are `error` / `storage` with the reason.
    let roomy = dir.path().join("roomy");
    std::fs::create_dir(&roomy).unwrap();
    for e in std::fs::read_dir(&disk.0).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), roomy.join(e.file_name())).unwrap();
        }
    }
    drop(disk);
    std::fs::write(
        &lab,
        text.replace(
            &format!("{}/lab.duckdb", dir.path().join("small").display()),
            &format!("{}/lab.duckdb", roomy.display()),
        ),
    )
    .unwrap();
    run_ok(&[
        "--lab",
        lab.to_str().unwrap(),
        "run",
        "--boards",
        "pico",
        "--tokens",
        "2",
    ]);
    let c = open_ro(&roomy.join("lab.duckdb"));
    let (ok, storage, running, why): (i64, i64, i64, String) = c
        .query_row(
            "SELECT count(*) FILTER (WHERE status = 'ok'), count(*) FILTER (WHERE reason_code = 'storage'), \
             count(*) FILTER (WHERE status = 'running'), coalesce(any_value(error) FILTER (WHERE reason_code = 'storage'), '') FROM runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert!(ok > 1, "the runs committed before the disk filled are kept");
    assert!(
        storage >= 1 && why.contains("No space left on device"),
        "{why}"
    );
    assert_eq!(running, 0);
    run_ok(&["--lab", lab.to_str().unwrap(), "verify"]);
}
