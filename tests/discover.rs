//! `labctl discover` against a sysfs-shaped fixture tree (`LABCTL_SYSROOT`): a Nucleo's
//! ST-LINK/V2-1 with its virtual COM port and by-id link, an ESP32 devkit's CP2102, a Pico in
//! BOOTSEL (no console), and a device no bench uses; root hubs and interfaces are not devices.
//! The `[[boards]]` blocks it prints pass `labctl config check` as they are.

use std::path::Path;

use labctl_integration_tests::{labctl, run_ok, text};

/// A USB device at bus location `loc`, with a CDC/serial tty on interface 0 when `tty` is given.
fn device(
    root: &Path,
    loc: &str,
    id: (&str, &str),
    serial: Option<&str>,
    product: &str,
    tty: Option<&str>,
) {
    let dev = root
        .join("sys/devices/pci0000:00/0000:00:14.0/usb1")
        .join(loc);
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::write(dev.join("idVendor"), format!("{}\n", id.0)).unwrap();
    std::fs::write(dev.join("idProduct"), format!("{}\n", id.1)).unwrap();
    std::fs::write(dev.join("product"), format!("{product}\n")).unwrap();
    if let Some(s) = serial {
        std::fs::write(dev.join("serial"), format!("{s}\n")).unwrap();
    }
    let bus = root.join("sys/bus/usb/devices");
    std::fs::create_dir_all(&bus).unwrap();
    std::os::unix::fs::symlink(&dev, bus.join(loc)).unwrap();
    let intf = dev.join(format!("{loc}:1.0"));
    std::fs::create_dir_all(&intf).unwrap();
    std::fs::write(intf.join("bInterfaceNumber"), "00\n").unwrap();
    std::os::unix::fs::symlink(&intf, bus.join(format!("{loc}:1.0"))).unwrap();
    if let Some(tty) = tty {
        std::fs::create_dir_all(intf.join("tty").join(tty)).unwrap();
        let class = root.join("sys/class/tty").join(tty);
        std::fs::create_dir_all(&class).unwrap();
        std::os::unix::fs::symlink(&intf, class.join("device")).unwrap();
        std::fs::create_dir_all(root.join("dev")).unwrap();
        std::fs::write(root.join("dev").join(tty), b"").unwrap();
    }
}

#[test]
fn discover_lists_probes_bridges_and_boards_and_prints_usable_board_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let stlink = "0671FF485550755187121723";
    device(
        &root,
        "1-1.1",
        ("0483", "374b"),
        Some(stlink),
        "STM32 STLink",
        Some("ttyACM0"),
    );
    device(
        &root,
        "1-1.2",
        ("10c4", "ea60"),
        Some("0001"),
        "CP2102 USB to UART Bridge Controller",
        Some("ttyUSB0"),
    );
    device(
        &root,
        "1-1.3",
        ("2e8a", "0003"),
        Some("E0C9125B0D9B"),
        "RP2 Boot",
        None,
    );
    device(&root, "1-1.4", ("046d", "c52b"), None, "USB Receiver", None);
    // The root hub is not a device on the bench.
    std::os::unix::fs::symlink(
        root.join("sys/devices/pci0000:00/0000:00:14.0/usb1"),
        root.join("sys/bus/usb/devices/usb1"),
    )
    .unwrap();
    let by_id = root.join("dev/serial/by-id");
    std::fs::create_dir_all(&by_id).unwrap();
    let link = format!("usb-STMicroelectronics_STM32_STLink_{stlink}-if02");
    std::os::unix::fs::symlink("../../ttyACM0", by_id.join(&link)).unwrap();

    let o = labctl()
        .env("LABCTL_SYSROOT", &root)
        .args(["discover", "--json"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let found = v.as_array().unwrap();
    let locs: Vec<&str> = found
        .iter()
        .map(|f| f["location"].as_str().unwrap())
        .collect();
    assert_eq!(locs, ["1-1.1", "1-1.2", "1-1.3", "1-1.4"]);
    assert_eq!(found[0]["usb_id"], "0483:374b");
    assert_eq!(found[0]["role"], "probe+console");
    assert_eq!(found[0]["serial"], stlink);
    assert_eq!(found[0]["consoles"][0]["dev"], "/dev/ttyACM0");
    assert_eq!(
        found[0]["consoles"][0]["by_id"],
        format!("/dev/serial/by-id/{link}")
    );
    assert!(found[0]["candidates"].to_string().contains("stm32"));
    assert!(found[1]["candidates"].to_string().contains("esp32"));
    assert_eq!(found[2]["role"], "bootloader");
    assert_eq!(found[2]["consoles"].as_array().unwrap().len(), 0);
    assert!(
        found[3]["kind"].is_null(),
        "an unknown device is listed, unnamed"
    );

    // The text form ends with a [[boards]] block per device with a console; they make a lab.
    let o = labctl()
        .env("LABCTL_SYSROOT", &root)
        .arg("discover")
        .output()
        .unwrap();
    let (out, _) = text(&o);
    let blocks = &out[out.find("# for your lab file:").expect("board blocks")..];
    assert_eq!(blocks.matches("[[boards]]").count(), 2, "{out}");
    assert!(
        blocks.contains(&format!("usb_serial = \"{stlink}\"")),
        "{out}"
    );
    assert!(blocks.contains("usb_id = \"10c4:ea60\""), "{out}");
    let lab = dir.path().join("lab.toml");
    std::fs::write(&lab, format!("name = \"found\"\n\n{blocks}")).unwrap();
    run_ok(&["config", "check", lab.to_str().unwrap()]);

    // Nothing attached: said plainly, exit 0.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = labctl()
        .env("LABCTL_SYSROOT", &empty)
        .arg("discover")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(text(&o).0.contains("no USB devices found"));
}
