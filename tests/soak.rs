//! Soak: the virtual lab profiling without end while boards hang (SIGSTOP) and die (SIGKILL) at
//! random, for `LABCTL_SOAK_SECS` seconds (180 under LAB_REQUIRE_EXTERNAL=1, as CI runs it; 30
//! otherwise). From the first minute to the last (thirds of a shorter soak), labctl's resident
//! memory (median) grows by less than 5 MB and its open file descriptors (floor) not at all, and
//! every fault is recovered (or its board quarantined).

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use labctl_integration_tests::{firmware_children, labctl, open_ro, signal, virtual_lab};

/// (resident set in KiB, open file descriptors) of `pid`.
fn usage(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (rss, fds)
}

#[test]
fn soak_with_hangs_and_crashes_keeps_memory_and_descriptors_flat() {
    let secs: u64 = std::env::var("LABCTL_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(
            if std::env::var("LAB_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
                180
            } else {
                30
            },
        );
    let (dir, lab) = virtual_lab();
    let text = std::fs::read_to_string(&lab).unwrap().replace(
        "platform = \"virtual\"\n",
        "platform = \"virtual\"\nhang_timeout_s = 0.5\n",
    );
    std::fs::write(&lab, text).unwrap();
    let mut child = labctl()
        .args(["--lab", lab.to_str().unwrap(), "run", "--tokens", "32"])
        .args(["--repeat", "100000000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let notes = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let notes = notes.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if l.contains("recovered by") || l.contains("quarantined") {
                    notes.lock().unwrap().push(l);
                }
            }
        })
    };
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    // The first minute and the last (thirds of a shorter soak, the first after a warm-up):
    // resident memory as its median over each (the database's checkpoint cycles move it up and
    // down by a few MB), descriptors as their minimum (a board being restarted holds a pipe or
    // two for a moment; a leak raises the floor).
    let window = Duration::from_secs((secs / 3).min(60));
    let warm = Duration::from_secs((secs / 6).min(10));
    let mut first: Vec<(u64, usize)> = vec![];
    let mut last: Vec<(u64, usize)> = vec![];
    let (mut hangs, mut crashes) = (0u32, 0u32);
    let mut seed = 0x9E37_79B9u32;
    let mut next_fault = start + Duration::from_secs(2);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        if now >= start + warm && now < start + warm + window {
            first.push(usage(pid));
        } else if now + window >= end {
            last.push(usage(pid));
        }
        if Instant::now() < next_fault {
            continue;
        }
        // xorshift: which board, and which fault.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let fw = firmware_children(pid);
        if let Some(&victim) = fw.get(seed as usize % fw.len().max(1)) {
            if seed & 0x100 == 0 {
                signal(victim, libc::SIGSTOP);
                hangs += 1;
            } else {
                signal(victim, libc::SIGKILL);
                crashes += 1;
            }
        }
        next_fault = Instant::now() + Duration::from_millis(1500 + (seed % 1500) as u64);
    }
    signal(pid as i32, libc::SIGTERM);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let summary = |v: &mut Vec<(u64, usize)>| {
        assert!(!v.is_empty(), "no readings in a window");
        v.sort_by_key(|u| u.0);
        (v[v.len() / 2].0, v.iter().map(|u| u.1).min().unwrap())
    };
    let (first_rss, first_fds) = summary(&mut first);
    let last = summary(&mut last);
    let notes = notes.lock().unwrap().clone();
    let recovered = notes.iter().filter(|l| l.contains("recovered by")).count();
    let quarantined = notes.iter().filter(|l| l.contains(": quarantined")).count();
    let c = open_ro(&dir.path().join("lab.duckdb"));
    let runs: i64 = c
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    println!(
        "soak {secs} s: {runs} runs, {} faults injected ({hangs} hangs, {crashes} crashes), {recovered} recovered, {quarantined} quarantined; RSS {first_rss} → {} KiB, fds {first_fds} → {}",
        hangs + crashes,
        last.0,
        last.1
    );
    assert!(
        status.code().is_some(),
        "labctl ended by itself: {status:?}"
    );
    assert!(
        last.0 < first_rss + 5 * 1024,
        "RSS grew from {first_rss} to {} KiB",
        last.0
    );
    assert!(
        last.1 <= first_fds,
        "fds grew from {first_fds} to {}",
        last.1
    );
    // A fault that hit a board between runs (or twice before one hang was noticed) is one
    // recovery; every board that faulted came back or was quarantined.
    assert!(recovered + quarantined >= 1, "{notes:?}");
    assert_eq!(quarantined, 0, "virtual boards always come back: {notes:?}");
    let stuck: i64 = c
        .query_row(
            "SELECT count(*) FROM board_events e WHERE state = 'recovering' AND NOT EXISTS \
             (SELECT 1 FROM board_events f WHERE f.board = e.board AND f.recorded_at > e.recorded_at AND f.state IN ('ready', 'quarantined', 'off'))",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stuck, 0, "a recovery that never ended");
}
