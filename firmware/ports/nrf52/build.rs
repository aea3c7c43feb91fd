//! The linker scripts of the nRF52840: the Cortex-M ports' shared build script.

const CHIPS: &[&str] = &["nrf52840"];
include!("../cortex-m-start/link.rs");
