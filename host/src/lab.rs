//! The lab file as every layer sees it: loading it (mistakes are bad input), and finding its
//! boards and sensors by name with errors that list what the lab has.

use std::path::Path;

use lab_config::{Lab, Sensor};

use crate::error::BadInput;

/// Loads and validates a lab file; errors are bad input (exit 2).
/// The lab's board called `name`, or a bad-input error that lists the boards there are.
pub fn board_named<'a>(lab: &'a Lab, name: &str) -> Result<&'a lab_config::Board, BadInput> {
    lab.board(name).ok_or_else(|| {
        unknown(
            lab,
            "board",
            name,
            lab.boards.iter().map(|b| b.name.as_str()),
        )
    })
}

/// The lab's sensor called `name`, or a bad-input error that lists the sensors there are.
pub fn sensor_named<'a>(lab: &'a Lab, name: &str) -> Result<&'a Sensor, BadInput> {
    lab.sensor(name).ok_or_else(|| {
        unknown(
            lab,
            "sensor",
            name,
            lab.sensors.iter().map(|s| s.name.as_str()),
        )
    })
}

fn unknown<'a>(
    lab: &Lab,
    kind: &str,
    name: &str,
    known: impl Iterator<Item = &'a str>,
) -> BadInput {
    BadInput(format!(
        "no {kind} named {name:?} in {} ({kind}s: {})",
        lab.file.display(),
        known.collect::<Vec<_>>().join(", ")
    ))
}

pub fn load(path: &Path) -> anyhow::Result<Lab> {
    lab_config::load(path).map_err(|e| BadInput(e.to_string()).into())
}

/// For verbs that work without a lab: `None` when the (default) lab file does not exist.
pub fn load_optional(path: &Path) -> anyhow::Result<Option<Lab>> {
    if !path.exists() {
        return Ok(None);
    }
    load(path).map(Some)
}
