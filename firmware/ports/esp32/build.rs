//! Puts the chip's linker script where the linker finds it, whatever directory cargo runs from.

use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    fs::write(out.join("link.x"), include_bytes!("link-esp32c3.x")).expect("write link.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg=-Tlink.x");
    println!("cargo:rerun-if-changed=link-esp32c3.x");
}
