//! `driver = "simulated"`: a relay that switches nothing. Its state lives in the host's state
//! file, so it keeps it between commands and tests can observe it.

use abi_stable::std_types::{RNone, ROption, RResult};
use labctl_plugin_api::{PluginError, PowerSwitch, Step};

pub struct Simulated;

impl PowerSwitch for Simulated {
    fn set(&mut self, _on: bool) -> RResult<(), PluginError> {
        RResult::ROk(())
    }

    fn state(&mut self) -> RResult<ROption<bool>, PluginError> {
        RResult::ROk(RNone)
    }

    fn plan(&self, on: bool) -> Step {
        Step::new(
            "power",
            &[],
            &format!("simulated relay {}", if on { "on" } else { "off" }),
        )
    }
}
