//! Relays and the relay state file. A relay is one channel switching one board's supply: a GPIO
//! line (gpio-cdev), a USB-HID relay board (rusb), or a simulated line. Its state is kept in
//! `<db stem>.state.json` beside the database, so `labctl boards` shows it, simulated relays keep
//! it between commands, and GPIO lines can be re-asserted from it.

use std::{
    collections::BTreeMap,
    fs::File,
    io::Write,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context};
use lab_config::{Lab, Relay, RelayDriver};
use serde::{Deserialize, Serialize};

use crate::{cli::PowerAction, clock, BadInput};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct RelayEntry {
    pub on: bool,
    /// Unix time (ms) of the last change.
    pub since_ms: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StateFile {
    #[serde(default)]
    pub relays: BTreeMap<String, RelayEntry>,
}

/// The state file, locked (flock) for as long as this value lives.
pub struct LockedState {
    path: PathBuf,
    _lock: File,
    pub state: StateFile,
}

impl LockedState {
    pub fn open(path: &Path) -> anyhow::Result<LockedState> {
        let lock_path = path.with_extension("json.lock");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        // SAFETY: flock on a file descriptor we own; released when `lock` is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!(
                "cannot lock {}: {}",
                lock_path.display(),
                std::io::Error::last_os_error()
            );
        }
        let state = match std::fs::read_to_string(path) {
            Ok(s) => serde_json::from_str(&s).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "relay state file unreadable; starting from all off");
                StateFile::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(LockedState {
            path: path.to_path_buf(),
            _lock: lock,
            state,
        })
    }

    /// Writes the state atomically (temp file + rename).
    pub fn save(&self) -> anyhow::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let mut f = File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(serde_json::to_string_pretty(&self.state)?.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("replacing {}", self.path.display()))?;
        Ok(())
    }
}

/// Reads the relay state without holding the lock afterwards.
pub fn read_state(lab: &Lab) -> StateFile {
    LockedState::open(&lab.state_path())
        .map(|l| l.state)
        .unwrap_or_default()
}

/// Is the board's supply on? Boards without a relay are always powered.
pub fn board_is_on(state: &StateFile, board: &lab_config::Board) -> bool {
    match &board.relay {
        None => true,
        Some(r) => state.relays.get(r).is_some_and(|e| e.on),
    }
}

/// Drives the physical relay (nothing to drive for a simulated one).
pub fn drive(relay: &Relay, on: bool) -> anyhow::Result<()> {
    match &relay.driver {
        RelayDriver::Simulated => Ok(()),
        RelayDriver::Gpio {
            chip,
            line,
            active_low,
        } => drive_gpio(chip, *line, *active_low, on)
            .with_context(|| format!("relay {:?}: GPIO {}:{line}", relay.name, chip.display())),
        RelayDriver::UsbHid {
            vid,
            pid,
            serial,
            channel,
        } => drive_usb_hid(*vid, *pid, serial.as_deref(), *channel, on).with_context(|| {
            format!(
                "relay {:?}: USB-HID {vid:04x}:{pid:04x} channel {channel}",
                relay.name
            )
        }),
    }
}

fn drive_gpio(chip: &Path, line: u32, active_low: bool, on: bool) -> anyhow::Result<()> {
    use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
    let mut chip = Chip::new(chip)?;
    let line = chip.get_line(line)?;
    let mut flags = LineRequestFlags::OUTPUT;
    if active_low {
        flags |= LineRequestFlags::ACTIVE_LOW;
    }
    // The kernel keeps an output's level after the handle closes on common Pi GPIO drivers; the
    // state file lets labctl re-assert it where it does not.
    let handle = line.request(flags, u8::from(on), "labctl")?;
    handle.set_value(u8::from(on))?;
    Ok(())
}

/// The common "USBRelayN" HID boards (V-USB, 16c0:05df): a SET_REPORT feature report with
/// 0xFF (on) or 0xFD (off) and the 1-based channel.
fn drive_usb_hid(
    vid: u16,
    pid: u16,
    serial: Option<&str>,
    channel: u8,
    on: bool,
) -> anyhow::Result<()> {
    use rusb::UsbContext;
    let timeout = Duration::from_millis(500);
    for dev in rusb::Context::new()?.devices()?.iter() {
        let desc = dev.device_descriptor()?;
        if desc.vendor_id() != vid || desc.product_id() != pid {
            continue;
        }
        let handle = dev.open()?;
        if let Some(want) = serial {
            // These boards keep their serial in the feature report, not the USB descriptor.
            let mut buf = [0u8; 8];
            handle.read_control(0xA1, 0x01, 0x0300, 0, &mut buf, timeout)?;
            let got = String::from_utf8_lossy(&buf[..5])
                .trim_end_matches('\0')
                .to_string();
            if got != want {
                continue;
            }
        }
        let _ = handle.set_auto_detach_kernel_driver(true);
        let report = [if on { 0xFF } else { 0xFD }, channel, 0, 0, 0, 0, 0, 0];
        handle.write_control(0x21, 0x09, 0x0300, 0, &report, timeout)?;
        return Ok(());
    }
    bail!("no USB device {vid:04x}:{pid:04x} found")
}

/// Switches a board's relay and records it.
pub fn set_board_power(lab: &Lab, board: &str, on: bool) -> anyhow::Result<&'static str> {
    let b = crate::lab::board_named(lab, board)?;
    let relay_name = b
        .relay
        .as_ref()
        .ok_or_else(|| BadInput(format!("board {board:?} has no relay in the lab file")))?;
    let relay = lab
        .relay(relay_name)
        .ok_or_else(|| BadInput(format!("relay {relay_name:?} is not defined")))?;
    let mut st = LockedState::open(&lab.state_path())?;
    drive(relay, on)?;
    st.state.relays.insert(
        relay.name.clone(),
        RelayEntry {
            on,
            since_ms: clock::unix_ms(),
        },
    );
    st.save()?;
    tracing::info!(board, relay = %relay.name, on, "relay switched");
    Ok(match relay.driver {
        RelayDriver::Simulated => "simulated",
        RelayDriver::Gpio { .. } => "gpio",
        RelayDriver::UsbHid { .. } => "usb-hid",
    })
}

/// `labctl power BOARD on|off|cycle`
pub fn cmd_power(
    lab_path: &Path,
    board: &str,
    action: PowerAction,
    off_time: Duration,
    json: bool,
) -> anyhow::Result<()> {
    let lab = crate::lab::load(lab_path)?;
    // While `labctl serve` runs it owns the relays: ask it.
    let r: PowerResult = match crate::control::serve_pid(&lab) {
        Some(pid) if lab.mqtt.is_some() => {
            let action = match action {
                PowerAction::On => "on",
                PowerAction::Off => "off",
                PowerAction::Cycle => "cycle",
            };
            let v = crate::control::request(
                &lab,
                pid,
                serde_json::json!({"verb": "power", "board": board, "action": action,
                                   "off_time_ms": off_time.as_millis() as u64}),
            )?;
            serde_json::from_value(v)?
        }
        _ => apply_power(&lab, board, action, off_time)?,
    };
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{}: {} (relay {}, {}{})",
            r.board,
            if r.on { "on" } else { "off" },
            r.relay,
            r.driver,
            if r.via_serve {
                ", through labctl serve"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// What a power command did.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PowerResult {
    pub board: String,
    pub relay: String,
    pub driver: String,
    pub on: bool,
    /// Done by a running `labctl serve` on this command's behalf.
    #[serde(default)]
    pub via_serve: bool,
}

/// Switches a board's relay (cycle: off, wait, on) and records it.
pub fn apply_power(
    lab: &Lab,
    board: &str,
    action: PowerAction,
    off_time: Duration,
) -> anyhow::Result<PowerResult> {
    let driver = match action {
        PowerAction::On => set_board_power(lab, board, true)?,
        PowerAction::Off => set_board_power(lab, board, false)?,
        PowerAction::Cycle => {
            set_board_power(lab, board, false)?;
            std::thread::sleep(off_time);
            set_board_power(lab, board, true)?
        }
    };
    Ok(PowerResult {
        board: board.to_string(),
        relay: lab
            .board(board)
            .and_then(|b| b.relay.clone())
            .unwrap_or_default(),
        driver: driver.to_string(),
        on: action != PowerAction::Off,
        via_serve: crate::control::serve_pid(lab) == Some(std::process::id()),
    })
}
