//! A real serial device opened for the protocol: raw mode at the lab file's baud rate, no
//! controlling terminal, under this process's tty lock. DTR and RTS can be pulsed for a reset.

use std::{
    fs::File,
    os::fd::{AsRawFd, FromRawFd},
    path::{Path, PathBuf},
    time::Duration,
};

use super::lock::TtyLock;

/// An open, locked serial device.
pub struct Tty {
    pub file: File,
    /// The path as configured (a `/dev/serial/by-id/…` link stays a link here).
    pub path: PathBuf,
    _lock: TtyLock,
}

/// The termios speed constant for a baud rate; the Linux line discipline knows these.
fn speed(baud: u32) -> Option<libc::speed_t> {
    Some(match baud {
        1200 => libc::B1200,
        2400 => libc::B2400,
        4800 => libc::B4800,
        9600 => libc::B9600,
        19200 => libc::B19200,
        38400 => libc::B38400,
        57600 => libc::B57600,
        115200 => libc::B115200,
        230400 => libc::B230400,
        460800 => libc::B460800,
        500000 => libc::B500000,
        576000 => libc::B576000,
        921600 => libc::B921600,
        1000000 => libc::B1000000,
        1500000 => libc::B1500000,
        2000000 => libc::B2000000,
        3000000 => libc::B3000000,
        4000000 => libc::B4000000,
        _ => return None,
    })
}

/// The speeds [`Tty::open`] accepts, for error messages.
pub const SPEEDS: &str = "1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000, 1500000, 2000000, 3000000, 4000000";

impl Tty {
    /// Opens `path` at `baud`, taking the tty lock first; a busy port names its holder.
    pub fn open(path: &Path, baud: u32) -> Result<Tty, String> {
        let speed = speed(baud)
            .ok_or_else(|| format!("baud {baud} is not a standard serial speed ({SPEEDS})"))?;
        let lock = TtyLock::take(path)?;
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("{}: a path with a NUL byte", path.display()))?;
        // O_NONBLOCK so that a modem line without carrier does not block the open itself.
        // SAFETY: open with a NUL-terminated path; the descriptor is owned by the File below.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            let hint = match e.raw_os_error() {
                Some(libc::EACCES) => " (add yourself to the `dialout` group, then log in again)",
                Some(libc::ENOENT) => {
                    " (is the board plugged in? `labctl discover` lists what is attached)"
                }
                _ => "",
            };
            return Err(format!("serial port {}: {e}{hint}", path.display()));
        }
        // SAFETY: fd was just opened and is owned by nothing else.
        let file = unsafe { File::from_raw_fd(fd) };
        lock.hold(&file)?;
        // SAFETY: termios calls on a descriptor we own.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return Err(format!(
                    "serial port {}: not a terminal: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                ));
            }
            libc::cfmakeraw(&mut t);
            t.c_cflag |= libc::CLOCAL | libc::CREAD;
            t.c_cflag &= !libc::CRTSCTS;
            libc::cfsetispeed(&mut t, speed);
            libc::cfsetospeed(&mut t, speed);
            if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
                return Err(format!(
                    "serial port {}: cannot set {baud} baud: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                ));
            }
            // Old bytes from before this session are not this session's frames.
            libc::tcflush(fd, libc::TCIOFLUSH);
            let flags = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
        Ok(Tty {
            file,
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// Pulses a modem-control line (`TIOCM_DTR` or `TIOCM_RTS`) active for `hold`, then releases
    /// it: the reset wiring of most USB-serial boards.
    pub fn pulse(&self, line: libc::c_int, hold: Duration) -> Result<(), String> {
        let fd = self.file.as_raw_fd();
        let set = |req: libc::c_ulong| {
            // SAFETY: TIOCMBIS/TIOCMBIC take a pointer to an int bit mask.
            let r = unsafe { libc::ioctl(fd, req, &line) };
            if r != 0 {
                Err(format!(
                    "{}: cannot drive {}: {}",
                    self.path.display(),
                    if line == libc::TIOCM_DTR {
                        "DTR"
                    } else {
                        "RTS"
                    },
                    std::io::Error::last_os_error()
                ))
            } else {
                Ok(())
            }
        };
        set(libc::TIOCMBIS)?;
        std::thread::sleep(hold);
        set(libc::TIOCMBIC)
    }
}
