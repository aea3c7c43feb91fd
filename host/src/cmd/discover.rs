//! `labctl discover`: the USB devices attached (from sysfs, under `LABCTL_SYSROOT` in tests) —
//! vendor and product IDs, serial number, the ttys of their interfaces and those ttys'
//! `/dev/serial/by-id` names — matched against the IDs of the debug probes, USB-serial bridges
//! and native USB consoles that edge boards use, with the platforms and profiles each may be,
//! and a `[[boards]]` block for every device with a console. A debug probe's IDs do not name its
//! target chip, so candidates are listed, not guessed.

use std::path::Path;

use serde::Serialize;

use crate::console::usb::{usb_ttys, Sysroot, UsbTty};

/// What a USB identity is on an edge-ML bench.
struct Known {
    vid: u16,
    /// `None`: every product of this vendor.
    pid: Option<u16>,
    what: &'static str,
    /// `probe`, `console`, `probe+console`, `bootloader`.
    role: &'static str,
    candidates: &'static [&'static str],
}

const KNOWN: &[Known] = &[
    Known {
        vid: 0x0483,
        pid: Some(0x3748),
        what: "ST-LINK/V2",
        role: "probe",
        candidates: &["stm32: stm32f405 (or any STM32 wired to it; the probe does not say which)"],
    },
    Known {
        vid: 0x0483,
        pid: Some(0x374b),
        what: "ST-LINK/V2-1 (Nucleo/Discovery)",
        role: "probe+console",
        candidates: &["stm32: nucleo-f411 (its VCOM is USART2), nucleo-f746, nucleo-h743 (USART3)"],
    },
    Known {
        vid: 0x0483,
        pid: Some(0x374e),
        what: "ST-LINK/V3E (Nucleo-144)",
        role: "probe+console",
        candidates: &["stm32: nucleo-h743 (a NUCLEO-H743ZI2), or another Nucleo-144"],
    },
    Known {
        vid: 0x0483,
        pid: Some(0x374f),
        what: "ST-LINK/V3",
        role: "probe+console",
        candidates: &["stm32: nucleo-h743 (a NUCLEO-H743ZI2), or another Nucleo-144"],
    },
    Known {
        vid: 0x0483,
        pid: Some(0x3753),
        what: "ST-LINK/V3 (two VCPs)",
        role: "probe+console",
        candidates: &["stm32: nucleo-h743, or another Nucleo-H7"],
    },
    Known {
        vid: 0x0483,
        pid: Some(0x3754),
        what: "ST-LINK/V3 (no mass storage)",
        role: "probe+console",
        candidates: &["stm32: nucleo-h743, or another Nucleo-H7"],
    },
    Known {
        vid: 0x2e8a,
        pid: Some(0x0003),
        what: "RP2040 in BOOTSEL (UF2 drive)",
        role: "bootloader",
        candidates: &["rp2040: pico (RP2040)"],
    },
    Known {
        vid: 0x2e8a,
        pid: Some(0x000f),
        what: "RP2350 in BOOTSEL (UF2 drive)",
        role: "bootloader",
        candidates: &["rp2040: pico2 (RP2350)"],
    },
    Known {
        vid: 0x2e8a,
        pid: Some(0x000a),
        what: "Raspberry Pi Pico SDK USB CDC",
        role: "console",
        candidates: &["rp2040: pico, pico2 running other firmware (the rp2040 port's console is UART0)"],
    },
    Known {
        vid: 0x2e8a,
        pid: Some(0x000c),
        what: "Raspberry Pi Debug Probe (CMSIS-DAP)",
        role: "probe+console",
        candidates: &["rp2040: pico, pico2 wired to the probe's SWD and UART (flash_tool = \"openocd\")"],
    },
    Known {
        vid: 0x1366,
        pid: None,
        what: "SEGGER J-Link (e.g. the nRF52840-DK's interface MCU)",
        role: "probe+console",
        candidates: &["nrf52: nrf52840-dk"],
    },
    Known {
        vid: 0x0d28,
        pid: Some(0x0204),
        what: "Arm DAPLink (CMSIS-DAP)",
        role: "probe+console",
        candidates: &["nrf52: nrf52840-dk, stm32, rp2040: pico, pico2 (whatever the DAPLink is wired to)"],
    },
    Known {
        vid: 0x303a,
        pid: Some(0x1001),
        what: "Espressif USB-Serial-JTAG",
        role: "probe+console",
        candidates: &["esp32: an ESP32-C3/S3 on its own USB (the esp32 port's console is UART0: use the board's UART bridge)"],
    },
    Known {
        vid: 0x303a,
        pid: Some(0x0002),
        what: "Espressif native USB (TinyUSB CDC)",
        role: "console",
        candidates: &["esp32: esp32s3, esp32s2"],
    },
    Known {
        vid: 0x10c4,
        pid: Some(0xea60),
        what: "Silicon Labs CP210x USB-UART",
        role: "console",
        candidates: &[
            "esp32: esp32c3-devkitm (CP2102)",
            "any board wired to the bridge",
        ],
    },
    Known {
        vid: 0x1a86,
        pid: Some(0x7523),
        what: "WCH CH340 USB-UART",
        role: "console",
        candidates: &[
            "esp32: esp32c3-devkitm (boards with a CH340)",
            "riscv: pinecone (BL602), maix-bit (K210)",
        ],
    },
    Known {
        vid: 0x1a86,
        pid: Some(0x55d4),
        what: "WCH CH9102 USB-UART",
        role: "console",
        candidates: &["esp32 devkits (newer ones)"],
    },
    Known {
        vid: 0x0403,
        pid: Some(0x6010),
        what: "FTDI FT2232 (dual)",
        role: "probe+console",
        candidates: &["riscv: maix-bit (a K210 Maix Dock or MAIXDUINO: JTAG + UART)"],
    },
    Known {
        vid: 0x0403,
        pid: Some(0x6001),
        what: "FTDI FT232R USB-UART",
        role: "console",
        candidates: &["any board wired to the bridge"],
    },
    Known {
        vid: 0x0403,
        pid: Some(0x6014),
        what: "FTDI FT232H",
        role: "probe+console",
        candidates: &["any board wired to the bridge"],
    },
];

fn known(vid: u16, pid: u16) -> Option<&'static Known> {
    KNOWN
        .iter()
        .find(|k| k.vid == vid && k.pid.is_none_or(|p| p == pid))
}

/// One attached USB device.
#[derive(Debug, Serialize)]
pub struct Found {
    pub location: String,
    pub usb_id: String,
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
    /// What its IDs say it is (`None`: not a device edge boards use).
    pub kind: Option<&'static str>,
    pub role: Option<&'static str>,
    pub candidates: Vec<&'static str>,
    pub consoles: Vec<Console>,
}

#[derive(Debug, Serialize)]
pub struct Console {
    pub tty: String,
    pub dev: String,
    pub by_id: Option<String>,
    pub interface: Option<u8>,
}

fn attr(dir: &Path, name: &str) -> Option<String> {
    let s = std::fs::read(dir.join(name)).ok()?;
    // Sysfs attributes are short; anything longer is not one.
    (s.len() <= 4096).then(|| String::from_utf8_lossy(&s).trim().to_string())
}

/// `/dev/serial/by-id` names, by the tty they point at.
fn by_id(root: &Sysroot) -> Vec<(String, String)> {
    let dir = root.path("/dev/serial/by-id");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return vec![];
    };
    entries
        .flatten()
        .take(4096)
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            let tty = target.file_name()?.to_string_lossy().into_owned();
            Some((
                tty,
                format!("/dev/serial/by-id/{}", e.file_name().to_string_lossy()),
            ))
        })
        .collect()
}

/// Every USB device under the sysroot, in bus-location order.
pub fn discover(root: &Sysroot) -> Vec<Found> {
    let ttys = usb_ttys(root);
    let links = by_id(root);
    let mut out = vec![];
    let Ok(entries) = std::fs::read_dir(root.path("/sys/bus/usb/devices")) else {
        return out;
    };
    for e in entries.flatten().take(4096) {
        let name = e.file_name().to_string_lossy().into_owned();
        // Interfaces (`1-1.2:1.0`) and root hubs (`usb1`) are not devices on a bench.
        if name.contains(':') || name.starts_with("usb") {
            continue;
        }
        let dir = e.path();
        let hex = |a: &str| attr(&dir, a).and_then(|v| u16::from_str_radix(&v, 16).ok());
        let (Some(vid), Some(pid)) = (hex("idVendor"), hex("idProduct")) else {
            continue;
        };
        let k = known(vid, pid);
        let consoles = ttys
            .iter()
            .filter(|t: &&UsbTty| t.location == name)
            .map(|t| Console {
                tty: t.tty.clone(),
                dev: format!("/dev/{}", t.tty),
                by_id: links
                    .iter()
                    .find(|(tty, _)| *tty == t.tty)
                    .map(|(_, l)| l.clone()),
                interface: t.interface,
            })
            .collect();
        out.push(Found {
            location: name,
            usb_id: format!("{vid:04x}:{pid:04x}"),
            serial: attr(&dir, "serial").filter(|s| !s.is_empty()),
            manufacturer: attr(&dir, "manufacturer"),
            product: attr(&dir, "product"),
            kind: k.map(|k| k.what),
            role: k.map(|k| k.role),
            candidates: k.map(|k| k.candidates.to_vec()).unwrap_or_default(),
            consoles,
        });
    }
    out.sort_by(|a, b| a.location.cmp(&b.location));
    out
}

/// A board name from what the device says: its product and the end of its serial number.
fn board_name(f: &Found) -> String {
    let base: String = f
        .product
        .as_deref()
        .or(f.kind)
        .unwrap_or("board")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let base = base
        .split('-')
        .filter(|s| !s.is_empty())
        .take(3)
        .collect::<Vec<_>>()
        .join("-");
    match f.serial.as_deref() {
        Some(s) if s.len() >= 4 => format!("{base}-{}", s[s.len() - 4..].to_ascii_lowercase()),
        _ => format!("{base}-{}", f.location.replace(['.', '-'], "")),
    }
}

/// The `[[boards]]` block for a device with a console: named by its USB serial number when it
/// has one (found again after re-enumeration), else by its by-id path.
pub fn board_block(f: &Found) -> Option<String> {
    let c = f.consoles.first()?;
    let mut s = String::from("[[boards]]\n");
    s += &format!("name = \"{}\"\n", board_name(f));
    s += "platform = \"serial\"                  # flashed by hand; see docs/platforms.md\n";
    s += "profile = \"generic\"\n";
    match (&f.serial, &c.by_id) {
        (Some(serial), _) => {
            s += &format!("usb_serial = \"{serial}\"\n");
            s += &format!("usb_id = \"{}\"\n", f.usb_id);
            if f.consoles.len() > 1 {
                if let Some(i) = c.interface {
                    s += &format!("usb_interface = {i}\n");
                }
            }
        }
        (None, Some(link)) => s += &format!("serial = \"{link}\"\n"),
        (None, None) => s += &format!("serial = \"{}\"\n", c.dev),
    }
    s += "baud = 115200\n";
    if !f.candidates.is_empty() {
        s += &format!("# may be: {}\n", f.candidates.join("; "));
    }
    Some(s)
}

/// `labctl discover [--json]`
pub fn cmd(json: bool) -> anyhow::Result<()> {
    let root = Sysroot::from_env();
    let found = discover(&root);
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(());
    }
    if found.is_empty() {
        println!(
            "no USB devices found under {}",
            root.path("/sys/bus/usb/devices").display()
        );
        return Ok(());
    }
    for f in &found {
        println!(
            "{}  {}  {}{}",
            f.location,
            f.usb_id,
            f.kind
                .or(f.product.as_deref())
                .unwrap_or("(unknown device)"),
            f.serial
                .as_deref()
                .map(|s| format!("  serial {s}"))
                .unwrap_or_default()
        );
        if let Some(r) = f.role {
            println!("    role: {r}");
        }
        for c in &f.consoles {
            println!(
                "    console: {}{}",
                c.dev,
                c.by_id
                    .as_deref()
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default()
            );
        }
        for cand in &f.candidates {
            println!("    may be: {cand}");
        }
    }
    let blocks: Vec<String> = found.iter().filter_map(board_block).collect();
    if !blocks.is_empty() {
        println!("\n# for your lab file:");
        for b in blocks {
            println!("\n{b}");
        }
    }
    Ok(())
}
