//! The linker scripts of the chip this image is for (cargo feature `rp2040`, the default, or
//! `rp2350`): the Cortex-M ports' shared build script.

const CHIPS: &[&str] = &["rp2040", "rp2350"];
include!("../cortex-m-start/link.rs");
