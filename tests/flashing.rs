//! The flashing platforms besides `stm32` — `rp2040`, `nrf52`, `esp32`, `riscv` — and the
//! bare-metal images of their ports: each tool's command lines against a golden plan; Debian's
//! openocd running the generated rp2040 and nrf52 commands for real and failing with its own "no
//! probe" words; a missing tool faulting only its board beside a board that runs; and every
//! image of every silicon port lying within its chip's flash and RAM, with the boot structures
//! its chip's ROM looks for (the RP2040's second stage with its CRC, the RP2350's IMAGE_DEF, the
//! ESP32-C3's app descriptor).

use std::path::Path;

use labctl_integration_tests::{
    assert_no_device_not_usage, bin_dir, board_block as board, elf_segments as segments, golden,
    have, have_built, have_socat, open_ro, run_failing, run_ok, text, Line,
};

fn target() -> std::path::PathBuf {
    bin_dir().parent().unwrap().to_path_buf()
}

/// Every image the ports build (`firmware/ports/build.sh`), with its chip's flash and RAM.
struct PortImage {
    name: &'static str,
    path: &'static str,
    flash_base: u64,
    /// Where the image's flash ends (the model partition, or the code region's end).
    code_end: u64,
    ram_base: u64,
    ram_bytes: u64,
}

const IMAGES: &[PortImage] = &[
    PortImage {
        name: "rp2040",
        path: "thumbv6m-none-eabi/release/labctl-fw-rp2040",
        flash_base: 0x1000_0000,
        code_end: 0x1004_0000,
        ram_base: 0x2000_0000,
        ram_bytes: 264 << 10,
    },
    PortImage {
        name: "rp2350",
        path: "fw-rp2350/thumbv8m.main-none-eabihf/release/labctl-fw-rp2040",
        flash_base: 0x1000_0000,
        code_end: 0x1004_0000,
        ram_base: 0x2000_0000,
        ram_bytes: 520 << 10,
    },
    PortImage {
        name: "nrf52840",
        path: "thumbv7em-none-eabihf/release/labctl-fw-nrf52",
        flash_base: 0,
        code_end: 0x2_0000,
        ram_base: 0x2000_0000,
        ram_bytes: 256 << 10,
    },
    // Code in IRAM (64 KiB before DRAM starts), read-only data in DROM; RAM is DRAM up to the
    // ROM's data.
    PortImage {
        name: "esp32c3 (IRAM)",
        path: "riscv32imc-unknown-none-elf/release/labctl-fw-esp32",
        flash_base: 0x4038_0000,
        code_end: 0x4039_0000,
        ram_base: 0x3FC9_0000,
        ram_bytes: 0x3FCD_E000 - 0x3FC9_0000,
    },
    // The image and its .data, copied to SRAM by the boot ROM, below the model at 0x80040000.
    PortImage {
        name: "k210",
        path: "riscv64gc-unknown-none-elf/release/labctl-fw-riscv",
        flash_base: 0x8000_0000,
        code_end: 0x8004_0000,
        ram_base: 0x8040_0000,
        ram_bytes: 2 << 20,
    },
    PortImage {
        name: "bl602",
        path: "fw-bl602/riscv32imac-unknown-none-elf/release/labctl-fw-riscv",
        flash_base: 0x2300_0000,
        code_end: 0x2304_0000,
        ram_base: 0x4202_0000,
        ram_bytes: 176 << 10,
    },
];

/// The bytes the image stores at `addr`.
fn bytes_at(elf: &[u8], addr: u64, n: usize) -> Vec<u8> {
    let (a, _, _, off) = segments(elf)
        .into_iter()
        .find(|(a, f, _, _)| *a <= addr && addr + n as u64 <= a + f)
        .unwrap_or_else(|| panic!("nothing stored at {addr:#x}"));
    let o = (off + addr - a) as usize;
    elf[o..o + n].to_vec()
}

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, no reflection, initial 0xFFFFFFFF), the RP2040 boot
/// ROM's check of the second stage.
fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn have_images() -> bool {
    IMAGES.iter().all(|i| {
        have_built(
            &target().join(i.path),
            &format!(
                "the {} image is not built (bash firmware/ports/build.sh)",
                i.name
            ),
        )
    })
}

/// Every silicon port's image lies within its chip, and carries what its boot ROM looks for.
#[test]
fn every_port_image_links_within_its_chip_with_its_boot_structures() {
    if !have_images() {
        return;
    }
    for i in IMAGES {
        let elf = std::fs::read(target().join(i.path)).unwrap();
        let segs = segments(&elf);
        let in_code = |a: u64| (i.flash_base..i.code_end).contains(&a);
        let code_end = segs
            .iter()
            .filter(|(a, f, _, _)| in_code(*a) && *f > 0)
            .map(|(a, f, _, _)| a + f)
            .max()
            .unwrap_or_else(|| panic!("{}: no code at {:#x}", i.name, i.flash_base));
        let ram_end = i.ram_base + i.ram_bytes;
        let statics: u64 = segs
            .iter()
            .filter(|(a, _, _, _)| (i.ram_base..ram_end).contains(a))
            .map(|(_, _, m, _)| m)
            .sum();
        assert!(
            code_end <= i.code_end,
            "{}: code ends at {code_end:#x}",
            i.name
        );
        assert!(
            statics + (16 << 10) <= i.ram_bytes,
            "{}: {statics} B of statics",
            i.name
        );
        // Nothing lands outside the chip's code region, its RAM and (ESP32-C3) its DROM.
        for (a, f, m, _) in &segs {
            let drom = (0x3C00_0000..0x3C10_0000).contains(a);
            assert!(
                in_code(*a) && a + f <= i.code_end
                    || (i.ram_base..ram_end).contains(a) && a + m <= ram_end
                    || drom && i.name.starts_with("esp32c3"),
                "{}: a segment at {a:#x} lies outside the chip",
                i.name
            );
        }
        println!(
            "{}: image {} B of {} B, statics {statics} B of {} B (headroom {} B flash, {} B RAM)",
            i.name,
            code_end - i.flash_base,
            i.code_end - i.flash_base,
            i.ram_bytes,
            i.code_end - code_end,
            i.ram_bytes - statics
        );
    }
    // The RP2040's second stage: 252 bytes and their CRC at the start of flash, then the vector
    // table at 0x10000100 whose reset vector points into flash.
    let elf = std::fs::read(target().join(IMAGES[0].path)).unwrap();
    let boot2 = bytes_at(&elf, 0x1000_0000, 256);
    assert_eq!(
        crc32_mpeg2(&boot2[..252]).to_le_bytes(),
        boot2[252..],
        "boot2 CRC"
    );
    let reset = u32::from_le_bytes(bytes_at(&elf, 0x1000_0104, 4).try_into().unwrap());
    assert!((0x1000_0100..0x1004_0000).contains(&reset) && reset & 1 == 1);
    // The RP2350's IMAGE_DEF within the first 4 KiB of flash.
    let elf = std::fs::read(target().join(IMAGES[1].path)).unwrap();
    let head = bytes_at(&elf, 0x1000_0000, 0x54);
    let start = head
        .windows(4)
        .position(|w| w == 0xFFFF_DED3u32.to_le_bytes())
        .expect("IMAGE_DEF block start");
    assert_eq!(
        &head[start + 16..start + 20],
        &0xAB12_3579u32.to_le_bytes(),
        "IMAGE_DEF block end"
    );
    // The ESP32-C3's app descriptor first in DROM.
    let elf = std::fs::read(target().join(IMAGES[3].path)).unwrap();
    assert_eq!(bytes_at(&elf, 0x3C00_0020, 4), 0xABCD_5432u32.to_le_bytes());
}

#[test]
fn flashing_command_lines_per_platform_and_tool_are_the_golden_plan() {
    if !have_images() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lab = dir.path().join("lab.toml");
    let tty = Path::new("/dev/ttyUSB0");
    let acm = Path::new("/dev/ttyACM0");
    let boards = [
        board("pico", "rp2040", "pico", acm, ""),
        board(
            "pico-drive",
            "rp2040",
            "pico",
            acm,
            "flash_tool = \"uf2\"\nflash_program = \"/media/pi/RPI-RP2\"",
        ),
        board(
            "pico2-openocd",
            "rp2040",
            "pico2",
            acm,
            "flash_tool = \"openocd\"\nprobe_serial = \"E6633861A3978538\"",
        ),
        board(
            "pico-probe-rs",
            "rp2040",
            "pico",
            acm,
            "flash_tool = \"probe-rs\"",
        ),
        board(
            "dk",
            "nrf52",
            "nrf52840-dk",
            acm,
            "probe_serial = \"683456789\"",
        ),
        board(
            "dk-probe-rs",
            "nrf52",
            "nrf52840-dk",
            acm,
            "flash_tool = \"probe-rs\"",
        ),
        board(
            "dk-openocd",
            "nrf52",
            "nrf52840-dk",
            acm,
            "flash_tool = \"openocd\"",
        ),
        board("c3", "esp32", "esp32c3-devkitm", tty, ""),
        board(
            "c3-esptool",
            "esp32",
            "esp32c3-devkitm",
            tty,
            "flash_tool = \"esptool\"",
        ),
        board("maix", "riscv", "maix-bit", tty, ""),
        board("pinecone", "riscv", "pinecone", tty, ""),
    ];
    std::fs::write(
        &lab,
        format!(
            "name = \"flashing\"\n[storage]\npath = \"lab.duckdb\"\n\n{}",
            boards.concat()
        ),
    )
    .unwrap();
    let o = run_ok(&["--lab", lab.to_str().unwrap(), "run", "--dry-run"]);
    let tmp = std::env::temp_dir().display().to_string();
    let plan = text(&o).0.replace(
        &format!("{}/labctl-", tmp.trim_end_matches('/')),
        "$TMP/labctl-",
    );
    assert_eq!(plan, golden("flashing.dry-run.txt", dir.path()));
}

/// The stand-in boards' lines and a lab of `boards` on them, with the model generated.
fn lab_on_lines(d: &Path, boards: &[(&str, &str, &str, &str)]) -> (Vec<Line>, std::path::PathBuf) {
    let lines: Vec<Line> = boards.iter().map(|b| Line::new(d, b.0)).collect();
    let text: String = boards
        .iter()
        .zip(&lines)
        .map(|((name, platform, profile, extra), line)| {
            board(name, platform, profile, &line.host, extra)
        })
        .collect();
    let lab = d.join("lab.toml");
    std::fs::write(
        &lab,
        format!(
            "name = \"flashing\"\n[storage]\npath = \"lab.duckdb\"\n\n{text}[[boards]]\nname = \"virt\"\nplatform = \"virtual\"\nprofile = \"rp2040\"\n"
        ),
    )
    .unwrap();
    (lines, lab)
}

fn runs(db: &Path) -> Vec<(String, String, String, String)> {
    let c = open_ro(db);
    let mut st = c
        .prepare("SELECT board, status, coalesce(reason_code, ''), coalesce(error, '') FROM runs ORDER BY board")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_missing_flashing_tool_faults_only_its_board() {
    if !have_images() || !have_socat() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_lines, lab) = lab_on_lines(
        d,
        &[
            (
                "pico",
                "rp2040",
                "pico",
                "flash_program = \"/nonexistent/picotool\"",
            ),
            (
                "dk",
                "nrf52",
                "nrf52840-dk",
                "flash_program = \"/nonexistent/nrfjprog\"",
            ),
            (
                "c3",
                "esp32",
                "esp32c3-devkitm",
                "flash_program = \"/nonexistent/espflash\"",
            ),
            (
                "maix",
                "riscv",
                "maix-bit",
                "flash_program = \"/nonexistent/kflash\"",
            ),
        ],
    );
    run_failing(&lab, &["--tokens", "4"]);
    let rows = runs(&d.join("lab.duckdb"));
    assert_eq!(rows.len(), 5, "{rows:?}");
    for (board, status, code, why) in &rows {
        if board == "virt" {
            assert_eq!(status, "ok", "{why}");
            continue;
        }
        assert_eq!(
            (status.as_str(), code.as_str()),
            ("error", "missing-tool"),
            "{board}: {why}"
        );
        assert!(
            why.contains("/nonexistent/") && why.contains("not installed"),
            "{why}"
        );
    }
}

#[test]
fn debians_openocd_runs_the_generated_rp2040_and_nrf52_commands_and_finds_no_probe() {
    if !have_images()
        || !have_socat()
        || !have(
            "command -v openocd",
            "openocd is not installed (apt-get install openocd)",
        )
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_lines, lab) = lab_on_lines(
        d,
        &[
            ("pico", "rp2040", "pico", "flash_tool = \"openocd\""),
            ("dk", "nrf52", "nrf52840-dk", "flash_tool = \"openocd\""),
        ],
    );
    run_failing(&lab, &["--tokens", "4"]);
    for (board, status, code, why) in runs(&d.join("lab.duckdb")) {
        println!("{board}: {why}");
        if board == "virt" {
            assert_eq!(status, "ok", "{why}");
            continue;
        }
        assert_eq!(
            (status.as_str(), code.as_str()),
            ("error", "platform"),
            "{why}"
        );
        assert_no_device_not_usage("openocd", &why);
    }
}
