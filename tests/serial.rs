//! Boards on real serial paths: the `serial` platform (a board flashed by hand that runs the
//! profiling firmware) profiled over a socat-linked pseudo-terminal pair, the posix firmware alone
//! on one end and `labctl run` on the other, exactly as it would open `/dev/ttyACM0`. Also: the
//! model CRC check, a console closed mid-run, a busy port naming its holder, and a console found by
//! USB serial number in a sysfs-shaped tree (`LABCTL_SYSROOT`) that re-enumerates between runs.
//!
//! Needs socat (Debian package `socat`, installed by `.ci/run`); without it the tests say why and
//! skip, unless LAB_REQUIRE_EXTERNAL=1, where they fail.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use labctl_integration_tests::{bin_dir, have, labctl, open_ro, run_ok, text};
use serde_json::Value;

fn have_socat() -> bool {
    have(
        "command -v socat",
        "socat is not installed (apt-get install socat)",
    )
}

/// Waits until `f` holds, up to `secs` seconds.
fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A bench in a temporary directory: a linked pty pair (`board-end` ↔ `ttyBENCH0`), the posix
/// firmware holding `model` on the board end, and a keeper that holds the host end open so that
/// labctl closing and reopening it between sessions does not end socat.
struct Bench {
    dir: tempfile::TempDir,
    socat: Child,
    firmware: Option<Child>,
    _keeper: std::fs::File,
    host_end: PathBuf,
}

impl Bench {
    fn new(model_preset: &str) -> Bench {
        Bench::with(model_preset, &[])
    }

    /// [`Bench::new`] with more arguments for the firmware.
    fn with(model_preset: &str, extra: &[&str]) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let (board_end, host_end) = (dir.path().join("board-end"), dir.path().join("ttyBENCH0"));
        let socat = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", board_end.display()))
            .arg(format!("pty,raw,echo=0,link={}", host_end.display()))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until(10, "socat's pty links", || {
            board_end.exists() && host_end.exists()
        });
        let keeper = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&host_end)
            .unwrap();
        let mut b = Bench {
            dir,
            socat,
            firmware: None,
            _keeper: keeper,
            host_end,
        };
        let model = b.model(model_preset);
        b.firmware = Some(
            Command::new(bin_dir().join("labctl-fw-posix"))
                .args(["--model", model.to_str().unwrap()])
                .args(["--serial", board_end.to_str().unwrap()])
                .args(["--platform", "bench-board", "--clock-hz", "240000000"])
                .args(["--ram", "524288", "--flash", "4194304", "--ctx", "512"])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        b
    }

    /// A model file from a preset (`stories260k:q4_0`), made by `labctl model gen`.
    fn model(&self, spec: &str) -> PathBuf {
        let (preset, quant) = spec.split_once(':').unwrap();
        let out = self.dir.path().join(format!("{preset}-{quant}.ltlm"));
        if !out.exists() {
            run_ok(&[
                "model",
                "gen",
                "--preset",
                preset,
                "--quant",
                quant,
                "-o",
                out.to_str().unwrap(),
            ]);
        }
        out
    }

    /// A lab with one `serial` board; `console` is its console keys.
    fn lab(&self, file: &str, db: &str, console: &str) -> PathBuf {
        let p = self.dir.path().join(file);
        std::fs::write(
            &p,
            format!(
                "name = \"serial-bench\"\n[storage]\npath = \"{db}\"\n\n[[boards]]\nname = \"hand-flashed\"\nplatform = \"serial\"\nprofile = \"generic\"\n{console}\n"
            ),
        )
        .unwrap();
        p
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        for c in self
            .firmware
            .iter_mut()
            .chain(std::iter::once(&mut self.socat))
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn run_json(lab: &Path, extra: &[&str]) -> (Option<i32>, Value, String) {
    let o = labctl()
        .args(["--lab", lab.to_str().unwrap(), "run", "--json"])
        .args(extra)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    let v = serde_json::from_str(&out).unwrap_or(Value::Null);
    (o.status.code(), v, err)
}

#[test]
fn a_hand_flashed_board_on_a_serial_path_is_profiled_and_another_model_is_refused() {
    if !have_socat() {
        return;
    }
    let bench = Bench::new("stories260k:q8_0");
    let model = bench.model("stories260k:q8_0");
    let lab = bench.lab(
        "lab.toml",
        "lab.duckdb",
        "serial = \"ttyBENCH0\"\nbaud = 921600",
    );
    let (code, rows, err) = run_json(
        &lab,
        &[
            "--model",
            model.to_str().unwrap(),
            "--tokens",
            "24",
            "--repeat",
            "2",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in rows {
        assert_eq!(r["status"], "ok", "{r}");
        // Real hardware as far as labctl can tell: nothing simulated.
        assert_eq!(r["simulated"], false, "{r}");
        assert!(r["tokens_per_s"].as_f64().unwrap() > 0.0);
        assert!(r["ram_peak_kb"].as_f64().unwrap() > 0.0, "{r}");
    }
    let c = open_ro(&bench.dir.path().join("lab.duckdb"));
    let (sha, crc, decode): (String, String, i64) = c
        .query_row(
            "SELECT any_value(model_sha256), any_value(board_model_crc32),
                    (SELECT count(*) FROM tokens WHERE phase = 'decode')
             FROM runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(decode, 48);
    assert_eq!(sha.len(), 64);
    assert_eq!(crc.len(), 8);
    drop(c);

    // `labctl console`: the same line on a terminal; what is typed goes to the board.
    let mut con = labctl()
        .args(["--lab", lab.to_str().unwrap(), "console", "hand-flashed"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut typed = con.stdin.take().unwrap();
    let mut shown = con.stdout.take().unwrap();
    let got = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = shown.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&all).contains("@READY") {
                break;
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    // Typed until the board answers (the console may still be opening the port).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !got.is_finished() && Instant::now() < deadline {
        use std::io::Write;
        let _ = typed.write_all(b"@HELLO proto=2*5864\n");
        std::thread::sleep(Duration::from_millis(100));
    }
    let shown = got.join().unwrap();
    assert!(
        shown.contains("@READY") && shown.contains("proto=2"),
        "{shown}"
    );
    {
        use std::io::Write;
        typed.write_all(&[0x1d]).unwrap();
    }
    assert!(con.wait().unwrap().success(), "Ctrl-] ends the console");

    // Another model than the board holds: refused (exit 2), naming both checksums.
    let other = bench.model("stories260k:q4_0");
    let (code, rows, err) = run_json(&lab, &["--model", other.to_str().unwrap(), "--tokens", "4"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("crc32 {crc}")),
        "names the board's CRC: {err}"
    );
    let ours = rows[0]["error"].as_str().unwrap_or_default().to_string();
    assert!(ours.contains("another model"), "{rows}");
    assert_eq!(rows[0]["reason_code"], "model-mismatch", "{rows}");
}

#[test]
fn a_busy_port_names_its_holder_and_a_console_closed_mid_run_is_an_error() {
    if !have_socat() {
        return;
    }
    let mut bench = Bench::new("stories260k:q8_0");
    let model = bench.model("stories260k:q8_0");
    let lab = bench.lab("lab.toml", "lab.duckdb", "serial = \"ttyBENCH0\"");
    let mut first = labctl()
        .args(["--lab", lab.to_str().unwrap(), "run", "--json"])
        .args([
            "--model",
            model.to_str().unwrap(),
            "--tokens",
            "200",
            "--repeat",
            "500",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first labctl holds the port once the run is under way: its rows appear in the database
    // only at the end, so watch its stderr for the first finished run.
    let mut err = first.stderr.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    wait_until(60, "the first run to finish", || {
        seen.lock().unwrap().contains("run 1/500 ok")
    });

    // A second labctl (another lab, its own database) on the same port is told who holds it.
    let lab2 = bench.lab("lab2.toml", "other.duckdb", "serial = \"ttyBENCH0\"");
    let (code, rows, err2) = run_json(
        &lab2,
        &["--model", model.to_str().unwrap(), "--tokens", "4"],
    );
    assert_eq!(code, Some(1), "{err2}");
    let why = rows[0]["error"].as_str().unwrap_or_default().to_string();
    assert!(why.contains("in use by"), "{rows} {err2}");
    assert!(
        why.contains(&format!("pid {}", first.id())),
        "names the first labctl: {why}"
    );
    assert_eq!(rows[0]["status"], "error");
    assert_eq!(rows[0]["reason_code"], "console");

    // The board's end closes mid-run (its firmware goes away and socat with it).
    let mut fw = bench.firmware.take().unwrap();
    fw.kill().unwrap();
    fw.wait().unwrap();
    let _ = bench.socat.kill();
    let o = first.wait_with_output().unwrap();
    reader.join().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", seen.lock().unwrap());
    let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let cut: Vec<&Value> = rows.iter().filter(|r| r["status"] != "ok").collect();
    assert_eq!(cut.len(), 1, "one run cut short: {rows:?}");
    assert_eq!(cut[0]["status"], "error", "{}", cut[0]);
    assert_eq!(cut[0]["reason_code"], "console", "{}", cut[0]);
    assert!(
        cut[0]["error"]
            .as_str()
            .unwrap()
            .contains("console lost mid-run"),
        "{}",
        cut[0]
    );
    // Everything measured is kept: every earlier run whole, and the cut run's tokens so far.
    let c = open_ro(&bench.dir.path().join("lab.duckdb"));
    let ok = rows.iter().filter(|r| r["status"] == "ok").count() as i64;
    let (whole, cut_tokens): (i64, i64) = c
        .query_row(
            "SELECT (SELECT count(*) FROM tokens t JOIN runs r USING (run_id) WHERE r.status = 'ok' AND t.phase = 'decode'),
                    (SELECT count(*) FROM tokens t JOIN runs r USING (run_id) WHERE r.status = 'error' AND t.phase = 'decode')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(ok >= 1);
    assert_eq!(whole, ok * 200);
    // The kill lands anywhere in a run, also after its last token but before `DONE`: the cut
    // run keeps what arrived, never more than a run has.
    assert!(cut_tokens <= 200, "{cut_tokens}");
}

/// Adds a USB device to a sysfs-shaped tree under `root`, with one CDC-ACM tty whose `/dev` node
/// is a link to `target`.
fn plug(root: &Path, tty: &str, serial: &str, target: &Path) {
    let dev = root.join("sys/devices/pci0000:00/0000:00:14.0/usb1/1-1.2");
    let intf = dev.join("1-1.2:1.0");
    std::fs::create_dir_all(intf.join("tty").join(tty)).unwrap();
    std::fs::write(dev.join("idVendor"), "2e8a\n").unwrap();
    std::fs::write(dev.join("idProduct"), "000a\n").unwrap();
    std::fs::write(dev.join("serial"), format!("{serial}\n")).unwrap();
    std::fs::write(intf.join("bInterfaceNumber"), "00\n").unwrap();
    let class = root.join("sys/class/tty").join(tty);
    std::fs::create_dir_all(&class).unwrap();
    std::os::unix::fs::symlink(&intf, class.join("device")).unwrap();
    std::fs::create_dir_all(root.join("dev")).unwrap();
    std::os::unix::fs::symlink(target, root.join("dev").join(tty)).unwrap();
}

fn unplug(root: &Path, tty: &str) {
    std::fs::remove_dir_all(root.join("sys/class/tty").join(tty)).unwrap();
    std::fs::remove_file(root.join("dev").join(tty)).unwrap();
}

#[test]
fn a_console_is_found_by_usb_serial_number_also_after_it_re_enumerates() {
    if !have_socat() {
        return;
    }
    let bench = Bench::new("stories260k:q8_0");
    let model = bench.model("stories260k:q8_0");
    let root = bench.dir.path().join("root");
    plug(&root, "ttyACM0", "E6614C311B4B2A37", &bench.host_end);
    let lab = bench.lab(
        "lab.toml",
        "lab.duckdb",
        "usb_serial = \"E6614C311B4B2A37\"\nusb_id = \"2e8a:000a\"",
    );
    let run = |extra: &[&str]| {
        let o = labctl()
            .env("LABCTL_SYSROOT", &root)
            .args(["--lab", lab.to_str().unwrap(), "run", "--json"])
            .args(["--model", model.to_str().unwrap(), "--tokens", "8"])
            .args(extra)
            .output()
            .unwrap();
        let (out, err) = text(&o);
        (o.status.code(), out, err)
    };
    let (code, _, err) = run(&[]);
    assert_eq!(code, Some(0), "{err}");
    // Re-enumerated: the same board (same serial number) is now ttyACM1.
    unplug(&root, "ttyACM0");
    plug(&root, "ttyACM1", "E6614C311B4B2A37", &bench.host_end);
    let (code, _, err) = run(&[]);
    assert_eq!(code, Some(0), "{err}");
    // Gone: the error says what is attached instead.
    unplug(&root, "ttyACM1");
    let (code, out, err) = run(&[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        out.contains("no serial console with USB serial number"),
        "{out}"
    );
    assert!(out.contains("attached: none"), "{out}");
    let c = open_ro(&bench.dir.path().join("lab.duckdb"));
    let statuses: Vec<String> = c
        .prepare("SELECT status || ':' || coalesce(reason_code, '') FROM runs ORDER BY started_at")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(statuses, ["ok:", "ok:", "error:console"]);
}

/// A board that reads a temperature (the posix firmware on a Linux thermal zone, as on an SBC)
/// reports it at each prompt's start and end (`TEMP`), stored per run.
#[test]
fn a_boards_temperature_is_stored_per_run() {
    if !have_socat() {
        return;
    }
    let zone = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(zone.path(), "47250\n").unwrap();
    let bench = Bench::with(
        "stories260k:q8_0",
        &["--thermal", zone.path().to_str().unwrap()],
    );
    let model = bench.model("stories260k:q8_0");
    let lab = bench.lab(
        "lab.toml",
        "lab.duckdb",
        &format!("serial = \"{}\"", bench.host_end.display()),
    );
    run_ok(&[
        "--lab",
        lab.to_str().unwrap(),
        "run",
        "--model",
        model.to_str().unwrap(),
        "--tokens",
        "4",
    ]);
    let c = open_ro(&bench.dir.path().join("lab.duckdb"));
    let (start, end): (Option<f64>, Option<f64>) = c
        .query_row("SELECT temp_start_c, temp_end_c FROM runs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((start, end), (Some(47.25), Some(47.25)));
}
