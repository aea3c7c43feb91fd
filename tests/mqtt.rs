//! Live metrics over MQTT, against the real Mosquitto broker (started by each test on a free
//! port, and stopped to test an outage) and against labctl's embedded broker, with
//! `mosquitto_sub` as the independent subscriber. Without Mosquitto installed these tests say
//! why and skip, unless LAB_REQUIRE_EXTERNAL=1 (CI), where they fail.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use duckdb::{AccessMode, Config, Connection};
use labctl_integration_tests::{labctl, run_ok, text, virtual_lab};
use serde_json::Value;

fn have(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        let why =
            format!("{program} is not installed (apt-get install mosquitto mosquitto-clients)");
        if std::env::var("LAB_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
            panic!("{why}, and LAB_REQUIRE_EXTERNAL=1");
        }
        eprintln!("skipping: {why}");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16) {
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Mosquitto of the test's own.
struct Mosquitto {
    port: u16,
    conf: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    fn start(dir: &Path) -> Option<Mosquitto> {
        if !have("mosquitto") || !have("mosquitto_sub") {
            return None;
        }
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
        )
        .unwrap();
        let mut m = Mosquitto {
            port,
            conf,
            child: None,
        };
        m.restart();
        Some(m)
    }

    fn restart(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        wait_listening(self.port);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `mosquitto_sub -v` on `labctl/#`, collecting (topic, payload) lines.
struct Sub {
    child: Child,
    lines: Arc<Mutex<Vec<(String, String)>>>,
}

impl Sub {
    /// Subscribes (retrying until the broker accepts) and waits until a probe message arrives,
    /// so nothing published afterwards is missed.
    fn start(port: u16) -> Sub {
        let t = Instant::now();
        loop {
            let mut child = Command::new("mosquitto_sub")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-t",
                    "labctl/#",
                    "-v",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("mosquitto_sub");
            let lines = Arc::new(Mutex::new(vec![]));
            let out = child.stdout.take().unwrap();
            let l2 = lines.clone();
            std::thread::spawn(move || {
                // Payloads may be any bytes (the tests publish invalid UTF-8 on purpose).
                for line in BufReader::new(out).split(b'\n').map_while(Result::ok) {
                    let line = String::from_utf8_lossy(&line).into_owned();
                    let (topic, payload) = line.split_once(' ').unwrap_or((&line, ""));
                    l2.lock()
                        .unwrap()
                        .push((topic.to_string(), payload.to_string()));
                }
            });
            let mut sub = Sub { child, lines };
            let probe = Instant::now();
            while probe.elapsed() < Duration::from_secs(2) {
                // Refused (the broker is not up yet): try again at once, not after the probes.
                if sub.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                let _ = Command::new("mosquitto_pub")
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &port.to_string(),
                        "-t",
                        "labctl/probe",
                        "-m",
                        "x",
                    ])
                    .output();
                if sub
                    .lines
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|(t, _)| t == "labctl/probe")
                {
                    return sub;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(sub);
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "could not subscribe on port {port}"
            );
        }
    }

    fn messages(&self) -> Vec<(String, String)> {
        self.lines.lock().unwrap().clone()
    }

    /// The messages once `done` holds for them (the broker and this reader may lag the
    /// publisher on a loaded machine); fails after 15 s.
    fn messages_when(
        &self,
        what: &str,
        done: impl Fn(&[(String, String)]) -> bool,
    ) -> Vec<(String, String)> {
        let t = Instant::now();
        loop {
            let m = self.messages();
            if done(&m) {
                return m;
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "never received {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether `msgs` hold the lab's retained "offline" status: the last thing a command publishes.
fn went_offline(msgs: &[(String, String)]) -> bool {
    msgs.iter()
        .any(|(t, p)| t.ends_with("/status") && p == "offline")
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn add_mqtt(lab: &Path, section: &str) {
    let mut s = std::fs::read_to_string(lab).unwrap();
    s.push_str("\n[mqtt]\n");
    s.push_str(section);
    std::fs::write(lab, s).unwrap();
}

/// A copy of the virtual lab publishing to a Mosquitto of its own (None: skipped).
fn lab_on_mosquitto() -> Option<(tempfile::TempDir, PathBuf, Mosquitto)> {
    let (dir, lab) = virtual_lab();
    let broker = Mosquitto::start(dir.path())?;
    add_mqtt(
        &lab,
        &format!(
            "mode = \"external\"\nurl = \"mqtt://127.0.0.1:{}\"\n",
            broker.port
        ),
    );
    Some((dir, lab, broker))
}

/// `labctl run` on the pico board in the background, output captured.
fn spawn_run_on_pico(lab: &Path, tokens: &str, repeat: &str) -> Child {
    labctl()
        .args(["--lab", lab.to_str().unwrap(), "run", "--boards", "pico"])
        .args(["--tokens", tokens, "--repeat", repeat])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn open_ro(db: &Path) -> Connection {
    Connection::open_with_flags(
        db,
        Config::default().access_mode(AccessMode::ReadOnly).unwrap(),
    )
    .unwrap()
}

/// Samples per run id received in power batches; checks the arrays have equal lengths.
fn power_counts(msgs: &[(String, String)]) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for (t, p) in msgs.iter().filter(|(t, _)| t.ends_with("/power")) {
        let v: Value = serde_json::from_str(p).unwrap_or_else(|e| panic!("{t}: {e}: {p}"));
        let len = v["t_us"].as_array().unwrap().len();
        for k in ["bus_mv", "current_ma", "power_mw"] {
            assert_eq!(v[k].as_array().unwrap().len(), len, "{t}: {k}");
        }
        assert!(v["newest_wall_ms"].as_u64().is_some());
        if let Some(r) = v["run_id"].as_str() {
            *n.entry(r.to_string()).or_default() += len;
        }
    }
    n
}

fn db_counts(db: &Path) -> HashMap<String, usize> {
    let c = open_ro(db);
    let mut st = c
        .prepare(
            "SELECT run_id, count(*) FROM power_samples WHERE run_id IS NOT NULL GROUP BY run_id",
        )
        .unwrap();
    st.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn a_run_publishes_everything_to_mosquitto_and_samples_match_duckdb() {
    let Some((dir, lab, broker)) = lab_on_mosquitto() else {
        return;
    };
    let sub = Sub::start(broker.port);
    let o = labctl()
        .args([
            "--lab",
            lab.to_str().unwrap(),
            "run",
            "--tokens",
            "60",
            "--repeat",
            "2",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let msgs = sub.messages_when("the offline status", went_offline);
    let has = |suffix: &str| msgs.iter().filter(|(t, _)| t.ends_with(suffix)).count();
    let prefix = "labctl/virtual-lab";
    assert!(msgs
        .iter()
        .any(|(t, p)| t == &format!("{prefix}/status") && p == "online"));
    assert!(msgs
        .iter()
        .any(|(t, p)| t == &format!("{prefix}/status") && p == "offline"));
    for b in ["esp32s3-devkit", "nucleo-f746", "pico"] {
        let states: Vec<Value> = msgs
            .iter()
            .filter(|(t, _)| t == &format!("{prefix}/boards/{b}/state"))
            .map(|(_, p)| serde_json::from_str(p).unwrap())
            .collect();
        assert!(
            states
                .iter()
                .any(|s| s["phase"] == "running" && s["run_id"].is_string()),
            "{b}: {states:?}"
        );
        assert_eq!(states.last().unwrap()["power"], "off");
        // The bring-up state machine rides along: every transition, in order.
        let mut seen: Vec<&str> = states.iter().filter_map(|s| s["state"].as_str()).collect();
        seen.dedup();
        assert_eq!(seen.first(), Some(&"powered"), "{b}: {seen:?}");
        assert_eq!(seen.last(), Some(&"off"), "{b}: {seen:?}");
        assert!(seen.contains(&"running"), "{b}: {seen:?}");
    }
    assert_eq!(has("/summary"), 6);
    assert_eq!(has("/tokens"), 6);
    let summary: Value = serde_json::from_str(
        &msgs
            .iter()
            .find(|(t, _)| t.ends_with("/summary"))
            .unwrap()
            .1,
    )
    .unwrap();
    assert!(summary["tokens_per_s"].as_f64().unwrap() > 0.0);
    let mqtt = power_counts(&msgs);
    let db = db_counts(&dir.path().join("lab.duckdb"));
    assert_eq!(db.len(), 6);
    assert_eq!(mqtt, db, "samples per run over MQTT equal those in DuckDB");
}

#[test]
fn the_embedded_broker_serves_mosquitto_sub_and_a_taken_address_is_reported() {
    let (dir, lab) = virtual_lab();
    if !have("mosquitto_sub") {
        return;
    }
    let port = free_port();
    add_mqtt(
        &lab,
        &format!("mode = \"embedded\"\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let child = spawn_run_on_pico(&lab, "60", "150");
    let sub = Sub::start(port);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let db = db_counts(&dir.path().join("lab.duckdb"));
    // Runs that began after the subscription are complete over MQTT.
    let last = db
        .keys()
        .max_by_key(|k| k.rsplit('r').next().and_then(|n| n.parse::<u32>().ok()))
        .unwrap();
    let msgs = sub.messages_when("the last run's summary", |m| {
        m.iter()
            .any(|(t, _)| t.ends_with(&format!("{}/summary", last)))
    });
    let mqtt = power_counts(&msgs);
    assert_eq!(mqtt.get(last), db.get(last), "run {last}");

    // An address the embedded broker cannot bind: said once, plainly; the run still works.
    let (_d2, lab2) = virtual_lab();
    add_mqtt(&lab2, "mode = \"embedded\"\nlisten = \"192.0.2.1:1883\"\n");
    let o = labctl()
        .args(["--lab", lab2.to_str().unwrap(), "run", "--boards", "pico"])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("cannot host the embedded MQTT broker on 192.0.2.1:1883"),
        "{err}"
    );
}

#[test]
fn a_broker_outage_loses_nothing_in_duckdb_and_publishing_resumes() {
    let Some((dir, lab, mut broker)) = lab_on_mosquitto() else {
        return;
    };
    let started = Instant::now();
    let child = spawn_run_on_pico(&lab, "100", "2000");
    std::thread::sleep(Duration::from_millis(1500));
    broker.stop();
    std::thread::sleep(Duration::from_secs(10));
    broker.restart();
    let sub = Sub::start(broker.port);
    let t = Instant::now();
    while !sub.messages().iter().any(|(t, _)| t.ends_with("/power")) {
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "publishing did not resume after the outage"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        elapsed > 12.0,
        "the run outlasted the outage ({elapsed:.1} s)"
    );
    assert!(
        err.contains("unreachable") && err.contains("publishing resumes"),
        "{err}"
    );
    let c = open_ro(&dir.path().join("lab.duckdb"));
    let (runs_ok, lost, max_gap_us): (i64, i64, i64) = c
        .query_row(
            "SELECT (SELECT count(*) FROM runs WHERE status = 'ok'),
                    (SELECT coalesce(sum(mqtt_undelivered_samples), 0)::BIGINT FROM runs),
                    (SELECT max(gap) FROM (SELECT t_us - lag(t_us) OVER (PARTITION BY run_id ORDER BY t_us) AS gap
                                           FROM power_samples WHERE run_id IS NOT NULL))",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(runs_ok, 2000);
    assert!(
        lost > 1000,
        "undelivered samples are counted and stored: {lost}"
    );
    // A sampler waiting on the dead broker would leave a gap as long as the outage (10 s). The
    // bound is half that: a machine overloaded by parallel tests and two busy loops has been seen
    // to starve a sampler for 1.4 s, which is scheduling, not waiting on the broker.
    assert!(
        max_gap_us < 5_000_000,
        "sampling never stalled (largest gap {max_gap_us} µs)"
    );
}

/// A child process killed when the test ends, pass or fail.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn publish(port: u16, topic: &str, payload: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("payload");
    std::fs::write(&f, payload).unwrap();
    let mut c = Command::new("mosquitto_pub");
    c.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-q",
        "1",
        "-t",
        topic,
    ]);
    if payload.is_empty() {
        c.arg("-n");
    } else {
        c.arg("-f").arg(&f);
    }
    assert!(c.status().unwrap().success(), "mosquitto_pub {topic}");
}

#[test]
fn serve_rejects_malformed_jobs_and_runs_the_next_good_one() {
    if !have("mosquitto_pub") {
        return;
    }
    let Some((dir, lab, broker)) = lab_on_mosquitto() else {
        return;
    };
    // A model file of the lab's own, in its models directory: the only files a job may name.
    let mine = dir.path().join("models/mine.ltlm");
    run_ok(&[
        "model",
        "gen",
        "--preset",
        "stories260k",
        "--quant",
        "q4_0",
        "-o",
        mine.to_str().unwrap(),
    ]);
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("models/passwd.ltlm")).unwrap();
    let sub = Sub::start(broker.port);
    let mut serve = Reaped(
        labctl()
            .args(["--lab", lab.to_str().unwrap(), "serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prefix = "labctl/virtual-lab";
    let status = format!("{prefix}/status");
    let t = Instant::now();
    while !sub
        .messages()
        .iter()
        .any(|(t, p)| t == &status && p == "online")
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "serve did not come online"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // "online" means subscribed: jobs sent from now on are taken.
    let long_prompt = format!(r#"{{"prompt": "{}"}}"#, "x".repeat(300)).into_bytes();
    let many_boards =
        format!(r#"{{"boards": [{}]}}"#, vec![r#""pico""#; 65].join(",")).into_bytes();
    let huge = format!(r#"{{"prompt": "a", "pad": "{}"}}"#, " ".repeat(70_000)).into_bytes();
    let bad: Vec<&[u8]> = vec![
        b"",
        b"\xff\xfe\xfd",
        b"this is not json",
        b"[1, 2, 3]",
        br#"{"boards": ["pico"], "colour": "red"}"#,
        br#"{"tokens": 0}"#,
        br#"{"tokens": -5}"#,
        br#"{"repeat": 100000}"#,
        br#"{"boards": ["no-such-board"]}"#,
        br#"{"models": ["nosuchpreset:q4_0"]}"#,
        br#"{"boards": "pico"}"#,
        br#"{"tokens": 5000}"#,
        // Hostile: files outside the models directory, devices, links out of it, huge input.
        br#"{"models": ["/etc/shadow"]}"#,
        br#"{"models": ["/dev/zero"]}"#,
        br#"{"models": ["../lab.duckdb"]}"#,
        br#"{"models": ["passwd.ltlm"]}"#,
        &long_prompt,
        &many_boards,
        &huge,
    ];
    for (i, p) in bad.iter().enumerate() {
        publish(broker.port, &format!("{prefix}/jobs/bad{i}"), p);
    }
    publish(
        broker.port,
        &format!("{prefix}/jobs/good1"),
        br#"{"boards": ["pico"], "models": ["mine.ltlm"], "tokens": 16, "repeat": 2}"#,
    );
    let replies = |id: &str| -> Vec<Value> {
        sub.messages()
            .iter()
            .filter(|(t, _)| t == &format!("{prefix}/jobs/{id}/status"))
            .map(|(_, p)| serde_json::from_str(p).unwrap())
            .collect()
    };
    let t = Instant::now();
    while !replies("good1").iter().any(|r| r["status"] == "done") {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "good job not done: {:?}",
            replies("good1")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 0..bad.len() {
        let r = replies(&format!("bad{i}"));
        assert_eq!(r.len(), 1, "bad{i}: {r:?}");
        assert_eq!(r[0]["status"], "rejected", "bad{i}: {r:?}");
        let why = r[0]["error"].as_str().unwrap();
        assert!(!why.is_empty());
        // Nothing about files outside the models directory leaks into a reply.
        assert!(
            !why.contains("magic") && !why.contains("root:") && !why.contains("permission"),
            "bad{i}: {why}"
        );
    }
    let done = replies("good1")
        .into_iter()
        .find(|r| r["status"] == "done")
        .unwrap();
    assert_eq!(done["runs"].as_array().unwrap().len(), 2, "{done}");
    let seq: Vec<String> = replies("good1")
        .iter()
        .map(|r| r["status"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(seq, ["queued", "running", "done"], "acknowledged, then run");
    // A long job running and one queued behind it when SIGTERM comes: both are told.
    publish(
        broker.port,
        &format!("{prefix}/jobs/long"),
        br#"{"boards": ["pico"], "tokens": 100, "repeat": 1000}"#,
    );
    publish(
        broker.port,
        &format!("{prefix}/jobs/next"),
        br#"{"boards": ["pico"], "tokens": 16}"#,
    );
    let t = Instant::now();
    while !(replies("long").iter().any(|r| r["status"] == "running")
        && replies("next").iter().any(|r| r["status"] == "queued"))
    {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{:?} {:?}",
            replies("long"),
            replies("next")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(replies("next")[0]["ahead"], 1, "{:?}", replies("next"));
    // SIGTERM: clean exit, lab marked offline.
    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(serve.0.id() as i32, libc::SIGTERM) };
    let t = Instant::now();
    let code = loop {
        if let Some(s) = serve.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "{code:?}");
    sub.messages_when("the offline status", went_offline);
    let last = |id: &str| replies(id).last().cloned().unwrap_or_default();
    assert_eq!(last("long")["status"], "aborted", "{:?}", replies("long"));
    assert_eq!(last("next")["status"], "aborted", "{:?}", replies("next"));
    assert!(
        last("next")["error"]
            .as_str()
            .is_some_and(|e| e.contains("before the job ran")),
        "{:?}",
        replies("next")
    );
    assert_eq!(
        sub.messages()
            .iter()
            .rev()
            .find(|(t, _)| t == &status)
            .map(|(_, p)| p.as_str()),
        Some("offline")
    );
    let c = open_ro(&dir.path().join("lab.duckdb"));
    let n: i64 = c
        .query_row(
            "SELECT count(*) FROM runs WHERE status = 'ok' AND board = 'pico' AND repeat_idx < 2
               AND batch_id = (SELECT min(batch_id) FROM runs)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 2, "the good job's two runs");
    // The long job: its finished runs ok, the one in progress (if SIGTERM did not fall between
    // two runs) aborted, none left `running`.
    let (aborted, running): (i64, i64) = c
        .query_row(
            "SELECT count(*) FILTER (WHERE status = 'aborted'), count(*) FILTER (WHERE status = 'running') FROM runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(
        aborted <= 1 && running == 0,
        "{aborted} aborted, {running} running"
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
fn make_certs(dir: &Path) -> bool {
    if !have("openssl") {
        return false;
    }
    let sh = |cmd: &str| {
        let o = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=labctl-test-ca");
    sh("printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext");
    for who in ["server", "client"] {
        sh(&format!(
            "openssl req -newkey rsa:2048 -nodes -keyout {who}.key -out {who}.csr -subj /CN={who} && \
             openssl x509 -req -in {who}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {who}.pem -days 2 -extfile san.ext"
        ));
    }
    true
}

#[test]
fn mqtts_with_a_client_certificate_reaches_a_tls_mosquitto() {
    let (dir, lab) = virtual_lab();
    let d = dir.path();
    if !have("mosquitto") || !have("mosquitto_sub") || !make_certs(d) {
        return;
    }
    let port = free_port();
    let conf = d.join("mosquitto-tls.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\nrequire_certificate true\nuser root\n",
            d.display()
        ),
    )
    .unwrap();
    let _broker = Reaped(
        Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(port);
    let mut sub = Reaped(
        Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                "labctl/#",
                "-v",
                "-C",
                "1",
            ])
            .args([
                "--cafile",
                "ca.pem",
                "--cert",
                "client.pem",
                "--key",
                "client.key",
            ])
            .args(["-W", "30"])
            .current_dir(d)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    // Relative paths in the lab file resolve against its directory.
    add_mqtt(
        &lab,
        &format!("mode = \"external\"\nurl = \"mqtts://127.0.0.1:{port}\"\nca = \"ca.pem\"\ncert = \"client.pem\"\nkey = \"client.key\"\n"),
    );
    let o = labctl()
        .args(["--lab", lab.to_str().unwrap(), "run", "--boards", "pico"])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("unreachable"), "{err}");
    assert!(!err.contains("BEGIN"), "no key material in the output");
    let t = Instant::now();
    while sub.0.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "nothing arrived over TLS"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    std::io::Read::read_to_string(sub.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(out.starts_with("labctl/virtual-lab/"), "{out}");
}

#[test]
fn sense_publishes_every_stored_sample() {
    let Some((dir, lab, broker)) = lab_on_mosquitto() else {
        return;
    };
    let sub = Sub::start(broker.port);
    let o = labctl()
        .args(["--lab", lab.to_str().unwrap(), "sense", "--duration", "2s"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let msgs = sub.messages_when("the offline status", went_offline);
    let mut received = 0usize;
    for (t, p) in msgs.iter().filter(|(t, _)| t.ends_with("/power")) {
        let v: Value = serde_json::from_str(p).unwrap_or_else(|e| panic!("{t}: {e}"));
        assert!(v["run_id"].is_null(), "outside a run");
        received += v["t_us"].as_array().unwrap().len();
    }
    let stored: i64 = open_ro(&dir.path().join("lab.duckdb"))
        .query_row("SELECT count(*) FROM power_samples", [], |r| r.get(0))
        .unwrap();
    assert!(stored > 1000, "{stored}"); // 6000 expected; fewer when the machine is loaded
    assert_eq!(received as i64, stored, "every stored sample was published");
}

/// Whether `haystack` holds `needle` anywhere (bytes: logs, JSON, the database file).
fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// `mosquitto_sub` for one message on `topic` within `secs`, with `login` (user, password).
fn sub_once(
    port: u16,
    topic: &str,
    login: Option<(&str, &str)>,
    secs: u32,
) -> std::process::Output {
    let mut c = Command::new("mosquitto_sub");
    c.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic])
        .args(["-C", "1", "-W", &secs.to_string()]);
    if let Some((u, p)) = login {
        c.args(["-u", u, "-P", p]);
    }
    c.output().unwrap()
}

#[test]
fn the_embedded_broker_takes_only_the_labs_login_and_the_password_leaks_nowhere() {
    if !have("mosquitto_sub") {
        return;
    }
    const CANARY: &str = "canary-pw-5b1e0c97d2";
    let (dir, lab) = virtual_lab();
    let port = free_port();
    add_mqtt(
        &lab,
        &format!(
            "mode = \"embedded\"\nlisten = \"127.0.0.1:{port}\"\nusername = \"bench\"\npassword_env = \"LABCTL_TEST_MQTT_PASSWORD\"\n"
        ),
    );
    // The daemon's output goes to files (a pipe nobody reads would stall it at debug level).
    let log = dir.path().join("serve.log");
    let mut serve = Reaped(
        labctl()
            .args(["--lab", lab.to_str().unwrap(), "serve"])
            .env("LABCTL_TEST_MQTT_PASSWORD", CANARY)
            .env("LABCTL_LOG", "debug")
            .stdout(std::fs::File::create(dir.path().join("serve.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_listening(port);
    let status = "labctl/virtual-lab/status";
    // The lab's login gets the daemon's retained status; none, or a wrong password, is refused.
    let t = Instant::now();
    loop {
        let o = sub_once(port, status, Some(("bench", CANARY)), 5);
        if String::from_utf8_lossy(&o.stdout).contains("online") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{o:?}");
    }
    for login in [None, Some(("bench", "wrong")), Some(("intruder", CANARY))] {
        // A refused client ends at once or at the timeout; either way it reads nothing.
        let o = sub_once(port, status, login, 1);
        assert!(!o.status.success(), "{login:?} was let in: {o:?}");
        assert!(o.stdout.is_empty(), "{login:?} read {:?}", o.stdout);
    }
    // A job over the authenticated connection runs and is stored.
    let job = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
        .args(["-u", "bench", "-P", CANARY])
        .args(["-t", "labctl/virtual-lab/jobs/j1"])
        .args(["-m", r#"{"boards": ["pico"], "tokens": 8}"#])
        .status()
        .unwrap();
    assert!(job.success());
    let t = Instant::now();
    loop {
        let o = sub_once(
            port,
            "labctl/virtual-lab/jobs/j1/status",
            Some(("bench", CANARY)),
            5,
        );
        if String::from_utf8_lossy(&o.stdout).contains("\"done\"") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{o:?}");
    }
    signal_term(&serve.0);
    let out = std::mem::replace(&mut serve.0, Command::new("true").spawn().unwrap())
        .wait_with_output()
        .unwrap();
    // The scan: serve's logs (at debug level), the database and everything beside it hold no
    // password; and the scan does find one where it is planted.
    let mut scanned = vec![out.stdout, out.stderr];
    for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
        if e.path().is_file() {
            scanned.push(std::fs::read(e.path()).unwrap());
        }
    }
    for (i, bytes) in scanned.iter().enumerate() {
        assert!(!holds(bytes, CANARY), "the password leaked into item {i}");
    }
    assert!(holds(format!("x{CANARY}y").as_bytes(), CANARY));
}

fn signal_term(child: &Child) {
    // SAFETY: kill(2) on the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

/// `mosquitto_pub` of one message over TLS with a login; its exit status.
fn pub_tls(d: &Path, port: u16, login: (&str, &str), topic: &str, msg: &str) -> bool {
    Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--cafile",
            "ca.pem",
        ])
        .args([
            "-u", login.0, "-P", login.1, "-q", "1", "-t", topic, "-m", msg,
        ])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The Mosquitto setup docs/mqtt.md documents: TLS, a password file, and an ACL that confines
/// each lab's login to its own prefix. labctl publishes with its login; a client without one is
/// refused; what the lab's login publishes outside its prefix never reaches anyone; and the
/// password is in none of labctl's output or files.
#[test]
fn the_documented_mosquitto_lockdown_confines_a_lab_to_its_prefix() {
    let (dir, lab) = virtual_lab();
    let d = dir.path();
    if !have("mosquitto") || !have("mosquitto_passwd") || !make_certs(d) {
        return;
    }
    const CANARY: &str = "canary-lab-pw-93c1f0a4";
    let port = free_port();
    let passwd = d.join("passwd");
    for (i, (user, pw)) in [("virtual-lab", CANARY), ("watcher", "watcher-pw")]
        .iter()
        .enumerate()
    {
        let mut c = Command::new("mosquitto_passwd");
        if i == 0 {
            c.arg("-c");
        }
        assert!(c
            .arg("-b")
            .arg(&passwd)
            .args([user, pw])
            .status()
            .unwrap()
            .success());
    }
    std::fs::write(
        d.join("acl"),
        "user virtual-lab\ntopic readwrite labctl/virtual-lab/#\n\nuser watcher\ntopic read labctl/#\n",
    )
    .unwrap();
    let conf = d.join("mosquitto-locked.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {0}/passwd\nacl_file {0}/acl\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\nuser root\n",
            d.display()
        ),
    )
    .unwrap();
    let _broker = Reaped(
        Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(port);
    // The watcher reads everything under labctl/ until it sees the marker published last.
    let watcher = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--cafile",
            "ca.pem",
        ])
        .args(["-u", "watcher", "-P", "watcher-pw", "-t", "labctl/#", "-v"])
        .args(["-W", "30"])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut watcher = Reaped(watcher);
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let lines = lines.clone();
        let out = watcher.0.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        });
    }
    // Subscribed once a probe inside the prefix arrives.
    let t = Instant::now();
    while !lines.lock().unwrap().iter().any(|l| l.contains("probe")) {
        assert!(pub_tls(
            d,
            port,
            ("virtual-lab", CANARY),
            "labctl/virtual-lab/probe",
            "probe"
        ));
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the watcher never subscribed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // No login: refused.
    let anon = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--cafile",
            "ca.pem",
        ])
        .args(["-t", "labctl/#", "-C", "1", "-W", "3"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(!anon.status.success() && anon.stdout.is_empty(), "{anon:?}");
    // labctl with the lab's login (its password from a file) publishes under its prefix.
    std::fs::write(d.join("mqtt.pw"), format!("{CANARY}\n")).unwrap();
    add_mqtt(
        &lab,
        &format!("mode = \"external\"\nurl = \"mqtts://127.0.0.1:{port}\"\nca = \"ca.pem\"\nusername = \"virtual-lab\"\npassword_file = \"mqtt.pw\"\n"),
    );
    let o = labctl()
        .args([
            "--lab",
            lab.to_str().unwrap(),
            "run",
            "--boards",
            "pico",
            "--tokens",
            "8",
        ])
        .env("LABCTL_LOG", "debug")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    // Outside the prefix: accepted by the broker's protocol, delivered to nobody. The marker
    // after it shows the watcher had every chance to see it.
    assert!(pub_tls(
        d,
        port,
        ("virtual-lab", CANARY),
        "labctl/other-lab/jobs/x",
        "intrusion"
    ));
    assert!(pub_tls(
        d,
        port,
        ("virtual-lab", CANARY),
        "labctl/virtual-lab/marker",
        "end"
    ));
    let t = Instant::now();
    while !lines.lock().unwrap().iter().any(|l| l.contains("marker")) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the marker never arrived"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = lines.lock().unwrap().clone();
    assert!(
        seen.iter().any(|l| l.contains("/summary")),
        "labctl's run summary arrived: {seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("other-lab") || l.contains("intrusion")),
        "{seen:?}"
    );
    // The password is in none of labctl's output or the lab's files but the one it is read from.
    let (out, err) = text(&o);
    assert!(!out.contains(CANARY) && !err.contains(CANARY));
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        if p.is_file()
            && p.file_name()
                .is_some_and(|n| n != "mqtt.pw" && n != "passwd")
        {
            let bytes = std::fs::read(&p).unwrap();
            assert!(!holds(&bytes, CANARY), "{} holds the password", p.display());
        }
    }
}
