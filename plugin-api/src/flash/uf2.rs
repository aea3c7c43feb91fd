//! UF2, the format of the RP2040's and RP2350's BOOTSEL mass-storage drive (and picotool): 512-byte
//! blocks, each carrying 256 bytes for one flash page with its address, its number and the total,
//! and the chip's family ID (Microsoft's UF2 specification; the family IDs from its
//! `uf2families.json`: RP2040 `0xe48bff56`, RP2350 Arm secure `0xe48bff59`). Several
//! address ranges go in one file, so the image and the model reach the board in one copy.

const MAGIC_START0: u32 = 0x0A32_4655;
const MAGIC_START1: u32 = 0x9E5D_5157;
const MAGIC_END: u32 = 0x0AB1_6F30;
/// The block carries a family ID (in the field that otherwise holds the file size).
const FLAG_FAMILY_ID: u32 = 0x0000_2000;
const PAGE: u32 = 256;

pub const FAMILY_RP2040: u32 = 0xe48b_ff56;
pub const FAMILY_RP2350_ARM_S: u32 = 0xe48b_ff59;

/// The UF2 file of `ranges` (address, bytes): every 256-byte page any of them touches, in
/// address order, the rest of a touched page erased (0xFF). Ranges must not overlap.
pub fn from_ranges(ranges: &[(u32, &[u8])], family: u32) -> Vec<u8> {
    let mut pages: std::collections::BTreeMap<u32, [u8; PAGE as usize]> = Default::default();
    for &(addr, data) in ranges {
        for (i, &b) in data.iter().enumerate() {
            let a = addr + i as u32;
            let page = pages
                .entry(a & !(PAGE - 1))
                .or_insert([0xFF; PAGE as usize]);
            page[(a & (PAGE - 1)) as usize] = b;
        }
    }
    let total = pages.len() as u32;
    let mut out = Vec::with_capacity(pages.len() * 512);
    for (n, (addr, data)) in pages.iter().enumerate() {
        let mut block = [0u8; 512];
        let words = [
            MAGIC_START0,
            MAGIC_START1,
            FLAG_FAMILY_ID,
            *addr,
            PAGE,
            n as u32,
            total,
            family,
        ];
        for (i, w) in words.iter().enumerate() {
            block[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
        block[32..32 + PAGE as usize].copy_from_slice(data);
        block[508..].copy_from_slice(&MAGIC_END.to_le_bytes());
        out.extend_from_slice(&block);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(b: &[u8], i: usize) -> u32 {
        u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap())
    }

    #[test]
    fn pages_are_numbered_addressed_and_padded() {
        let image = [0xAAu8; 300];
        let model = [1u8, 2, 3];
        let f = from_ranges(
            &[(0x1004_0000, &model), (0x1000_0000, &image)],
            FAMILY_RP2040,
        );
        assert_eq!(f.len(), 3 * 512);
        let blocks: Vec<&[u8]> = f.chunks(512).collect();
        let addrs: Vec<u32> = blocks.iter().map(|b| word(b, 3)).collect();
        assert_eq!(addrs, [0x1000_0000, 0x1000_0100, 0x1004_0000]);
        for (n, b) in blocks.iter().enumerate() {
            assert_eq!((word(b, 0), word(b, 1)), (MAGIC_START0, MAGIC_START1));
            assert_eq!(
                (word(b, 5), word(b, 6), word(b, 7)),
                (n as u32, 3, FAMILY_RP2040)
            );
            assert_eq!(word(b, 127), MAGIC_END);
        }
        // The second page holds the image's last 44 bytes, then erased flash.
        assert_eq!(&blocks[1][32..32 + 44], &[0xAA; 44]);
        assert_eq!(blocks[1][32 + 44], 0xFF);
        assert_eq!(&blocks[2][32..35], &model);
    }
}
