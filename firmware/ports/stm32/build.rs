//! The linker scripts of the chip this image is for (cargo feature `f405`, the default, `f411`
//! or `f746`): the Cortex-M ports' shared build script.

const CHIPS: &[&str] = &["f405", "f411", "f746"];
include!("../cortex-m-start/link.rs");
