//! Pseudo-terminals for emulated boards: the host keeps the master, the platform plugin attaches
//! the emulated board (a firmware process, an emulator's `-serial`) to the slave path.

use std::{ffi::CStr, fs::File, os::fd::FromRawFd};

use super::Link;

/// A pseudo-terminal pair in raw mode. The host keeps both ends open for the board's lifetime, so
/// that the board (re)opening its side never races the host's reads.
pub struct Pty {
    master: File,
    _slave: File,
    pub slave_path: String,
}

impl Pty {
    pub fn open() -> std::io::Result<Pty> {
        let (mut m, mut s) = (-1, -1);
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: openpty fills two descriptors and the NUL-terminated slave name (buffer is
        // larger than any pty path).
        let r = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                name.as_mut_ptr(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: openpty succeeded: both descriptors are ours.
        let (master, slave) = unsafe { (File::from_raw_fd(m), File::from_raw_fd(s)) };
        // SAFETY: termios calls on a descriptor we own; raw mode means no echo, no line editing.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(s, &mut t) == 0 {
                libc::cfmakeraw(&mut t);
                libc::tcsetattr(s, libc::TCSANOW, &t);
            }
            libc::fcntl(m, libc::F_SETFD, libc::FD_CLOEXEC);
            libc::fcntl(s, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        // SAFETY: the name is NUL-terminated by openpty.
        let slave_path = unsafe { CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        Ok(Pty {
            master,
            _slave: slave,
            slave_path,
        })
    }

    pub fn master_clone(&self) -> std::io::Result<File> {
        self.master.try_clone()
    }

    pub fn link(&self) -> std::io::Result<Link> {
        Ok(Link::new(self.master.try_clone()?))
    }
}
