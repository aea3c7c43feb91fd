//! The `serial` platform plugin: a board you flashed yourself that already runs the profiling
//! firmware, reached over its serial console (`serial = "/dev/ttyACM0"` or `usb_serial`). There is
//! nothing to start or flash here: the host powers the board through its relay (if it has one),
//! opens and locks the console, handshakes and profiles. The `generic` profile knows nothing of
//! the board's memory: the board's `READY` frame says how much RAM and flash it has, and the host
//! fits the model after the handshake.

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RNone, ROption, RResult, RString, RVec},
};
use labctl_plugin_api::{
    guard,
    profile::{ConsoleKind, Profile, Timing, TimingSource},
    BoardSession, BoardSessionBox, BoardSession_TO, BoardSpec, ErrorKind, PluginError,
    RailControlBox, Step,
};

labctl_plugin_api::platform_plugin!(
    "serial",
    "boards flashed by hand that run the profiling firmware, on a serial console",
    profile_table,
    open_board,
);

/// The one profile: real hardware whose memory is what it reports in READY.
pub fn profile_table() -> Vec<Profile> {
    vec![Profile {
        name: "generic".into(),
        description: "any board running the profiling firmware; memory as it reports in READY"
            .into(),
        cpu: "as reported".into(),
        clock_hz: 0,
        memories: vec![],
        supply_mv: 5000.0,
        idle_ma: 0.0,
        active_ma: 0.0,
        usb: vec![],
        timing: Timing {
            source: TimingSource::Board,
            counter_hz: 0,
            note: String::new(),
        },
        emulated: false,
        console: ConsoleKind::Device,
        banner: None,
    }]
}

/// What bring-up does for a hand-flashed board: nothing of its own.
fn steps() -> RVec<Step> {
    RVec::from(vec![Step::new(
        "flash",
        &[],
        "flashed by hand: labctl checks the model it holds (CRC-32) at the handshake",
    )])
}

/// A hand-flashed board: its power is the host's relay, its console the host's; nothing to do.
struct SerialBoard;

impl BoardSession for SerialBoard {
    fn plan(&self) -> RVec<Step> {
        steps()
    }

    fn bootstrap(&mut self) -> RResult<RVec<Step>, PluginError> {
        RResult::ROk(steps())
    }

    fn console_path(&mut self) -> ROption<RString> {
        RNone
    }

    fn reset(&mut self) -> RResult<Step, PluginError> {
        RResult::RErr(PluginError::new(
            ErrorKind::Unsupported,
            "the serial platform has no probe; use `reset = \"dtr\"`, `\"rts\"` or `\"power-cycle\"`",
        ))
    }

    fn power_off(&mut self) -> RResult<(), PluginError> {
        RResult::ROk(())
    }

    fn check(&mut self) -> ROption<RString> {
        // A real board's death shows on its console (closed, silent); the host watches that.
        RNone
    }
}

extern "C" fn open_board(
    spec: &BoardSpec,
    _rail: ROption<RailControlBox>,
) -> RResult<BoardSessionBox, PluginError> {
    guard(|| {
        // Any profile handed over is fine: a hand-flashed board needs nothing of it here.
        spec.profile()?;
        if spec.serial.is_empty() {
            return Err(PluginError::new(
                ErrorKind::InvalidConfig,
                "a serial board needs its console: `serial` or `usb_serial` in the lab file",
            ));
        }
        Ok(BoardSession_TO::from_value(SerialBoard, TD_Opaque))
    })
}
