//! The flash image of a little-endian ELF (32- or 64-bit): its loadable segments that land in
//! flash, laid out from the flash base with erased-flash bytes (0xFF) between them — the `.bin`
//! that `st-flash` writes (it does not read ELF) — and the segments themselves, for
//! [`super::uf2`] and [`super::ihex`].

/// The loadable segments of `elf` that land in flash at `base..base + size`, with the address
/// each is stored at (its physical address: .data's initial values, not its RAM address).
pub fn flash_segments(elf: &[u8], base: u32, size: u32) -> Result<Vec<(u32, &[u8])>, String> {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    };
    if elf.len() < 52 || &elf[..4] != b"\x7fELF" || elf[5] != 1 || !matches!(elf[4], 1 | 2) {
        return Err("not a little-endian ELF file".into());
    }
    let wide = elf[4] == 2;
    let (phoff, phentsize, phnum) = if wide {
        (
            u64_at(32).ok_or("truncated ELF header")? as usize,
            u16_at(54).ok_or("truncated ELF header")? as usize,
            u16_at(56).ok_or("truncated ELF header")? as usize,
        )
    } else {
        (
            u32_at(28).ok_or("truncated ELF header")? as usize,
            u16_at(42).ok_or("truncated ELF header")? as usize,
            u16_at(44).ok_or("truncated ELF header")? as usize,
        )
    };
    if phentsize < if wide { 56 } else { 32 } || phnum > 64 {
        return Err("implausible program header table".into());
    }
    let end_of_flash = base as u64 + size as u64;
    let mut segs = vec![];
    for i in 0..phnum {
        let h = phoff.saturating_add(i * phentsize);
        let bad = "truncated program header";
        let kind = u32_at(h).ok_or(bad)?;
        // (file offset, physical address, size in the file)
        let (off, paddr, filesz) = if wide {
            (
                u64_at(h + 8).ok_or(bad)?,
                u64_at(h + 24).ok_or(bad)?,
                u64_at(h + 32).ok_or(bad)?,
            )
        } else {
            (
                u64::from(u32_at(h + 4).ok_or(bad)?),
                u64::from(u32_at(h + 12).ok_or(bad)?),
                u64::from(u32_at(h + 16).ok_or(bad)?),
            )
        };
        if kind != 1 || filesz == 0 {
            continue;
        }
        if paddr < base as u64 || paddr.saturating_add(filesz) > end_of_flash {
            continue;
        }
        let data = usize::try_from(off)
            .ok()
            .and_then(|o| elf.get(o..o.checked_add(filesz as usize)?))
            .ok_or("a segment runs past the end of the file")?;
        segs.push((paddr as u32, data));
    }
    if segs.is_empty() {
        return Err(format!("no loadable segment in flash at {base:#010x}"));
    }
    Ok(segs)
}

/// The bytes of `elf` for flash at `base..base + size`, from `base` up to the end of the last
/// segment there.
pub fn flash_image(elf: &[u8], base: u32, size: u32) -> Result<Vec<u8>, String> {
    let segs = flash_segments(elf, base, size)?;
    let end = segs
        .iter()
        .map(|(a, d)| (a - base) as usize + d.len())
        .max()
        .unwrap_or(0);
    let mut out = vec![0xFF; end];
    for (a, d) in segs {
        let o = (a - base) as usize;
        out[o..o + d.len()].copy_from_slice(d);
    }
    Ok(out)
}

/// One file holding the image's flash bytes from `base`, padded with erased flash (0xFF) to
/// `model_offset`, then the model: for chips whose tool writes one file (kflash, blflash).
pub fn with_model(
    elf: &[u8],
    base: u32,
    model_offset: u32,
    model: &[u8],
) -> Result<Vec<u8>, String> {
    let mut out = flash_image(elf, base, model_offset)?;
    out.resize(model_offset as usize, 0xFF);
    out.extend_from_slice(model);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(segs: &[(u32, &[u8])]) -> Vec<u8> {
        let mut e = vec![0u8; 52];
        e[..6].copy_from_slice(b"\x7fELF\x01\x01");
        e[28..32].copy_from_slice(&52u32.to_le_bytes());
        e[42..44].copy_from_slice(&32u16.to_le_bytes());
        e[44..46].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        let data_at = 52 + 32 * segs.len();
        let mut data = vec![];
        for (paddr, d) in segs {
            let mut h = [0u8; 32];
            h[..4].copy_from_slice(&1u32.to_le_bytes());
            h[4..8].copy_from_slice(&((data_at + data.len()) as u32).to_le_bytes());
            h[12..16].copy_from_slice(&paddr.to_le_bytes());
            h[16..20].copy_from_slice(&(d.len() as u32).to_le_bytes());
            e.extend_from_slice(&h);
            data.extend_from_slice(d);
        }
        e.extend(data);
        e
    }

    #[test]
    fn segments_land_at_their_addresses_with_erased_gaps() {
        let e = elf(&[
            (0x0800_0000, &[1, 2]),
            (0x0800_0004, &[3]),
            (0x2000_0000, &[9]),
        ]);
        assert_eq!(
            flash_image(&e, 0x0800_0000, 1 << 20).unwrap(),
            [1, 2, 0xFF, 0xFF, 3]
        );
        assert!(flash_image(&e[..40], 0x0800_0000, 1 << 20).is_err());
        assert!(flash_image(
            b"not an elf at all, nope, nothing to see here.........",
            0,
            1
        )
        .is_err());
    }
}
