//! The linker scripts of the chip this image is for (cargo feature `f405`, the default, `f411`,
//! `f746` or `h743`): the Cortex-M ports' shared build script.

const CHIPS: &[&str] = &["f405", "f411", "f746", "h743"];
include!("../cortex-m-start/link.rs");
