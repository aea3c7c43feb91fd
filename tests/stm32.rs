//! The `stm32` platform: flashing command lines per tool (st-flash, openocd, probe-rs) against
//! a golden plan; where Debian ships the tool, the generated command run for real and failing
//! with the tool's own "no probe" words (never a usage error); and, with a stand-in flasher and
//! the posix firmware on a socat pty pair standing in for the chip, each fault of a flashed
//! board alone — a missing tool, a board that does not come back, a wrong boot banner — beside a
//! board that comes back as flashed and is profiled.

use std::{path::Path, process::Child};

use labctl_integration_tests::{
    assert_no_device_not_usage, bin_dir, board_block, elf_segments, golden, have, have_built,
    have_socat, labctl, open_ro, run_failing, run_ok, text, Line,
};

fn have_image() -> bool {
    have_built(
        &bin_dir()
            .parent()
            .unwrap()
            .join("thumbv7em-none-eabihf/release/labctl-fw-stm32"),
        "the stm32 image is not built (bash firmware/ports/build.sh)",
    )
}

fn board(name: &str, serial: &Path, extra: &str) -> String {
    board_block(name, "stm32", "stm32f405", serial, extra)
}

#[test]
fn flashing_command_lines_per_tool_are_the_golden_plan() {
    if !have_image() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lab = dir.path().join("lab.toml");
    let tty = Path::new("/dev/ttyUSB0");
    std::fs::write(
        &lab,
        format!(
            "name = \"stm32\"\n[storage]\npath = \"lab.duckdb\"\n\n{}{}{}{}",
            board("f405-stlink", tty, ""),
            board(
                "f405-openocd",
                tty,
                "flash_tool = \"openocd\"\nprobe_serial = \"066DFF485550755187121723\""
            ),
            board(
                "f405-probe-rs",
                tty,
                "flash_tool = \"probe-rs\"\nflash_program = \"/opt/probe-rs/bin/probe-rs\""
            ),
            board("nucleo-f411", tty, "").replace("stm32f405", "nucleo-f411")
                + &board("nucleo-f746", tty, "flash_tool = \"openocd\"")
                    .replace("stm32f405", "nucleo-f746")
                + &board("nucleo-h743", tty, "flash_tool = \"probe-rs\"")
                    .replace("stm32f405", "nucleo-h743"),
        ),
    )
    .unwrap();
    let o = run_ok(&["--lab", lab.to_str().unwrap(), "run", "--dry-run"]);
    let tmp = std::env::temp_dir().display().to_string();
    // The st-flash .bin goes to the temporary directory, whatever it is here.
    let plan = text(&o).0.replace(
        &format!("{}/labctl-stm32-", tmp.trim_end_matches('/')),
        "$TMP/labctl-stm32-",
    );
    assert_eq!(plan, golden("stm32.dry-run.txt", dir.path()));
}

/// The posix firmware on a line's chip end, answering as `platform`.
fn chip(line: &Line, model: &Path, platform: &str) -> Child {
    line.firmware(
        model,
        platform,
        &[
            "--clock-hz",
            "168000000",
            "--ram",
            "131072",
            "--flash",
            "1048576",
            "--ctx",
            "64",
        ],
    )
}

#[test]
fn a_flashed_board_that_fails_faults_alone_and_one_that_comes_back_is_profiled() {
    if !have_image() || !have_socat() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("m.ltlm");
    run_ok(&[
        "model",
        "gen",
        "--preset",
        "stories260k",
        "--quant",
        "q8_0",
        "-o",
        model.to_str().unwrap(),
    ]);
    let lines: Vec<Line> = ["no-tool", "silent", "imposter", "good"]
        .iter()
        .map(|n| Line::new(d, n))
        .collect();
    let mut chips = [
        chip(&lines[2], &model, "rp2040"),
        chip(&lines[3], &model, "stm32f405"),
    ];
    // `/bin/true` stands in for st-flash: it accepts the command line and "flashes" nothing.
    let lab = d.join("lab.toml");
    std::fs::write(
        &lab,
        format!(
            "name = \"stm32\"\n[storage]\npath = \"lab.duckdb\"\n\n{}{}{}{}[[boards]]\nname = \"virt\"\nplatform = \"virtual\"\nprofile = \"stm32f7\"\n",
            board("no-tool", &lines[0].host, "flash_tool = \"probe-rs\"\nflash_program = \"/nonexistent/probe-rs\""),
            board("silent", &lines[1].host, "flash_program = \"/bin/true\""),
            board("imposter", &lines[2].host, "flash_program = \"/bin/true\""),
            board("good", &lines[3].host, "flash_program = \"/bin/true\""),
        ),
    )
    .unwrap();
    let o = labctl()
        .args([
            "--lab",
            lab.to_str().unwrap(),
            "run",
            "--model",
            model.to_str().unwrap(),
        ])
        .args(["--prompt", "Hello", "--tokens", "8", "--boot-timeout", "2s"])
        .output()
        .unwrap();
    for c in chips.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    let c = open_ro(&d.join("lab.duckdb"));
    let row = |b: &str| -> (String, String, String) {
        c.query_row(
            "SELECT status, coalesce(reason_code, ''), coalesce(error, '') FROM runs WHERE board = ?",
            [b],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    };
    let (s, code, why) = row("no-tool");
    assert_eq!(
        (s.as_str(), code.as_str()),
        ("error", "missing-tool"),
        "{why}"
    );
    assert!(
        why.contains("probe-rs") && why.contains("not installed"),
        "{why}"
    );
    let (s, code, _) = row("silent");
    assert_eq!((s.as_str(), code.as_str()), ("failed", "boot-timeout"));
    let (s, code, why) = row("imposter");
    assert_eq!(
        (s.as_str(), code.as_str()),
        ("failed", "wrong-banner"),
        "{why}"
    );
    assert!(
        why.contains("\"rp2040\"") && why.contains("\"stm32f405\""),
        "{why}"
    );
    assert_eq!(row("good").0, "ok", "{out}\n{err}");
    assert_eq!(row("virt").0, "ok");
    // The stand-in flasher ran the command lines the plan names.
    let flashed: i64 = c
        .query_row(
            "SELECT count(*) FROM board_events WHERE board = 'good' AND state = 'flashed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(flashed, 1);
}

#[test]
fn debians_flashing_tools_run_the_generated_commands_and_find_no_probe() {
    if !have_image() || !have_socat() {
        return;
    }
    let mut tools = vec![];
    for (tool, check, pkg) in [
        ("st-flash", "command -v st-flash", "stlink-tools"),
        ("openocd", "command -v openocd", "openocd"),
    ] {
        if have(
            check,
            &format!("{tool} is not installed (apt-get install {pkg})"),
        ) {
            tools.push(tool);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for tool in tools {
        let line = Line::new(d, tool);
        let lab = d.join(format!("{tool}.toml"));
        std::fs::write(
            &lab,
            format!(
                "name = \"stm32\"\n[storage]\npath = \"{tool}.duckdb\"\n\n{}",
                board("f405", &line.host, &format!("flash_tool = \"{tool}\""))
            ),
        )
        .unwrap();
        run_failing(&lab, &["--tokens", "4"]);
        let c = open_ro(&d.join(format!("{tool}.duckdb")));
        let (status, code, why): (String, String, String) = c
            .query_row("SELECT status, reason_code, error FROM runs", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        println!("{tool}: {why}");
        assert_eq!(
            (status.as_str(), code.as_str()),
            ("error", "platform"),
            "{why}"
        );
        assert_no_device_not_usage(tool, &why);
    }
}

/// Every image the port builds lies within its chip: code below the model partition, statics
/// (with the stack's reserve, which the linker script asserts) in the chip's SRAM.
#[test]
fn each_stm32_image_links_within_its_chip() {
    if !have_image() {
        return;
    }
    let target = bin_dir().parent().unwrap().to_path_buf();
    for (image, model_at, ram) in [
        (
            "thumbv7em-none-eabihf/release/labctl-fw-stm32",
            0x0802_0000u64,
            128u64 << 10,
        ),
        (
            "fw-stm32f411/thumbv7em-none-eabihf/release/labctl-fw-stm32",
            0x0801_0000,
            128 << 10,
        ),
        (
            "fw-stm32f746/thumbv7em-none-eabihf/release/labctl-fw-stm32",
            0x0802_0000,
            320 << 10,
        ),
        (
            "fw-stm32h743/thumbv7em-none-eabihf/release/labctl-fw-stm32",
            0x0802_0000,
            512 << 10,
        ),
    ] {
        let elf = std::fs::read(target.join(image))
            .unwrap_or_else(|e| panic!("{image}: {e} (bash firmware/ports/build.sh)"));
        let segs = elf_segments(&elf);
        let code_end = segs
            .iter()
            .filter(|(a, f, _, _)| (0x0800_0000..0x2000_0000).contains(a) && *f > 0)
            .map(|(a, f, _, _)| a + f)
            .max()
            .unwrap();
        let ram_used: u64 = segs
            .iter()
            .filter(|(a, _, _, _)| *a >= 0x2000_0000)
            .map(|(_, _, m, _)| m)
            .sum();
        assert!(code_end <= model_at, "{image}: code ends at {code_end:#x}");
        assert!(
            ram_used + (16 << 10) <= ram,
            "{image}: {ram_used} B of statics"
        );
        println!(
            "{image}: image {} B (budget {} B), statics {ram_used} B of {ram} B",
            code_end - 0x0800_0000,
            model_at - 0x0800_0000
        );
    }
}
