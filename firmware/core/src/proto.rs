//! The serial wire protocol: one frame per line, readable in a terminal.
//!
//! ```text
//! @KIND key=value key=value*CRC4\n
//! ```
//!
//! A frame starts with `@`, then the kind (upper-case letters), then space-separated `key=value`
//! fields (values have no spaces), then `*` and the CRC-16/CCITT-FALSE of everything between `@`
//! and `*` as four upper-case hex digits. Bytes before an `@`, lines that are too long, and lines
//! whose checksum does not match are garbage: the reader counts them and resynchronises at the
//! next `@`. `docs/protocol.md` lists the frames with examples.

use core::fmt::{self, Write};

use crate::crc::crc16;

/// Protocol version spoken by this core (the `proto` field of `READY`). Version 2 added the
/// `crc32` of the model bytes to `MODEL`.
pub const PROTOCOL_VERSION: u32 = 2;
/// Longest frame line, including `@`, checksum and newline.
pub const MAX_LINE: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The line does not start with `@`.
    NoStart,
    /// No `*CRC4` trailer.
    NoChecksum,
    /// The checksum is not four hex digits or does not match.
    BadChecksum,
    /// The kind is empty or not upper-case ASCII letters.
    BadKind,
    /// A field is not `key=value`, or the line is not ASCII.
    BadField,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::NoStart => "frame does not start with '@'",
            ParseError::NoChecksum => "frame has no '*' checksum",
            ParseError::BadChecksum => "frame checksum mismatch",
            ParseError::BadKind => "frame kind is not upper-case letters",
            ParseError::BadField => "frame field is not key=value ASCII",
        })
    }
}

/// A parsed frame borrowing its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: &'a str,
    fields: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError<'a> {
    Missing(&'a str),
    Invalid(&'a str),
}

impl<'a> Frame<'a> {
    /// `key=value` pairs in order.
    pub fn fields(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.fields
            .split(' ')
            .filter(|f| !f.is_empty())
            .filter_map(|f| f.split_once('='))
    }

    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.fields().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn u64<'k>(&self, key: &'k str) -> Result<u64, FieldError<'k>> {
        self.get(key)
            .ok_or(FieldError::Missing(key))?
            .parse()
            .map_err(|_| FieldError::Invalid(key))
    }

    pub fn u32<'k>(&self, key: &'k str) -> Result<u32, FieldError<'k>> {
        self.get(key)
            .ok_or(FieldError::Missing(key))?
            .parse()
            .map_err(|_| FieldError::Invalid(key))
    }

    pub fn str<'k>(&self, key: &'k str) -> Result<&'a str, FieldError<'k>> {
        self.get(key).ok_or(FieldError::Missing(key))
    }
}

fn hex(c: u8) -> Option<u16> {
    match c {
        b'0'..=b'9' => Some(u16::from(c - b'0')),
        b'A'..=b'F' => Some(u16::from(c - b'A' + 10)),
        b'a'..=b'f' => Some(u16::from(c - b'a' + 10)),
        _ => None,
    }
}

/// Parses one line (without its newline; a trailing `\r` is ignored).
pub fn parse(line: &[u8]) -> Result<Frame<'_>, ParseError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let body = line.strip_prefix(b"@").ok_or(ParseError::NoStart)?;
    if body.len() < 5 || body[body.len() - 5] != b'*' {
        return Err(ParseError::NoChecksum);
    }
    let (payload, sum) = body.split_at(body.len() - 5);
    let mut want: u16 = 0;
    for &c in &sum[1..] {
        want = (want << 4) | hex(c).ok_or(ParseError::BadChecksum)?;
    }
    if crc16(payload) != want {
        return Err(ParseError::BadChecksum);
    }
    if !payload.iter().all(|c| (0x20..0x7F).contains(c)) {
        return Err(ParseError::BadField);
    }
    let text = core::str::from_utf8(payload).map_err(|_| ParseError::BadField)?;
    let (kind, fields) = text.split_once(' ').unwrap_or((text, ""));
    if kind.is_empty() || !kind.bytes().all(|c| c.is_ascii_uppercase()) {
        return Err(ParseError::BadKind);
    }
    for f in fields.split(' ').filter(|f| !f.is_empty()) {
        match f.split_once('=') {
            Some((k, _)) if !k.is_empty() => {}
            _ => return Err(ParseError::BadField),
        }
    }
    Ok(Frame { kind, fields })
}

/// Builds a frame into a caller-provided buffer: `@KIND`, fields, then [`FrameWriter::finish`]
/// appends the checksum and newline.
pub struct FrameWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    overflow: bool,
}

impl<'b> FrameWriter<'b> {
    pub fn new(buf: &'b mut [u8], kind: &str) -> Self {
        let mut w = FrameWriter {
            buf,
            len: 0,
            overflow: false,
        };
        w.put(b"@");
        w.put(kind.as_bytes());
        w
    }

    fn put(&mut self, bytes: &[u8]) {
        // Leave room for "*XXXX\n".
        if self.len + bytes.len() + 6 > self.buf.len() {
            self.overflow = true;
            return;
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Appends ` key=value`.
    pub fn field(&mut self, key: &str, value: impl fmt::Display) -> &mut Self {
        self.put(b" ");
        self.put(key.as_bytes());
        self.put(b"=");
        let _ = write!(self, "{value}");
        self
    }

    /// Finishes the frame; `None` if it did not fit the buffer.
    pub fn finish(self) -> Option<&'b [u8]> {
        if self.overflow {
            return None;
        }
        let sum = crc16(&self.buf[1..self.len]);
        let mut tail = [b'*', 0, 0, 0, 0, b'\n'];
        for (i, slot) in tail[1..5].iter_mut().enumerate() {
            *slot = b"0123456789ABCDEF"[usize::from((sum >> (12 - 4 * i)) & 0xF)];
        }
        let n = self.len;
        self.buf[n..n + 6].copy_from_slice(&tail);
        Some(&self.buf[..n + 6])
    }
}

impl Write for FrameWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Values never contain spaces or the frame delimiters.
        for b in s.bytes() {
            let b = if b == b' ' || b == b'*' || b == b'@' || !(0x20..0x7F).contains(&b) {
                b'_'
            } else {
                b
            };
            self.put(&[b]);
        }
        Ok(())
    }
}

/// What [`LineReader::push`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing complete yet.
    Pending,
    /// A complete line is available from [`LineReader::line`].
    Line,
}

/// Splits a byte stream into candidate frame lines, skipping and counting garbage.
pub struct LineReader<const N: usize> {
    buf: [u8; N],
    len: usize,
    in_frame: bool,
    too_long: bool,
    /// Bytes skipped outside frames, plus bytes of discarded over-long lines.
    pub garbage_bytes: u64,
    /// Over-long lines discarded.
    pub overflows: u64,
}

impl<const N: usize> Default for LineReader<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LineReader<N> {
    pub const fn new() -> Self {
        LineReader {
            buf: [0; N],
            len: 0,
            in_frame: false,
            too_long: false,
            garbage_bytes: 0,
            overflows: 0,
        }
    }

    /// Feeds one byte. An `@` always starts a new frame (resynchronisation), discarding any
    /// partial one as garbage.
    pub fn push(&mut self, b: u8) -> Event {
        if b == b'@' {
            if self.in_frame {
                self.garbage_bytes += self.len as u64;
            }
            self.in_frame = true;
            self.too_long = false;
            self.buf[0] = b;
            self.len = 1;
            return Event::Pending;
        }
        if !self.in_frame {
            if b != b'\n' && b != b'\r' {
                self.garbage_bytes += 1;
            }
            return Event::Pending;
        }
        if b == b'\n' {
            self.in_frame = false;
            if self.too_long {
                self.overflows += 1;
                self.too_long = false;
                self.len = 0;
                return Event::Pending;
            }
            return Event::Line;
        }
        if self.len < N {
            self.buf[self.len] = b;
            self.len += 1;
        } else {
            if !self.too_long {
                self.garbage_bytes += self.len as u64;
            }
            self.too_long = true;
            self.garbage_bytes += 1;
        }
        Event::Pending
    }

    /// The last complete line (valid after [`Event::Line`]).
    pub fn line(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame<'b>(buf: &'b mut [u8], kind: &str, fields: &[(&str, &str)]) -> &'b [u8] {
        let mut w = FrameWriter::new(buf, kind);
        for (k, v) in fields {
            w.field(k, v);
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trip() {
        let mut buf = [0u8; 128];
        let line = frame(&mut buf, "T", &[("i", "3"), ("ph", "d"), ("id", "42")]);
        assert_eq!(line.last(), Some(&b'\n'));
        let f = parse(&line[..line.len() - 1]).unwrap();
        assert_eq!(f.kind, "T");
        assert_eq!(f.u32("i"), Ok(3));
        assert_eq!(f.str("ph"), Ok("d"));
        assert_eq!(f.u64("nope"), Err(FieldError::Missing("nope")));
    }

    #[test]
    fn corrupt_frames_are_rejected() {
        let mut buf = [0u8; 128];
        let line = frame(&mut buf, "HELLO", &[("v", "1")]).to_vec();
        let body = &line[..line.len() - 1];
        let mut bad = body.to_vec();
        bad[3] ^= 0x20;
        assert_eq!(parse(&bad), Err(ParseError::BadChecksum));
        assert_eq!(parse(&body[1..]), Err(ParseError::NoStart));
        assert_eq!(parse(b"@HELLO v=1"), Err(ParseError::NoChecksum));
        assert_eq!(parse(b"@HELLO v=1*ZZZZ"), Err(ParseError::BadChecksum));
    }

    #[test]
    fn reader_resynchronises_after_garbage() {
        let mut buf = [0u8; 128];
        let good = frame(&mut buf, "OK", &[]).to_vec();
        let mut r = LineReader::<64>::new();
        let mut lines = 0;
        let mut stream = std::vec::Vec::new();
        stream.extend_from_slice(b"\x00\xffnoise");
        stream.extend_from_slice(b"@PART");
        stream.extend_from_slice(&good);
        stream.extend_from_slice(&[b'x'; 200]);
        stream.extend_from_slice(b"@");
        stream.extend_from_slice(&[b'y'; 200]);
        stream.push(b'\n');
        stream.extend_from_slice(&good);
        for b in stream {
            if r.push(b) == Event::Line {
                assert!(parse(r.line()).is_ok());
                lines += 1;
            }
        }
        assert_eq!(lines, 2);
        assert_eq!(r.overflows, 1);
        assert!(r.garbage_bytes >= 7 + 5 + 200 + 200);
    }
}
