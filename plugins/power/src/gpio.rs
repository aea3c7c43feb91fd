//! `driver = "gpio"`: a relay module on a GPIO line, through the character device
//! (`/dev/gpiochipN`, gpio-cdev). Keys: `chip`, `line`, `active_low`.

use abi_stable::std_types::{RNone, ROption, RResult};
use labctl_plugin_api::{guard, ErrorKind, PluginError, PowerSwitch, Step};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Gpio {
    pub chip: String,
    pub line: u32,
    #[serde(default)]
    pub active_low: bool,
}

impl Gpio {
    pub fn from_keys(keys: &serde_json::Value) -> Result<Gpio, PluginError> {
        Gpio::deserialize(keys).map_err(|e| crate::bad_keys("gpio", e))
    }

    fn drive(&self, on: bool) -> Result<(), PluginError> {
        use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
        let io = |what: &str, e: &dyn std::fmt::Display| {
            PluginError::new(
                ErrorKind::Io,
                format!("GPIO {}:{}: {what}: {e}", self.chip, self.line),
            )
        };
        let mut chip = Chip::new(&self.chip).map_err(|e| io("open", &e))?;
        let line = chip.get_line(self.line).map_err(|e| io("line", &e))?;
        let mut flags = LineRequestFlags::OUTPUT;
        if self.active_low {
            flags |= LineRequestFlags::ACTIVE_LOW;
        }
        // The kernel keeps an output's level after the handle closes on common Pi GPIO drivers;
        // the host's state file lets labctl re-assert it where it does not.
        let handle = line
            .request(flags, u8::from(on), "labctl")
            .map_err(|e| io("request", &e))?;
        handle.set_value(u8::from(on)).map_err(|e| io("set", &e))
    }
}

impl PowerSwitch for Gpio {
    fn set(&mut self, on: bool) -> RResult<(), PluginError> {
        guard(|| self.drive(on))
    }

    fn state(&mut self) -> RResult<ROption<bool>, PluginError> {
        // Reading the line back would need it as an input, which would release the relay.
        RResult::ROk(RNone)
    }

    fn plan(&self, on: bool) -> Step {
        let level = on != self.active_low;
        Step::new(
            "power",
            &[],
            &format!(
                "gpio {} line {} {} ({})",
                self.chip,
                self.line,
                if level { "high" } else { "low" },
                if on { "on" } else { "off" }
            ),
        )
    }
}
