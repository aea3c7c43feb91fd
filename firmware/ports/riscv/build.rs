//! Puts the chip's linker script (cargo feature `k210`, the default, or `bl602`) where the
//! linker finds it, whatever directory cargo runs from.

use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let script: &[u8] = if env::var_os("CARGO_FEATURE_BL602").is_some() {
        include_bytes!("link-bl602.x")
    } else {
        include_bytes!("link-k210.x")
    };
    fs::write(out.join("link.x"), script).expect("write link.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg=-Tlink.x");
    println!("cargo:rerun-if-changed=link-k210.x");
    println!("cargo:rerun-if-changed=link-bl602.x");
}
