//! Puts the chip's linker script (`link-<chip>.x`, which includes `sections.x`) where the linker
//! finds it, whatever directory cargo runs from. The chip is the cargo feature `f405`, `f411` or `f746`.

use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let chip = if env::var_os("CARGO_FEATURE_F746").is_some() {
        "f746"
    } else if env::var_os("CARGO_FEATURE_F411").is_some() {
        "f411"
    } else {
        "f405"
    };
    let memory = format!("link-{chip}.x");
    fs::write(
        out.join("link.x"),
        fs::read(&memory).expect("the chip's linker script"),
    )
    .expect("write link.x");
    fs::write(out.join("sections.x"), include_bytes!("sections.x")).expect("write sections.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg=-Tlink.x");
    for f in ["link-f405.x", "link-f411.x", "link-f746.x", "sections.x"] {
        println!("cargo:rerun-if-changed={f}");
    }
}
