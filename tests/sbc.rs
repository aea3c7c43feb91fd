//! The `sbc` platform against a real OpenSSH server: the test starts Debian's `sshd` on a
//! loopback port with its own host key and a user key of its own, and a lab profiles a board
//! reached over SSH — the posix firmware copied there and run on the SSH channel — beside a
//! virtual board: the same tokens. A board whose `known_hosts` holds another key is refused
//! ("Host key verification failed") and only that board faults.

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use labctl_integration_tests::{have, labctl, missing, open_ro, run_ok, text};

struct Sshd {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "ssh-keygen: {}", text(&o).1);
}

fn whoami() -> String {
    let o = Command::new("id").arg("-un").output().unwrap();
    text(&o).0.trim().to_string()
}

/// sshd on 127.0.0.1 with a host key, a user key and authorized_keys of the test's own, once it
/// accepts connections; `None` (after saying why) when it cannot run here.
fn start_sshd(dir: &Path) -> Option<Sshd> {
    keygen(&dir.join("host_key"));
    keygen(&dir.join("user_key"));
    keygen(&dir.join("other_key"));
    std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).unwrap();
    // sshd insists on its privilege-separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             StrictModes no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sshd = Sshd {
        child,
        port,
        dir: dir.to_path_buf(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = sshd.child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = sshd.child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            missing(&format!("sshd did not start ({st}): {err}"));
            return None;
        }
        assert!(Instant::now() < deadline, "sshd never listened on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(sshd)
}

fn known_hosts(s: &Sshd, key: &str, name: &str) -> PathBuf {
    let pubkey = std::fs::read_to_string(s.dir.join(format!("{key}.pub"))).unwrap();
    let mut it = pubkey.split_whitespace();
    let (kind, b64) = (it.next().unwrap(), it.next().unwrap());
    let p = s.dir.join(name);
    std::fs::write(&p, format!("[127.0.0.1]:{} {kind} {b64}\n", s.port)).unwrap();
    p
}

#[test]
fn a_board_over_ssh_is_profiled_and_a_wrong_host_key_is_refused() {
    if !have(
        "test -x /usr/sbin/sshd && command -v ssh && command -v scp && command -v ssh-keygen",
        "OpenSSH is not installed (apt-get install openssh-server openssh-client)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(sshd) = start_sshd(dir.path()) else {
        return;
    };
    let good = known_hosts(&sshd, "host_key", "known_hosts");
    let bad = known_hosts(&sshd, "other_key", "known_hosts_wrong");
    // Board names unique to this run: the deploy directory is in the (real) user's home.
    let pi = format!("pi-{}", std::process::id());
    let lab = dir.path().join("lab.toml");
    let board = |name: &str, kh: &Path| {
        format!(
            "[[boards]]\nname = \"{name}\"\nplatform = \"sbc\"\nprofile = \"generic\"\n\
             host = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nidentity = \"{}\"\nknown_hosts = \"{}\"\n",
            sshd.port,
            whoami(),
            dir.path().join("user_key").display(),
            kh.display()
        )
    };
    std::fs::write(
        &lab,
        format!(
            "name = \"sbc\"\n[storage]\npath = \"lab.duckdb\"\n\n{}\n{}\n[[boards]]\nname = \"virt\"\nplatform = \"virtual\"\nprofile = \"stm32f7\"\n",
            board(&pi, &good),
            board("imposter", &bad)
        ),
    )
    .unwrap();
    run_ok(&["config", "check", lab.to_str().unwrap()]);
    // The plan names every SSH command, the host key check on each.
    let o = run_ok(&[
        "--lab",
        lab.to_str().unwrap(),
        "run",
        "--dry-run",
        "--boards",
        &pi,
    ]);
    let plan = text(&o).0;
    assert_eq!(
        plan.matches("StrictHostKeyChecking=yes").count(),
        4,
        "{plan}"
    );
    assert!(plan.contains("scp -q"), "{plan}");
    let o = labctl()
        .args([
            "--lab",
            lab.to_str().unwrap(),
            "run",
            "--prompt",
            "Hello",
            "--tokens",
            "8",
        ])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    let home = std::env::var("HOME").unwrap_or_default();
    let _ = std::fs::remove_dir_all(Path::new(&home).join(".cache/labctl").join(&pi));
    assert_eq!(
        o.status.code(),
        Some(1),
        "the imposter fails the job: {out}\n{err}"
    );
    let c = open_ro(&dir.path().join("lab.duckdb"));
    let row = |b: &str| -> (String, Option<String>, Option<String>) {
        c.query_row(
            "SELECT status, error, reason_code FROM runs WHERE board = ?",
            [b],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    };
    assert_eq!(row(&pi).0, "ok", "{:?}\n{out}\n{err}", row(&pi));
    assert_eq!(row("virt").0, "ok");
    let (status, why, code) = row("imposter");
    assert_eq!(status, "error");
    assert!(
        why.as_deref()
            .unwrap_or("")
            .contains("Host key verification failed"),
        "{why:?}"
    );
    assert_eq!(code.as_deref(), Some("platform"));
    let ids = |b: &str| -> Vec<i64> {
        c.prepare("SELECT t.token_id FROM tokens t JOIN runs r USING (run_id) WHERE r.board = ? ORDER BY t.idx")
            .unwrap()
            .query_map([b], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(ids(&pi).len(), 5 + 8);
    assert_eq!(ids(&pi), ids("virt"), "the same tokens over SSH");
    let (simulated, timing): (bool, String) = c
        .query_row(
            "SELECT simulated, timing_source FROM runs WHERE board = ?",
            [&pi],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(!simulated, "a real computer ran it");
    assert!(timing.starts_with("board"), "{timing}");
}
