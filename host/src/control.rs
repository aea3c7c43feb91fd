//! While `labctl serve` runs it owns the bench: `labctl power` and `labctl boards` send their
//! request to it over MQTT instead of touching relays and sensors themselves. This module holds
//! both ends: the marker file that says a daemon runs (`<db>.serve.json`), the client request,
//! and the daemon's handler.
//!
//! Requests go to `<prefix>/control/<request_id>`; the reply is published retained on
//! `<prefix>/control/<request_id>/reply` (so a client that subscribes late still gets it) and
//! cleared by the client once read.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use lab_config::Lab;
use serde_json::{json, Value};

use crate::{error::Failed, mqtt::Publisher, units::PowerAction};

/// How long a client waits for the daemon's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

fn marker(lab: &Lab) -> PathBuf {
    let mut s = lab.storage_path.as_os_str().to_owned();
    s.push(".serve.json");
    PathBuf::from(s)
}

/// The pid of a `labctl serve` running for this lab, if any (a stale marker is ignored).
pub fn serve_pid(lab: &Lab) -> Option<u32> {
    let text = std::fs::read_to_string(marker(lab)).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let pid = v["pid"].as_u64()? as u32;
    if pid == std::process::id() {
        return Some(pid);
    }
    // SAFETY: signal 0 only checks that the process exists.
    (unsafe { libc::kill(pid as i32, 0) } == 0).then_some(pid)
}

/// Marks this process as the lab's daemon until dropped.
pub struct ServeMarker(PathBuf);

impl ServeMarker {
    pub fn create(lab: &Lab) -> ServeMarker {
        let p = marker(lab);
        let v = json!({"pid": std::process::id(), "since_unix_ms": crate::clock::unix_ms()});
        if let Err(e) = std::fs::write(&p, v.to_string()) {
            tracing::warn!(path = %p.display(), error = %e, "cannot write the serve marker");
        }
        ServeMarker(p)
    }
}

impl Drop for ServeMarker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Sends `request` to the running daemon and returns its reply (an error reply is an error).
pub fn request(lab: &Lab, pid: u32, request: &ControlRequest) -> anyhow::Result<Value> {
    let id = format!("{}-{}", std::process::id(), crate::clock::unix_ms());
    let reply_suffix = format!("control/{id}/reply");
    let prefix = lab
        .mqtt
        .as_ref()
        .map(|m| m.prefix.trim_end_matches('/').to_string())
        .ok_or_else(|| {
            Failed(format!(
                "labctl serve (pid {pid}) runs, but the lab has no [mqtt] to reach it"
            ))
        })?;
    let (mqtt, inbox) =
        Publisher::connect_with_inbox(lab, "ctl", false, vec![format!("{prefix}/{reply_suffix}")])
            .map_err(|e| {
                Failed(format!(
                    "cannot reach labctl serve (pid {pid}) over MQTT: {e}"
                ))
            })?;
    if !mqtt.is_connected() {
        mqtt.close();
        return Err(Failed(format!(
            "labctl serve (pid {pid}) runs, but its MQTT broker ({}) cannot be reached",
            mqtt.describe
        ))
        .into());
    }
    mqtt.publish(
        &format!("control/{id}"),
        false,
        serde_json::to_vec(request)?,
    );
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let reply = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match inbox.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok((_, payload)) if !payload.is_empty() => {
                break serde_json::from_slice::<ControlReply>(&payload)
                    .map_err(|e| Failed(format!("labctl serve sent an unreadable reply: {e}")))?
            }
            Ok(_) => {}
            Err(_) if Instant::now() >= deadline => {
                mqtt.close();
                return Err(Failed(format!(
                    "labctl serve (pid {pid}) did not answer within {} s",
                    REPLY_TIMEOUT.as_secs()
                ))
                .into());
            }
            Err(_) => {}
        }
    };
    // Clear the retained reply.
    mqtt.publish(&reply_suffix, true, vec![]);
    mqtt.close();
    match reply {
        ControlReply::Error(e) => Err(Failed(format!("labctl serve: {e}")).into()),
        ControlReply::Result(v) => Ok(v),
    }
}

/// Boards a job is using right now (name → job id): the daemon does not switch them.
pub type Busy = Arc<Mutex<HashMap<String, String>>>;

/// A request on `<prefix>/control/<id>` from a verb that finds `labctl serve` running.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "verb", rename_all = "lowercase")]
pub enum ControlRequest {
    /// `labctl boards`
    Boards,
    /// `labctl power BOARD on|off|cycle`
    Power {
        board: String,
        action: String,
        #[serde(default)]
        off_time_ms: Option<u64>,
    },
}

/// The reply on `<prefix>/control/<id>/reply`: `{"result": …}` or `{"error": "…"}`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ControlReply {
    Result(Value),
    Error(String),
}

/// The daemon's side: answers one control request.
pub fn handle(
    lab_path: &std::path::Path,
    mqtt: &Publisher,
    busy: &Busy,
    topic: &str,
    payload: &[u8],
) {
    let id = topic.rsplit('/').next().unwrap_or("");
    let result = (|| -> Result<Value, String> {
        // The same limits as jobs: a request from the network is sized before it is read.
        let v = crate::serve::job::check_shape(payload)?;
        let req: ControlRequest =
            serde_json::from_value(v).map_err(|e| format!("not a request: {e}"))?;
        let rt = crate::rig::Runtime::open(lab_path).map_err(|e| format!("{e:#}"))?;
        let busy = busy.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match req {
            ControlRequest::Boards => {
                let rows = crate::boards::collect(&rt, &busy);
                serde_json::to_value(rows).map_err(|e| e.to_string())
            }
            ControlRequest::Power {
                board,
                action,
                off_time_ms,
            } => {
                if let Some(job) = busy.get(&board) {
                    return Err(format!(
                        "board {board:?} is in use by job {job}; try again when it is done"
                    ));
                }
                let action: PowerAction = action.parse()?;
                let off = Duration::from_millis(off_time_ms.unwrap_or(2000).min(600_000));
                crate::relay::apply_power(&rt.lab, &rt.plugins, &board, action, off, true)
                    .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
                    .map_err(|e| format!("{e:#}"))
            }
        }
    })();
    let reply = match result {
        Ok(r) => ControlReply::Result(r),
        Err(e) => ControlReply::Error(e),
    };
    let reply = serde_json::to_string(&reply).unwrap_or_default();
    mqtt.publish(&format!("control/{id}/reply"), true, reply.into_bytes());
}
