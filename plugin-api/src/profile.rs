//! Board profiles as a versioned data document. A platform plugin publishes its profiles as one
//! JSON [`ProfileDoc`]; the host validates it ([`ProfileDoc::parse`]) and hands the profile a
//! board uses, whole, to the platform that runs the board. New facts about boards become new
//! fields here (with defaults, so older documents still read), not new ABI.

use serde::{Deserialize, Serialize};

/// The schema this crate writes and reads. A document with a newer schema is refused by name.
pub const PROFILE_SCHEMA: u32 = 1;

/// Everything a platform plugin knows about its boards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileDoc {
    pub schema: u32,
    pub profiles: Vec<Profile>,
}

/// One board or chip profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub cpu: String,
    /// Core clock; 0 = unknown until the board reports it (`READY clock_hz`).
    pub clock_hz: u64,
    /// The board's memories. Empty = unknown until the board reports its RAM and flash in
    /// `READY` (the `serial` platform's `generic` profile).
    #[serde(default)]
    pub memories: Vec<Memory>,
    /// Supply voltage the board is normally powered at.
    pub supply_mv: f64,
    /// Currents of the board's rail model (emulated boards), or typical figures (real ones).
    pub idle_ma: f64,
    pub active_ma: f64,
    /// USB identities the board shows up with: its console and its debug probe.
    #[serde(default)]
    pub usb: Vec<UsbIdent>,
    /// What times the board's tokens.
    pub timing: Timing,
    /// True when the board is an emulation (results are then `simulated`).
    pub emulated: bool,
    /// How the host reaches the board's console.
    pub console: ConsoleKind,
    /// The `platform` the board's firmware names in `READY` after flashing; another answer
    /// means a wrong image or another board on the console, and the board is faulted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banner: Option<String>,
}

/// A kind of memory with its size and speed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub kind: MemoryKind,
    pub bytes: u64,
    /// Clock of the memory's interface where it matters (QSPI flash, PSRAM); 0 = core speed.
    #[serde(default)]
    pub clock_hz: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryKind {
    /// On-chip SRAM: the firmware's stack, arena and KV cache.
    Sram,
    /// External PSRAM: usable as RAM, slower.
    Psram,
    /// Flash the model and firmware live in.
    Flash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsbRole {
    /// The board's serial console (CDC-ACM, a USB-UART bridge).
    Console,
    /// A debug probe (ST-LINK, CMSIS-DAP, ESP USB-JTAG).
    Probe,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsbIdent {
    pub vid: u16,
    pub pid: u16,
    pub role: UsbRole,
}

/// What the `cycles` column and the token times of a board's runs mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub source: TimingSource,
    /// The rate of the board's counter (cycles per second), where it is fixed.
    #[serde(default)]
    pub counter_hz: u64,
    /// One line for `runs.timing_source`.
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimingSource {
    /// An emulated board on the host CPU: host time, scaled to the profile's clock.
    HostCpu,
    /// An emulator counting instructions (QEMU `-icount`): deterministic, not silicon cycles.
    EmulatedCycles,
    /// A real board's own cycle counter.
    Board,
}

impl TimingSource {
    pub fn name(self) -> &'static str {
        match self {
            TimingSource::HostCpu => "host-cpu",
            TimingSource::EmulatedCycles => "emulated-cycles",
            TimingSource::Board => "board",
        }
    }
}

/// How the host reaches the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleKind {
    /// The host makes a pseudo-terminal and the platform attaches the emulated board to it.
    Pty,
    /// A real serial device the lab file names (`serial` or `usb_serial`).
    Device,
    /// The emulator makes its own serial device (QEMU's `-serial pty`) and the session reports
    /// its path after bootstrap; the host opens it by name, exactly as it opens a real device.
    Emulator,
    /// A real board reached over the platform's own connection (an SSH channel to a
    /// single-board computer): the host makes a pseudo-terminal, as for [`ConsoleKind::Pty`],
    /// and the platform joins the connection to it.
    Channel,
}

impl Profile {
    fn bytes(&self, kind: MemoryKind) -> u64 {
        self.memories
            .iter()
            .filter(|m| m.kind == kind)
            .map(|m| m.bytes)
            .sum()
    }
    pub fn sram_bytes(&self) -> u64 {
        self.bytes(MemoryKind::Sram)
    }
    pub fn psram_bytes(&self) -> u64 {
        self.bytes(MemoryKind::Psram)
    }
    pub fn flash_bytes(&self) -> u64 {
        self.bytes(MemoryKind::Flash)
    }
    /// Whether the profile knows the board's memory (else the board's `READY` tells).
    pub fn knows_memory(&self) -> bool {
        self.sram_bytes() > 0
    }
    /// `runs.timing_source`: the source, and the note after a colon.
    pub fn timing_label(&self) -> String {
        match self.timing.note.as_str() {
            "" => self.timing.source.name().to_string(),
            n => format!("{}: {n}", self.timing.source.name()),
        }
    }
    /// A copy with the memories a board reported (`READY ram= flash=`).
    pub fn with_reported(&self, ram: u64, flash: u64) -> Profile {
        let mut p = self.clone();
        p.memories = vec![
            Memory {
                kind: MemoryKind::Sram,
                bytes: ram,
                clock_hz: 0,
            },
            Memory {
                kind: MemoryKind::Flash,
                bytes: flash,
                clock_hz: 0,
            },
        ];
        p
    }
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a profile serializes")
    }
}

/// Shorthand for plugins: SRAM, PSRAM and flash sizes in KiB (PSRAM/flash 0 = none).
pub fn memories(sram_kib: u64, psram_kib: u64, flash_kib: u64) -> Vec<Memory> {
    [
        (MemoryKind::Sram, sram_kib),
        (MemoryKind::Psram, psram_kib),
        (MemoryKind::Flash, flash_kib),
    ]
    .into_iter()
    .filter(|(_, k)| *k > 0)
    .map(|(kind, k)| Memory {
        kind,
        bytes: k * 1024,
        clock_hz: 0,
    })
    .collect()
}

/// A real board on its own serial console, flashed by its platform and answering as `banner`,
/// timed by its own counter (`counter`: one line on what counts, e.g. "SysTick on the core
/// clock"). Currents are not given: a board's draw depends on its regulator and LEDs, so
/// measure it with a sensor.
pub struct Silicon<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub cpu: &'a str,
    pub clock_hz: u64,
    /// SRAM, PSRAM and flash in KiB.
    pub kib: (u64, u64, u64),
    pub usb: Vec<UsbIdent>,
    pub banner: &'a str,
    pub counter: &'a str,
}

impl Silicon<'_> {
    pub fn profile(self) -> Profile {
        Profile {
            name: self.name.into(),
            description: self.description.into(),
            cpu: self.cpu.into(),
            clock_hz: self.clock_hz,
            memories: memories(self.kib.0, self.kib.1, self.kib.2),
            supply_mv: 3300.0,
            idle_ma: 0.0,
            active_ma: 0.0,
            usb: self.usb,
            timing: Timing {
                source: TimingSource::Board,
                counter_hz: self.clock_hz,
                note: self.counter.into(),
            },
            emulated: false,
            console: ConsoleKind::Device,
            banner: Some(self.banner.into()),
        }
    }
}

/// USB identities with one role each.
pub fn usb(ids: &[(u16, u16, UsbRole)]) -> Vec<UsbIdent> {
    ids.iter()
        .map(|&(vid, pid, role)| UsbIdent { vid, pid, role })
        .collect()
}

impl ProfileDoc {
    pub fn new(profiles: Vec<Profile>) -> ProfileDoc {
        ProfileDoc {
            schema: PROFILE_SCHEMA,
            profiles,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a profile document serializes")
    }

    /// Reads and checks a document: the schema is one this crate reads, names are present and
    /// unique, an emulated board's console is a pty and a real one's a device (or the platform's
    /// channel), and an emulated
    /// board states its RAM.
    pub fn parse(json: &str) -> Result<ProfileDoc, String> {
        let doc: ProfileDoc =
            serde_json::from_str(json).map_err(|e| format!("profile document: {e}"))?;
        if doc.schema != PROFILE_SCHEMA {
            return Err(format!(
                "profile document schema {}; this labctl reads schema {PROFILE_SCHEMA}",
                doc.schema
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for p in &doc.profiles {
            if p.name.trim().is_empty() {
                return Err("a profile without a name".into());
            }
            if !seen.insert(p.name.as_str()) {
                return Err(format!("profile {:?} twice", p.name));
            }
            match (p.emulated, p.console) {
                (true, ConsoleKind::Device | ConsoleKind::Channel)
                | (false, ConsoleKind::Emulator) => {
                    return Err(format!(
                        "profile {:?}: only an emulated board's console is a pty or the emulator's, only a real one's a device",
                        p.name
                    ))
                }
                (false, ConsoleKind::Pty) => {
                    return Err(format!(
                        "profile {:?}: a real board's console is a device or the platform's channel",
                        p.name
                    ))
                }
                _ => {}
            }
            if p.emulated && !p.knows_memory() {
                return Err(format!(
                    "profile {:?}: an emulated board needs its SRAM size",
                    p.name
                ));
            }
            if !(p.supply_mv.is_finite() && p.idle_ma.is_finite() && p.active_ma.is_finite()) {
                return Err(format!(
                    "profile {:?}: currents and voltage are numbers",
                    p.name
                ));
            }
        }
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(name: &str) -> Profile {
        Profile {
            name: name.into(),
            description: "d".into(),
            cpu: "Cortex-M4F".into(),
            clock_hz: 168_000_000,
            memories: memories(192, 0, 1024),
            supply_mv: 5000.0,
            idle_ma: 30.0,
            active_ma: 90.0,
            usb: vec![],
            timing: Timing {
                source: TimingSource::HostCpu,
                counter_hz: 0,
                note: "n".into(),
            },
            emulated: true,
            console: ConsoleKind::Pty,
            banner: None,
        }
    }

    #[test]
    fn a_document_round_trips_and_is_checked() {
        let doc = ProfileDoc::new(vec![board("a"), board("b")]);
        let back = ProfileDoc::parse(&doc.to_json()).unwrap();
        assert_eq!(back, doc);
        assert_eq!(back.profiles[0].sram_bytes(), 192 * 1024);
        assert_eq!(back.profiles[0].timing_label(), "host-cpu: n");
        let twice = ProfileDoc::new(vec![board("a"), board("a")]);
        assert!(ProfileDoc::parse(&twice.to_json())
            .unwrap_err()
            .contains("twice"));
        let mut newer = doc.clone();
        newer.schema = 2;
        assert!(ProfileDoc::parse(&newer.to_json())
            .unwrap_err()
            .contains("schema 2"));
        let mut real = board("r");
        real.emulated = false;
        assert!(ProfileDoc::parse(&ProfileDoc::new(vec![real]).to_json())
            .unwrap_err()
            .contains("device"));
    }

    #[test]
    fn unknown_fields_of_a_newer_plugin_are_ignored() {
        let mut v: serde_json::Value =
            serde_json::from_str(&ProfileDoc::new(vec![board("a")]).to_json()).unwrap();
        v["profiles"][0]["cache_kib"] = 32.into();
        assert!(ProfileDoc::parse(&v.to_string()).is_ok());
    }
}
