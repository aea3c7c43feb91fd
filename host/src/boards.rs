//! The state of each configured board with its platform plugin and profile, relay state,
//! sensor health (one test read through the sensor's plugin) and USB presence (rusb, matched
//! against the VID/PIDs its platform plugin declares).

use serde::{Deserialize, Serialize};

use crate::{
    relay,
    rig::{Rig, Runtime},
};

#[derive(Serialize, Deserialize)]
pub struct BoardRow {
    board: String,
    platform: String,
    profile: String,
    fault: Option<String>,
    relay: Option<String>,
    power: String,
    sensor: Option<String>,
    sensor_health: String,
    reading: Option<Reading>,
    usb: String,
    simulated: bool,
    /// Out of service after a hang nothing cured: why, and how to release it.
    #[serde(default)]
    quarantined: Option<String>,
    /// Of the board's last (up to) 20 finished runs, how many were `failed` or `error`.
    #[serde(default)]
    flakiness: Option<Flakiness>,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
struct Flakiness {
    runs: i64,
    not_ok: i64,
    rate: f64,
}

/// Each board's flakiness from the results database (none when it cannot be read now: a run
/// holds it, or there is none yet).
fn flakiness(rt: &Runtime) -> std::collections::HashMap<String, Flakiness> {
    let Ok(c) = crate::results::open_read_only(&rt.lab.storage_path, false) else {
        return Default::default();
    };
    let q = "SELECT board, count(*), count(*) FILTER (WHERE status IN ('failed', 'error')) FROM \
             (SELECT board, status, row_number() OVER (PARTITION BY board ORDER BY started_at DESC) AS n \
              FROM runs WHERE status <> 'running') WHERE n <= 20 GROUP BY board";
    let Ok(mut st) = c.prepare(q) else {
        return Default::default();
    };
    st.query_map([], |r| {
        let (runs, not_ok): (i64, i64) = (r.get(1)?, r.get(2)?);
        Ok((
            r.get::<_, String>(0)?,
            Flakiness {
                runs,
                not_ok,
                rate: not_ok as f64 / runs.max(1) as f64,
            },
        ))
    })
    .map(|rows| rows.filter_map(Result::ok).collect())
    .unwrap_or_default()
}

#[derive(Serialize, Deserialize)]
struct Reading {
    bus_mv: f64,
    current_ma: f64,
    power_mw: f64,
}

/// VID:PID pairs present on the USB buses, or the reason they cannot be listed.
fn usb_ids() -> Result<Vec<(u16, u16)>, String> {
    use rusb::UsbContext;
    // An explicit context: the global one panics where libusb cannot initialise (no USB at all).
    let list = rusb::Context::new()
        .and_then(|c| c.devices())
        .map_err(|e| format!("cannot list USB devices: {e}"))?;
    Ok(list
        .iter()
        .filter_map(|d| d.device_descriptor().ok())
        .map(|d| (d.vendor_id(), d.product_id()))
        .collect())
}

/// Every board's state; boards in `busy` (board → job) are not test-read.
pub fn collect(rt: &Runtime, busy: &std::collections::HashMap<String, String>) -> Vec<BoardRow> {
    let state = relay::read_state(&rt.lab);
    let mut rig = Rig::new(rt);
    let usb = usb_ids();
    let flaky = flakiness(rt);
    let mut rows = vec![];
    for b in &rt.lab.boards {
        let profile = rt.plugins.profile(&b.platform, &b.profile);
        let on = relay::board_is_on(&state, b);
        let (health, reading, sim) = match b.sensor.as_ref().and_then(|s| rt.lab.sensor(s)) {
            None => ("no sensor".to_string(), None, false),
            Some(s) if busy.contains_key(&b.name) => (
                format!("in use by job {}", busy[&b.name]),
                None,
                rt.sensor_is_simulated(s),
            ),
            Some(s) => {
                let sim = rt.sensor_is_simulated(s);
                match rig.open_sensor(rt, s, s.rate_hz) {
                    Err(e) => (format!("fault: {e}"), None, sim),
                    Ok(mut dev) => {
                        // The chip needs one conversion after configuration before its registers
                        // hold a measurement.
                        std::thread::sleep(std::time::Duration::from_millis(150));
                        // One channel per lab sensor today: its reading is the first.
                        match dev.self_test().into_result().and_then(|v| {
                            v.into_iter().next().ok_or_else(|| {
                                labctl_plugin_api::PluginError::new(
                                    labctl_plugin_api::ErrorKind::BadData,
                                    "the sensor returned no channel",
                                )
                            })
                        }) {
                            Ok(r) => (
                                if r.overflow {
                                    "ok (overflow flagged)"
                                } else {
                                    "ok"
                                }
                                .to_string(),
                                Some(Reading {
                                    bus_mv: r.bus_mv,
                                    current_ma: r.current_ma,
                                    power_mw: r.power_mw,
                                }),
                                sim,
                            ),
                            Err(e) => (format!("fault: {}", e.message), None, sim),
                        }
                    }
                }
            }
        };
        let usb_state = match (profile.as_ref(), &usb) {
            (Some(p), _) if p.emulated => "emulated (no USB)".to_string(),
            (Some(p), Ok(ids)) => {
                let found: Vec<String> = p
                    .usb
                    .iter()
                    .filter(|u| ids.contains(&(u.vid, u.pid)))
                    .map(|u| format!("{:04x}:{:04x}", u.vid, u.pid))
                    .collect();
                if found.is_empty() {
                    "absent".into()
                } else {
                    format!("present ({})", found.join(", "))
                }
            }
            (Some(_), Err(e)) => format!("unknown: {e}"),
            (None, _) => "unknown (no platform plugin)".into(),
        };
        rows.push(BoardRow {
            board: b.name.clone(),
            platform: b.platform.clone(),
            profile: b.profile.clone(),
            fault: rt.board_faults.get(&b.name).cloned(),
            relay: b.relay.clone(),
            power: if b.relay.is_none() {
                "always on"
            } else if on {
                "on"
            } else {
                "off"
            }
            .to_string(),
            sensor: b.sensor.clone(),
            sensor_health: health,
            reading,
            usb: usb_state,
            simulated: sim || profile.as_ref().is_some_and(|p| p.emulated),
            quarantined: crate::quarantine::of(&rt.lab, &b.name)
                .map(|q| crate::quarantine::why(&b.name, &q)),
            flakiness: flaky.get(&b.name).copied(),
        });
    }
    rows
}

pub fn print(rows: &[BoardRow], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(rows)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<18} {:<9} {:<14} {:<30} {:<11} USB",
        "BOARD", "PLATFORM/PROFILE", "POWER", "SENSOR", "HEALTH", "FLAKY"
    );
    for r in rows {
        let health = match &r.reading {
            Some(x) => format!(
                "{} {:.3} V {:.2} mA",
                r.sensor_health,
                x.bus_mv / 1000.0,
                x.current_ma
            ),
            None => r.sensor_health.clone(),
        };
        let flaky = r
            .flakiness
            .map(|f| format!("{}/{} runs", f.not_ok, f.runs))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<16} {:<18} {:<9} {:<14} {:<30} {:<11} {}",
            r.board,
            format!("{}/{}", r.platform, r.profile),
            r.power,
            r.sensor.as_deref().unwrap_or("-"),
            health,
            flaky,
            r.usb
        );
        if let Some(f) = &r.fault {
            println!("  fault: {f}");
        }
        if let Some(q) = &r.quarantined {
            println!("  QUARANTINED: {q}");
        }
    }
    Ok(())
}
