//! `labctl console BOARD`: the board's serial line on this terminal, like picocom. A real board's
//! console is opened (and locked) as it is; an emulated board is powered and started first (with
//! the default or `--model` model) and stopped on exit. Ctrl-] quits; so does the end of stdin.

use std::{
    io::{Read, Write},
    os::fd::AsRawFd,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use labctl_plugin_api::profile::ConsoleKind;

use crate::{bringup, console, error::Failed, model, relay, rig::Runtime};

/// Ctrl-]: the escape picocom and telnet use.
const QUIT: u8 = 0x1d;

/// Puts a terminal in raw mode until dropped.
struct RawTerm {
    fd: i32,
    saved: libc::termios,
}

impl RawTerm {
    fn new(fd: i32) -> Option<RawTerm> {
        // SAFETY: termios calls on stdin's descriptor; the saved state is restored on drop.
        unsafe {
            if libc::isatty(fd) != 1 {
                return None;
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSANOW, &t);
            Some(RawTerm { fd, saved })
        }
    }
}

impl Drop for RawTerm {
    fn drop(&mut self) {
        // SAFETY: restores the state saved in `new`.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

pub fn cmd(lab_path: &Path, board: &str, model_spec: Option<&str>) -> anyhow::Result<()> {
    let rt = Runtime::open(lab_path)?;
    let b = crate::lab::board_named(&rt.lab, board)?.clone();
    let fail = |e: String| Failed(format!("{board}: {e}"));
    let (api, profile) = bringup::platform_of(&rt, &b).map_err(fail)?;
    let emulated = profile.console != ConsoleKind::Device;
    // A real board: just its line. An emulated one: started for as long as we are attached.
    let mut session = None;
    let early = console::open_early(&b, profile.console).map_err(fail)?;
    if emulated {
        let model = model::resolve(
            model_spec.unwrap_or(model::DEFAULT_MODEL),
            &model::cache_dir(&rt.lab),
        )?;
        let serial = early.as_ref().map(|c| c.path()).unwrap_or_default();
        let spec = bringup::spec(
            &b,
            &profile,
            &serial,
            &crate::run::find_firmware(),
            &model,
            512,
        );
        let mut s = bringup::open_session(api, &spec).map_err(fail)?;
        if b.relay.is_some() {
            relay::set_board_power(&rt.lab, &rt.plugins, board, true)?;
        }
        s.bootstrap()
            .into_result()
            .map_err(|e| fail(format!("bootstrap: {}", e.message)))?;
        session = Some(s);
    }
    let con = match early {
        Some(c) => c,
        None => {
            let s = session.as_mut().expect("emulated");
            let p = s
                .console_path()
                .into_option()
                .ok_or_else(|| fail("the platform named no console".into()))?;
            console::open_path(Path::new(p.as_str()), console::baud(&b)).map_err(fail)?
        }
    };
    eprintln!(
        "{board}: connected to {} at {} baud; Ctrl-] quits",
        con.path(),
        console::baud(&b)
    );
    let result = bridge(&con);
    if let Some(mut s) = session {
        let _ = s.power_off();
        if b.relay.is_some() {
            let _ = relay::set_board_power(&rt.lab, &rt.plugins, board, false);
        }
    }
    eprintln!("\r\n{board}: disconnected");
    result
}

/// Copies the console to stdout and stdin to the console until Ctrl-], the end of stdin, or the
/// console closing.
fn bridge(con: &console::Console) -> anyhow::Result<()> {
    let mut port = con.file()?;
    let mut rx = port.try_clone()?;
    let closed = Arc::new(AtomicBool::new(false));
    let reader = {
        let closed = closed.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            let mut out = std::io::stdout();
            while let Ok(n) = rx.read(&mut buf) {
                if n == 0 || out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                    break;
                }
            }
            closed.store(true, Ordering::Relaxed);
        })
    };
    let stdin = std::io::stdin();
    let _raw = RawTerm::new(stdin.as_raw_fd());
    let mut buf = [0u8; 256];
    let mut input = stdin.lock();
    while !closed.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd: input.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd for stdin.
        if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
            continue;
        }
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if let Some(i) = buf[..n].iter().position(|&c| c == QUIT) {
            port.write_all(&buf[..i])?;
            break;
        }
        port.write_all(&buf[..n])?;
    }
    drop(reader);
    Ok(())
}
