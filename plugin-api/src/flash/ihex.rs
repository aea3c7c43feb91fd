//! Intel HEX, the format `nrfjprog` programs: 16-byte data records under extended linear
//! address records (type 04) wherever the upper 16 address bits change, and the end-of-file
//! record.

/// The HEX text of `ranges` (address, bytes).
pub fn from_ranges(ranges: &[(u32, &[u8])]) -> String {
    let mut out = String::new();
    let mut upper: Option<u16> = None;
    let record = |out: &mut String, addr: u16, kind: u8, data: &[u8]| {
        let mut sum = data.len() as u8;
        sum = sum
            .wrapping_add((addr >> 8) as u8)
            .wrapping_add(addr as u8)
            .wrapping_add(kind);
        out.push_str(&format!(":{:02X}{addr:04X}{kind:02X}", data.len()));
        for &b in data {
            out.push_str(&format!("{b:02X}"));
            sum = sum.wrapping_add(b);
        }
        out.push_str(&format!("{:02X}\n", sum.wrapping_neg()));
    };
    for &(base, data) in ranges {
        let mut off = 0usize;
        while off < data.len() {
            let addr = base + off as u32;
            let hi = (addr >> 16) as u16;
            if upper != Some(hi) {
                record(&mut out, 0, 0x04, &hi.to_be_bytes());
                upper = Some(hi);
            }
            // A record stays within one 64 KiB segment.
            let room = 0x1_0000 - (addr & 0xFFFF) as usize;
            let n = 16.min(data.len() - off).min(room);
            record(&mut out, addr as u16, 0x00, &data[off..off + n]);
            off += n;
        }
    }
    record(&mut out, 0, 0x01, &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_checksums_and_segments() {
        // Twelve bytes across a 64 KiB boundary: eight in segment 0, four in segment 1.
        let h = from_ranges(&[(0x0000_FFF8, &[0x11; 12])]);
        let lines: Vec<&str> = h.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0], ":020000040000FA");
        assert!(lines[1].starts_with(":08FFF800"), "{}", lines[1]);
        assert_eq!(lines[2], ":020000040001F9");
        assert!(lines[3].starts_with(":0400000011111111"), "{}", lines[3]);
        assert_eq!(lines[4], ":00000001FF");
        // Each record's bytes, checksum included, sum to 0 mod 256.
        for l in &lines {
            let sum = (1..l.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap())
                .fold(0u8, |a, b| a.wrapping_add(b));
            assert_eq!(sum, 0, "{l}");
        }
    }
}
