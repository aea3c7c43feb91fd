//! The protocol over a board's serial line, framed with the firmware's own codec. Reads are
//! stamped on the host clock as they arrive; garbage and corrupt frames are skipped and counted.

use std::{
    collections::VecDeque,
    fs::File,
    io::{Read, Write},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use fwcore::proto::{self, FrameWriter, LineReader, MAX_LINE};

/// Why no frame came.
#[derive(Debug)]
pub enum LinkEnd {
    /// Nothing within the allowed time.
    Timeout,
    /// The board died: the reason from its platform plugin (an emulator that exited).
    Dead(String),
    /// The serial line itself closed or failed while the platform saw the board alive: a
    /// console (infrastructure) problem, not the firmware's.
    Lost(String),
    /// The user asked to stop (Ctrl-C / SIGTERM).
    Stopped,
}

/// A complete, checksum-valid frame line and when its last byte arrived.
pub struct RxFrame {
    pub at: Instant,
    pub line: Vec<u8>,
}

impl RxFrame {
    pub fn frame(&self) -> proto::Frame<'_> {
        proto::parse(&self.line).expect("only valid frames are queued")
    }
}

/// A framed serial link on any byte stream that supports `poll`.
pub struct Link {
    port: File,
    reader: LineReader<MAX_LINE>,
    queue: VecDeque<RxFrame>,
    /// Lines that looked like frames but failed to parse (bad checksum, bad fields).
    pub bad_frames: u64,
}

impl Link {
    pub fn new(port: File) -> Link {
        Link {
            port,
            reader: LineReader::new(),
            queue: VecDeque::new(),
            bad_frames: 0,
        }
    }

    /// Garbage seen so far: bytes outside frames and over-long lines, plus corrupt frames.
    pub fn garbage(&self) -> (u64, u64) {
        (
            self.reader.garbage_bytes,
            self.bad_frames + self.reader.overflows,
        )
    }

    /// Sends one frame.
    pub fn send(
        &mut self,
        kind: &str,
        fields: &[(&str, &dyn std::fmt::Display)],
    ) -> std::io::Result<()> {
        let mut buf = [0u8; MAX_LINE];
        let mut w = FrameWriter::new(&mut buf, kind);
        for (k, v) in fields {
            w.field(k, v);
        }
        let line = w
            .finish()
            .ok_or_else(|| std::io::Error::other("frame longer than the protocol allows"))?;
        self.port.write_all(line)
    }

    /// The next valid frame, waiting until `deadline`. Every ~100 ms of silence `alive` is asked
    /// whether the board still runs (`Some(reason)` = dead) and `stop` whether to give up.
    pub fn next(
        &mut self,
        deadline: Instant,
        alive: &mut dyn FnMut() -> Option<String>,
        stop: &dyn Fn() -> bool,
    ) -> Result<RxFrame, LinkEnd> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(f) = self.queue.pop_front() {
                return Ok(f);
            }
            if stop() {
                return Err(LinkEnd::Stopped);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(LinkEnd::Timeout);
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            let mut pfd = libc::pollfd {
                fd: self.port.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd for a descriptor we own.
            let r = unsafe { libc::poll(&mut pfd, 1, wait.as_millis().max(1) as libc::c_int) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(LinkEnd::Lost(format!("serial poll failed: {e}")));
            }
            if r == 0 {
                if let Some(why) = alive() {
                    return Err(LinkEnd::Dead(why));
                }
                continue;
            }
            match self.port.read(&mut buf) {
                Ok(0) => {
                    return Err(alive()
                        .map(LinkEnd::Dead)
                        .unwrap_or_else(|| LinkEnd::Lost("serial line closed".into())))
                }
                Ok(n) => {
                    let at = Instant::now();
                    self.feed(&buf[..n], at);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(alive().map(LinkEnd::Dead).unwrap_or_else(|| {
                        LinkEnd::Lost(format!("serial line closed or failed: {e}"))
                    }))
                }
            }
        }
    }

    /// Splits received bytes into frames; garbage and corrupt frames are counted and dropped.
    pub fn feed(&mut self, bytes: &[u8], at: Instant) {
        for &b in bytes {
            if self.reader.push(b) == proto::Event::Line {
                let line = self.reader.line();
                if proto::parse(line).is_ok() {
                    self.queue.push_back(RxFrame {
                        at,
                        line: line.to_vec(),
                    });
                } else {
                    self.bad_frames += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::Pty;

    #[test]
    fn garbage_between_frames_is_counted_and_skipped() {
        let pty = Pty::open().unwrap();
        let mut link = pty.link().unwrap();
        let now = Instant::now();
        link.feed(b"\x00\xffnoise@READY fw=1*0000\n", now);
        link.feed(b"@HELLO proto=1*6807\n", now);
        let f = link
            .next(now + Duration::from_millis(10), &mut || None, &|| false)
            .unwrap();
        assert_eq!(f.frame().kind, "HELLO");
        let (bytes, frames) = link.garbage();
        assert_eq!((bytes, frames), (7, 1));
    }

    #[test]
    fn bytes_written_on_the_board_side_arrive_as_frames() {
        let pty = Pty::open().unwrap();
        let mut link = pty.link().unwrap();
        let mut board = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&pty.slave_path)
            .unwrap();
        board.write_all(b"junk@INFO*01C6\n").unwrap();
        let f = link
            .next(
                Instant::now() + Duration::from_secs(2),
                &mut || None,
                &|| false,
            )
            .unwrap();
        assert_eq!(f.frame().kind, "INFO");
        link.send("HELLO", &[("proto", &1)]).unwrap();
        let mut got = [0u8; 20];
        board.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"@HELLO proto=1*6807\n");
    }
}
