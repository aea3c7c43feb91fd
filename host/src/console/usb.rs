//! Finding a board's console by its USB identity through sysfs: every tty under
//! `/sys/class/tty` whose device is an interface of a USB device with the wanted serial number
//! (and `idVendor:idProduct`, and interface number, when given). `LABCTL_SYSROOT` prefixes `/sys`
//! and `/dev`, so tests (and `discover`, `doctor`) can run against a fixture tree.

use std::path::{Path, PathBuf};

/// The root that `/sys` and `/dev` are under: `/`, or `LABCTL_SYSROOT`.
#[derive(Debug, Clone)]
pub struct Sysroot(pub PathBuf);

impl Sysroot {
    pub fn from_env() -> Sysroot {
        Sysroot(
            std::env::var_os("LABCTL_SYSROOT")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/")),
        )
    }

    pub fn path(&self, abs: &str) -> PathBuf {
        self.0.join(abs.trim_start_matches('/'))
    }
}

/// One USB serial console as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbTty {
    /// `ttyACM0`
    pub tty: String,
    /// `/dev/ttyACM0` (under the sysroot)
    pub dev: PathBuf,
    pub vid: u16,
    pub pid: u16,
    pub serial: String,
    pub interface: Option<u8>,
    /// The device's bus location, e.g. `1-1.2`.
    pub location: String,
    pub product: Option<String>,
}

fn read_trim(p: &Path) -> Option<String> {
    // Attribute files are tiny; anything longer is not a sysfs attribute.
    let s = std::fs::read(p).ok()?;
    if s.len() > 4096 {
        return None;
    }
    Some(String::from_utf8_lossy(&s).trim().to_string())
}

fn hex16(p: &Path) -> Option<u16> {
    u16::from_str_radix(&read_trim(p)?, 16).ok()
}

/// Every tty that belongs to a USB device, in name order.
pub fn usb_ttys(root: &Sysroot) -> Vec<UsbTty> {
    let mut out = vec![];
    let Ok(entries) = std::fs::read_dir(root.path("/sys/class/tty")) else {
        return out;
    };
    for e in entries.flatten().take(4096) {
        let tty = e.file_name().to_string_lossy().into_owned();
        let Ok(mut dir) = std::fs::canonicalize(e.path().join("device")) else {
            continue;
        };
        // Walk up from the tty's device (an interface, or a usb-serial port below one) to the
        // USB device: the first directory with an `idVendor`. The one below it is the interface.
        let mut interface = None;
        let mut found = None;
        for _ in 0..8 {
            if dir.join("idVendor").is_file() {
                found = Some(dir.clone());
                break;
            }
            if let Some(n) = read_trim(&dir.join("bInterfaceNumber")) {
                interface = u8::from_str_radix(&n, 16).ok();
            }
            if !dir.pop() || !dir.starts_with(&root.0) {
                break;
            }
        }
        let Some(usb) = found else { continue };
        let (Some(vid), Some(pid)) = (hex16(&usb.join("idVendor")), hex16(&usb.join("idProduct")))
        else {
            continue;
        };
        out.push(UsbTty {
            dev: root.path("/dev").join(&tty),
            tty,
            vid,
            pid,
            serial: read_trim(&usb.join("serial")).unwrap_or_default(),
            interface,
            location: usb
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            product: read_trim(&usb.join("product")),
        });
    }
    out.sort_by(|a, b| a.tty.cmp(&b.tty));
    out
}

/// The tty of the USB device with serial number `serial`; ambiguity and absence are errors that
/// say what is attached.
pub fn find_tty(
    root: &Sysroot,
    serial: &str,
    id: Option<(u16, u16)>,
    interface: Option<u8>,
) -> Result<PathBuf, String> {
    let all = usb_ttys(root);
    let hits: Vec<&UsbTty> = all
        .iter()
        .filter(|t| t.serial == serial)
        .filter(|t| id.is_none_or(|(v, p)| (t.vid, t.pid) == (v, p)))
        .filter(|t| interface.is_none_or(|i| t.interface == Some(i)))
        .collect();
    let what = match id {
        Some((v, p)) => format!("USB serial number {serial:?} ({v:04x}:{p:04x})"),
        None => format!("USB serial number {serial:?}"),
    };
    match hits.as_slice() {
        [one] => Ok(one.dev.clone()),
        [] => {
            let seen: Vec<String> = all
                .iter()
                .map(|t| {
                    format!(
                        "{} {:04x}:{:04x} serial {:?}",
                        t.tty, t.vid, t.pid, t.serial
                    )
                })
                .collect();
            Err(format!(
                "no serial console with {what}{} is attached (attached: {})",
                interface
                    .map(|i| format!(" interface {i}"))
                    .unwrap_or_default(),
                if seen.is_empty() {
                    "none".into()
                } else {
                    seen.join(", ")
                }
            ))
        }
        many => Err(format!(
            "{what} has {} serial consoles ({}): add `usb_interface` to the board",
            many.len(),
            many.iter()
                .map(|t| format!(
                    "{} interface {}",
                    t.tty,
                    t.interface.map_or("?".into(), |i| i.to_string())
                ))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Builds sysfs-shaped fixture trees: used by this module's tests and by the integration tests'
/// equivalent (which writes the same shape from the test side).
#[cfg(test)]
pub mod fixture {
    use std::path::Path;

    /// Adds USB device `loc` (e.g. `1-1.2`) with one CDC-ACM tty per (interface, tty name).
    pub fn add(root: &Path, loc: &str, vid: u16, pid: u16, serial: &str, ttys: &[(u8, &str)]) {
        let dev = root
            .join("sys/devices/pci0000:00/0000:00:14.0/usb1")
            .join(loc);
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("idVendor"), format!("{vid:04x}\n")).unwrap();
        std::fs::write(dev.join("idProduct"), format!("{pid:04x}\n")).unwrap();
        std::fs::write(dev.join("serial"), format!("{serial}\n")).unwrap();
        for (ifnum, tty) in ttys {
            let intf = dev.join(format!("{loc}:1.{ifnum}"));
            std::fs::create_dir_all(intf.join("tty").join(tty)).unwrap();
            std::fs::write(intf.join("bInterfaceNumber"), format!("{ifnum:02x}\n")).unwrap();
            let class = root.join("sys/class/tty").join(tty);
            std::fs::create_dir_all(&class).unwrap();
            std::os::unix::fs::symlink(&intf, class.join("device")).unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_console_by_serial_number_and_narrows_by_id_and_interface() {
        let dir = tempfile::tempdir().unwrap();
        fixture::add(
            dir.path(),
            "1-1.2",
            0x2e8a,
            0x000a,
            "E6614C311B4B2A37",
            &[(0, "ttyACM0")],
        );
        fixture::add(
            dir.path(),
            "1-1.3",
            0x303a,
            0x1001,
            "F4:12:FA:00:11:22",
            &[(0, "ttyACM1"), (2, "ttyACM2")],
        );
        let root = Sysroot(dir.path().to_path_buf());
        let all = usb_ttys(&root);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].location, "1-1.2");
        let p = find_tty(&root, "E6614C311B4B2A37", None, None).unwrap();
        assert_eq!(p, dir.path().join("dev/ttyACM0"));
        assert!(find_tty(&root, "E6614C311B4B2A37", Some((0x2e8a, 0x000a)), None).is_ok());
        let e = find_tty(&root, "E6614C311B4B2A37", Some((0x1234, 0x5678)), None).unwrap_err();
        assert!(e.contains("ttyACM0 2e8a:000a"), "{e}");
        let e = find_tty(&root, "F4:12:FA:00:11:22", None, None).unwrap_err();
        assert!(e.contains("usb_interface"), "{e}");
        let p = find_tty(&root, "F4:12:FA:00:11:22", None, Some(2)).unwrap();
        assert_eq!(p, dir.path().join("dev/ttyACM2"));
    }
}
