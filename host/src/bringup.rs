//! What every verb that brings a board up needs: the board's profile and platform, the
//! [`BoardSpec`] the platform is handed, and an opened (not yet started) board session.

use std::path::Path;

use abi_stable::std_types::RNone;
use lab_config::Board;
use labctl_plugin_api::{profile::Profile, BoardSessionBox, BoardSpec, PlatformApiRef};

use crate::{console, rig::Runtime};

/// A board's platform interface and profile, or why it has none.
pub fn platform_of(rt: &Runtime, b: &Board) -> Result<(PlatformApiRef, Profile), String> {
    if let Some(f) = rt.board_faults.get(&b.name) {
        return Err(f.clone());
    }
    let plugin = rt.plugins.platform(&b.platform).ok_or_else(|| {
        rt.plugins
            .why_missing(&format!("platform {:?}", b.platform))
    })?;
    let profile = rt
        .plugins
        .profile(&b.platform, &b.profile)
        .ok_or_else(|| format!("platform {:?} has no profile {:?}", b.platform, b.profile))?;
    let api = plugin
        .platform
        .ok_or_else(|| format!("plugin {:?} is not a platform", b.platform))?;
    Ok((api, profile))
}

/// The spec a platform is handed for `board`: its profile whole, the console's path (or a
/// placeholder where none is open), firmware, model and context.
pub fn spec(
    b: &Board,
    profile: &Profile,
    serial: &str,
    firmware: &Path,
    model: &Path,
    ctx: u32,
) -> BoardSpec {
    BoardSpec {
        board: b.name.as_str().into(),
        profile: profile.to_json().into(),
        serial: serial.into(),
        baud: console::baud(b),
        firmware: firmware.display().to_string().into(),
        model: model.display().to_string().into(),
        ctx_tokens: ctx,
        options: options(b).into(),
    }
}

/// The board's platform-specific keys for [`BoardSpec::options`].
fn options(b: &Board) -> String {
    let mut o = serde_json::Map::new();
    if let Some(ssh) = &b.ssh {
        o.insert("ssh".into(), serde_json::json!(ssh));
    }
    if let Some(flash) = &b.flash {
        o.insert("flash".into(), serde_json::json!(flash));
    }
    serde_json::Value::Object(o).to_string()
}

/// Opens a board session (the platform starts nothing until `bootstrap`). Simulated rails are
/// not attached: the verbs that use this measure nothing.
pub fn open_session(api: PlatformApiRef, spec: &BoardSpec) -> Result<BoardSessionBox, String> {
    (api.open_board())(spec, RNone)
        .into_result()
        .map_err(|e| e.message.to_string())
}
