//! A board's console, the serial line the host speaks the protocol on: a pseudo-terminal the host
//! makes for an emulated board ([`pty`]), or a real serial device named by path or found by its USB
//! serial number ([`usb`]), opened at a baud rate under a tty lock ([`tty`], [`lock`]). Either way
//! the protocol runs over a [`link::Link`].

pub mod link;
pub mod lock;
pub mod pty;
pub mod tty;
pub mod usb;

use std::path::{Path, PathBuf};

use lab_config::{Board, ConsolePort};
use labctl_plugin_api::profile::ConsoleKind;

pub use link::{Link, LinkEnd, RxFrame};
pub use pty::Pty;
pub use tty::Tty;

/// An open console: the host end, and the path the board (or its emulator) uses.
pub enum Console {
    /// An emulated board's pseudo-terminal; the platform attaches the board to `slave_path`.
    Pty(Pty),
    /// A real serial device, locked for this process.
    Tty(Tty),
}

impl Console {
    /// The board side's path: what the platform plugin is told.
    pub fn path(&self) -> String {
        match self {
            Console::Pty(p) => p.slave_path.clone(),
            Console::Tty(t) => t.path.display().to_string(),
        }
    }

    /// Pulses DTR or RTS (the lab file's `reset = "dtr"` / `"rts"`) for 100 ms.
    pub fn pulse(&self, reset: lab_config::Reset) -> Result<(), String> {
        let line = match reset {
            lab_config::Reset::Dtr => libc::TIOCM_DTR,
            lab_config::Reset::Rts => libc::TIOCM_RTS,
            other => return Err(format!("reset {:?} is not a modem line", other.name())),
        };
        match self {
            Console::Tty(t) => t.pulse(line, std::time::Duration::from_millis(100)),
            Console::Pty(_) => Err("an emulated board's pseudo-terminal has no reset line".into()),
        }
    }

    /// Another handle on the host end, for raw byte copying (`labctl console`).
    pub fn file(&self) -> std::io::Result<std::fs::File> {
        match self {
            Console::Pty(p) => p.master_clone(),
            Console::Tty(t) => t.file.try_clone(),
        }
    }

    /// A framed link over this console.
    pub fn link(&self) -> std::io::Result<Link> {
        match self {
            Console::Pty(p) => p.link(),
            Console::Tty(t) => Ok(Link::new(t.file.try_clone()?)),
        }
    }
}

/// Where a board's console is right now: its `serial` path, or the tty its USB serial number
/// resolves to at this moment (a board that re-enumerated has a new name). `None` for boards
/// without a configured console (emulated ones).
pub fn locate(board: &Board) -> Result<Option<(PathBuf, u32)>, String> {
    let Some(c) = &board.console else {
        return Ok(None);
    };
    let path = match &c.port {
        ConsolePort::Path(p) => p.clone(),
        ConsolePort::Usb {
            serial,
            id,
            interface,
        } => usb::find_tty(&usb::Sysroot::from_env(), serial, *id, *interface)?,
    };
    Ok(Some((path, c.baud)))
}

/// The board's console speed: the lab file's `baud`, or the default.
pub fn baud(board: &Board) -> u32 {
    board
        .console
        .as_ref()
        .map_or(lab_config::DEFAULT_BAUD, |c| c.baud)
}

/// Opens the console that exists before the board is brought up: a new pseudo-terminal for an
/// emulated board (`Pty`) or one the platform joins its connection to (`Channel`), the lab
/// file's serial line for a real one (`Device`). `None` for an
/// emulator that makes its own console ([`open_path`] it once the platform names it).
pub fn open_early(board: &Board, kind: ConsoleKind) -> Result<Option<Console>, String> {
    match kind {
        ConsoleKind::Pty | ConsoleKind::Channel => Pty::open()
            .map(|p| Some(Console::Pty(p)))
            .map_err(|e| format!("pseudo-terminal: {e}")),
        ConsoleKind::Device => match locate(board)? {
            Some((path, baud)) => open_path(&path, baud).map(Some),
            None => Err(format!(
                "board {:?} has no console: give `serial` or `usb_serial` in the lab file",
                board.name
            )),
        },
        ConsoleKind::Emulator => Ok(None),
    }
}

/// Opens a serial device by name: a real board's `/dev/ttyACM0`, or the pty an emulator made.
pub fn open_path(path: &Path, baud: u32) -> Result<Console, String> {
    Tty::open(path, baud).map(Console::Tty)
}
