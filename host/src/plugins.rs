//! The plugin host: finds plugin libraries, loads them through abi_stable, checks their ABI, and
//! indexes the platforms and sensor chips they serve. A library that cannot be used is recorded
//! with its path and the reason, and loading carries on. Libraries are never unloaded.

use std::path::{Path, PathBuf};

use abi_stable::library::lib_header_from_path;
use abi_stable::library::LibraryError;
use labctl_plugin_api::{
    profile::{Profile, ProfileDoc},
    ChipInfo, PlatformApiRef, PluginModRef, PowerApiRef, SensorApiRef, SensorConfig, ABI_VERSION,
    LIBRARY_PREFIX,
};
use serde::Serialize;

pub struct LoadedPlugin {
    pub name: String,
    pub version: String,
    pub abi_version: u32,
    pub description: String,
    pub path: PathBuf,
    pub platform: Option<PlatformApiRef>,
    pub sensor: Option<SensorApiRef>,
    pub power: Option<PowerApiRef>,
    /// Power drivers served (a relay's `driver`).
    pub drivers: Vec<String>,
    /// The platform's profiles, from its validated profile document.
    pub profiles: Vec<Profile>,
    pub chips: Vec<ChipInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Default)]
pub struct Plugins {
    pub dirs: Vec<PathBuf>,
    pub loaded: Vec<LoadedPlugin>,
    pub rejected: Vec<Rejected>,
}

/// Directory of the running `labctl` executable: default home of plugins and firmware.
pub fn exe_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok())
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

fn is_plugin_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let stem = name.strip_prefix("lib").unwrap_or(name);
    stem.starts_with(LIBRARY_PREFIX) && [".so", ".dylib", ".dll"].iter().any(|e| name.ends_with(e))
}

impl Plugins {
    /// Loads every plugin library in `dirs` (or beside `labctl` when `None`).
    pub fn load(dirs: Option<&[PathBuf]>) -> Plugins {
        let dirs = dirs
            .map(<[PathBuf]>::to_vec)
            .unwrap_or_else(|| vec![exe_dir()]);
        let mut p = Plugins {
            dirs: dirs.clone(),
            ..Default::default()
        };
        for dir in &dirs {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) => {
                    p.rejected.push(Rejected {
                        path: dir.clone(),
                        reason: format!("cannot read plugin directory: {e}"),
                    });
                    continue;
                }
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_plugin_file(p))
                .collect();
            files.sort();
            for f in files {
                match load_one(&f) {
                    Ok(lp) => p.add(lp),
                    Err(reason) => {
                        tracing::warn!(path = %f.display(), %reason, "plugin rejected");
                        p.rejected.push(Rejected { path: f, reason });
                    }
                }
            }
        }
        p
    }

    fn add(&mut self, lp: LoadedPlugin) {
        let clash = self.loaded.iter().find_map(|o| {
            if o.name == lp.name {
                return Some(format!(
                    "a plugin named {:?} is already loaded from {}",
                    lp.name,
                    o.path.display()
                ));
            }
            if let Some(d) = lp.drivers.iter().find(|d| o.drivers.contains(d)) {
                return Some(format!(
                    "power driver {d:?} is already served by {}",
                    o.path.display()
                ));
            }
            // A platform is named after its plugin, so only chips can clash across names.
            lp.chips
                .iter()
                .find(|c| o.chips.iter().any(|oc| oc.name == c.name))
                .map(|c| {
                    format!(
                        "chip {:?} is already served by {}",
                        c.name.as_str(),
                        o.path.display()
                    )
                })
        });
        match clash {
            Some(reason) => self.rejected.push(Rejected {
                path: lp.path,
                reason,
            }),
            None => self.loaded.push(lp),
        }
    }

    pub fn platform(&self, name: &str) -> Option<&LoadedPlugin> {
        self.loaded
            .iter()
            .find(|p| p.platform.is_some() && p.name == name)
    }

    /// The profile a board of `platform` runs. `profile` is one of the platform's own, or
    /// `OWNER/NAME`: another platform's profile run by this one (the virtual platform emulating
    /// a qemu or real board's profile). A foreign profile keeps its memories, clock and currents,
    /// and takes how the running platform reaches and times its boards (console kind, timing
    /// source, emulated) from the running platform's own profiles.
    pub fn profile(&self, platform: &str, profile: &str) -> Option<Profile> {
        let runner = self.platform(platform)?;
        let Some((owner, name)) = profile.split_once('/') else {
            return runner.profiles.iter().find(|p| p.name == profile).cloned();
        };
        let mut p = self
            .platform(owner)?
            .profiles
            .iter()
            .find(|p| p.name == name)?
            .clone();
        if owner != platform {
            let own = runner.profiles.first()?;
            p.console = own.console;
            p.emulated = own.emulated;
            p.timing = own.timing.clone();
            p.timing.counter_hz = p.clock_hz;
            p.description = format!(
                "{} (profile of platform {owner}, run by {platform})",
                p.description
            );
        }
        p.name = profile.to_string();
        Some(p)
    }

    /// The plugin serving power driver `driver`.
    pub fn power_driver(&self, driver: &str) -> Option<(&LoadedPlugin, PowerApiRef)> {
        self.loaded.iter().find_map(|p| {
            let api = p.power?;
            p.drivers.iter().any(|d| d == driver).then_some((p, api))
        })
    }

    pub fn sensor_plugin(&self, chip: &str) -> Option<(&LoadedPlugin, SensorApiRef)> {
        self.loaded.iter().find_map(|p| {
            let api = p.sensor?;
            p.chips
                .iter()
                .any(|c| c.name.as_str() == chip)
                .then_some((p, api))
        })
    }

    /// A short explanation for a missing plugin, naming rejected libraries if any.
    pub fn why_missing(&self, what: &str) -> String {
        let mut s = format!(
            "no loaded plugin provides {what} (searched {})",
            self.dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for r in &self.rejected {
            s.push_str(&format!(
                "; rejected {}: {}",
                r.path.display(),
                first_line(&r.reason)
            ));
        }
        s
    }
}

fn first_line(s: &str) -> &str {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or(s).trim()
}

/// Whether a library file is a whole ELF object: its program and section header tables, and
/// every segment the loader maps, inside the file. A library cut short (an interrupted copy)
/// would otherwise be mapped and crash the process with SIGBUS when a missing page is touched.
fn elf_complete(path: &Path) -> Result<(), String> {
    let b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = b.len() as u64;
    let short = |what: &str| {
        Err(format!(
            "{} is cut short ({len} bytes; its {what} lies beyond the end): an interrupted copy? reinstall it",
            path.display()
        ))
    };
    if b.len() < 64 || &b[..4] != b"\x7fELF" {
        return Err(format!(
            "{} is not a labctl plugin: not an ELF shared library",
            path.display()
        ));
    }
    if b[4] != 2 || b[5] != 1 {
        // Only 64-bit little-endian libraries are built here; others are left to the loader.
        return Ok(());
    }
    let u16_at = |o: usize| u64::from(u16::from_le_bytes([b[o], b[o + 1]]));
    let u64_at = |o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(a)
    };
    let (phoff, shoff) = (u64_at(32), u64_at(40));
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    let (shentsize, shnum) = (u16_at(58), u16_at(60));
    if phoff.saturating_add(phentsize * phnum) > len {
        return short("program header table");
    }
    if shnum > 0 && shoff.saturating_add(shentsize * shnum) > len {
        return short("section header table");
    }
    for i in 0..phnum {
        let h = (phoff + i * phentsize) as usize;
        if h + 56 > b.len() {
            return short("program header table");
        }
        let (kind, offset, filesz) = (
            u32::from_le_bytes([b[h], b[h + 1], b[h + 2], b[h + 3]]),
            u64_at(h + 8),
            u64_at(h + 32),
        );
        // PT_LOAD segments are what the loader maps from the file.
        if kind == 1 && offset.saturating_add(filesz) > len {
            return short("loadable segment");
        }
    }
    Ok(())
}

fn load_one(path: &Path) -> Result<LoadedPlugin, String> {
    elf_complete(path)?;
    let header = lib_header_from_path(path).map_err(|e| {
        format!(
            "not a labctl plugin library: {}",
            e.to_string().trim().replace('\n', " ")
        )
    })?;
    let module = match header.init_root_module::<PluginModRef>() {
        Ok(m) => m,
        Err(LibraryError::AbiInstability(_)) => {
            // Every plugin ABI so far starts its root module with the same `info` function
            // returning the same `PluginInfo`: ask it which ABI the library was built for.
            // SAFETY: only the first field is read, whose layout all ABI versions share.
            let old = unsafe { header.init_root_module_with_unchecked_layout::<PluginModRef>() };
            let built = old
                .ok()
                .map(|m| (m.info())())
                .map(|i| {
                    format!(
                        "plugin {:?} was built for plugin ABI {}",
                        i.name.as_str(),
                        i.abi_version
                    )
                })
                .unwrap_or_else(|| "built against another labctl plugin interface".into());
            return Err(format!(
                "{built}; this labctl needs plugin ABI {ABI_VERSION}: rebuild it against this labctl's labctl-plugin-api"
            ));
        }
        Err(e) => {
            return Err(format!(
                "incompatible plugin interface (built against another labctl plugin API): {}",
                e.to_string().trim().replace('\n', " ")
            ))
        }
    };
    let info = (module.info())();
    if info.abi_version != ABI_VERSION {
        return Err(format!(
            "plugin {:?} was built for plugin ABI {}; this labctl needs plugin ABI {ABI_VERSION}",
            info.name.as_str(),
            info.abi_version
        ));
    }
    let platform = module.platform().into_option();
    let sensor = module.sensor().into_option();
    let power = module.power().into_option();
    if platform.is_none() && sensor.is_none() && power.is_none() {
        return Err(format!(
            "plugin {:?} provides no platform, sensor or power-driver interface",
            info.name.as_str()
        ));
    }
    let profiles = match platform {
        Some(p) => {
            ProfileDoc::parse((p.profiles())().as_str())
                .map_err(|e| format!("plugin {:?}: {e}", info.name.as_str()))?
                .profiles
        }
        None => vec![],
    };
    let chips = sensor.map(|s| (s.chips())().into_vec()).unwrap_or_default();
    let drivers = power
        .map(|p| (p.drivers())().iter().map(|d| d.to_string()).collect())
        .unwrap_or_default();
    Ok(LoadedPlugin {
        name: info.name.to_string(),
        version: info.version.to_string(),
        abi_version: info.abi_version,
        description: info.description.to_string(),
        path: path.to_path_buf(),
        platform,
        sensor,
        power,
        drivers,
        profiles,
        chips,
    })
}

/// The plugin configuration of a lab sensor.
pub fn sensor_config(s: &lab_config::Sensor, rate_hz: f64) -> SensorConfig {
    SensorConfig {
        chip: s.chip.as_str().into(),
        address: s.address,
        channel: s.channel,
        shunt_ohms: s.shunt_ohms,
        max_current_a: s.max_current_a,
        adc_bits: s.adc_bits,
        averaging: s.averaging,
        rate_hz,
        sample_rate_sps: s.sample_rate_sps,
        bipolar: s.bipolar,
    }
}

/// Plugin knowledge for `lab_config`'s checks.
pub struct Catalog<'a>(pub &'a Plugins);

impl lab_config::Catalog for Catalog<'_> {
    fn chips(&self) -> Vec<String> {
        self.0
            .loaded
            .iter()
            .flat_map(|p| p.chips.iter().map(|c| c.name.to_string()))
            .collect()
    }

    fn sensor_timing(&self, s: &lab_config::Sensor) -> Result<lab_config::SensorTiming, String> {
        let (_, api) = self
            .0
            .sensor_plugin(&s.chip)
            .ok_or_else(|| self.0.why_missing(&format!("chip {:?}", s.chip)))?;
        let cfg = sensor_config(s, s.rate_hz);
        match (api.timing())(abi_stable::std_types::RSlice::from_slice(
            std::slice::from_ref(&cfg),
        ))
        .into_result()
        {
            Ok(t) => Ok(lab_config::SensorTiming {
                min_period_us: t.min_period_us,
                bus_bits_per_sample: t.bus_bits_per_sample,
            }),
            Err(e) => Err(e.message.to_string()),
        }
    }

    fn platform_profiles(&self, platform: &str) -> Option<Vec<String>> {
        self.0
            .platform(platform)
            .map(|p| p.profiles.iter().map(|b| b.name.to_string()).collect())
    }

    fn profile_needs_console(&self, platform: &str, profile: &str) -> Option<bool> {
        self.0
            .profile(platform, profile)
            .map(|p| p.console == labctl_plugin_api::profile::ConsoleKind::Device)
    }
}

#[derive(Serialize)]
struct PluginRow<'a> {
    name: &'a str,
    kind: Vec<&'static str>,
    version: &'a str,
    abi_version: u32,
    description: &'a str,
    file: String,
    platforms: Vec<String>,
    profiles: Vec<String>,
    chips: Vec<String>,
    drivers: Vec<String>,
}

/// `labctl plugins`
pub fn cmd_plugins(lab: Option<&lab_config::Lab>, json: bool) -> anyhow::Result<()> {
    let plugins = Plugins::load(lab.and_then(|l| l.plugin_dirs.as_deref()));
    let rows: Vec<PluginRow> = plugins
        .loaded
        .iter()
        .map(|p| PluginRow {
            name: &p.name,
            kind: [
                p.platform.is_some().then_some("platform"),
                p.sensor.is_some().then_some("power-sensor"),
                p.power.is_some().then_some("power-driver"),
            ]
            .into_iter()
            .flatten()
            .collect(),
            version: &p.version,
            abi_version: p.abi_version,
            description: &p.description,
            file: p.path.display().to_string(),
            platforms: if p.platform.is_some() {
                vec![p.name.clone()]
            } else {
                vec![]
            },
            profiles: p.profiles.iter().map(|b| b.name.to_string()).collect(),
            chips: p.chips.iter().map(|c| c.name.to_string()).collect(),
            drivers: p.drivers.clone(),
        })
        .collect();
    if json {
        let v = serde_json::json!({
            "abi_version": ABI_VERSION,
            "dirs": plugins.dirs,
            "loaded": rows,
            "rejected": plugins.rejected,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "plugin ABI {ABI_VERSION}; searched: {}",
        plugins
            .dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "{:<10} {:<22} {:<8} {:<4} SERVES",
        "NAME", "KIND", "VERSION", "ABI"
    );
    for r in &rows {
        let serves = if !r.drivers.is_empty() {
            format!("power drivers: {}", r.drivers.join(", "))
        } else if r.chips.is_empty() {
            format!("platform {}: {}", r.name, r.profiles.join(", "))
        } else {
            format!("chips: {}", r.chips.join(", "))
        };
        println!(
            "{:<10} {:<22} {:<8} {:<4} {serves}",
            r.name,
            r.kind.join("+"),
            r.version,
            r.abi_version
        );
        println!("           {}", r.description);
        println!("           {}", r.file);
    }
    for r in &plugins.rejected {
        println!("REJECTED   {}\n           {}", r.path.display(), r.reason);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_file_names() {
        assert!(is_plugin_file(Path::new("/x/liblabctl_sensor_ina219.so")));
        assert!(is_plugin_file(Path::new("labctl_virtual.dll")));
        assert!(!is_plugin_file(Path::new("/x/libduckdb.so")));
        assert!(!is_plugin_file(Path::new("/x/liblabctl_x.rlib")));
    }
}
