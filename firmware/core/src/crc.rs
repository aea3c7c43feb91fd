//! Checksums: CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection) for frames, and
//! CRC-32 (IEEE 802.3, the zlib/`crc32` one) for the model bytes a board holds in flash.

pub const fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    let mut i = 0;
    while i < data.len() {
        crc ^= (data[i] as u16) << 8;
        let mut b = 0;
        while b < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            b += 1;
        }
        i += 1;
    }
    crc
}

/// Byte-at-a-time table for CRC-32 (reflected poly 0xEDB88320): 1 KB of flash, ~8× faster than
/// bit by bit, which matters when a Cortex-M0+ checks a megabyte of model at `INFO`.
const CRC32_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32 of `data` (same value as zlib's `crc32`, Python's `zlib.crc32`, `cksum -a crc32b`).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc = CRC32_TABLE[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    #[test]
    fn check_value() {
        // The catalogue check value of CRC-16/CCITT-FALSE.
        assert_eq!(super::crc16(b"123456789"), 0x29B1);
    }

    #[test]
    fn crc32_check_value() {
        // The catalogue check value of CRC-32/ISO-HDLC.
        assert_eq!(super::crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(super::crc32(b""), 0);
    }
}
