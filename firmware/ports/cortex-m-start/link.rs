// The build script of every Cortex-M port, included by each port's build.rs after it names its
// chips (`const CHIPS: &[&str]`, the default first): puts the chip's linker script
// (`link-<chip>.x`, chosen by the cargo feature of the chip's name) and the shared
// `sections.x` where the linker finds them, whatever directory cargo runs from.

fn main() {
    use std::{env, fs, path::PathBuf};
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let chip = CHIPS
        .iter()
        .skip(1)
        .find(|c| env::var_os(format!("CARGO_FEATURE_{}", c.to_uppercase())).is_some())
        .unwrap_or(&CHIPS[0]);
    let memory = format!("link-{chip}.x");
    fs::write(
        out.join("link.x"),
        fs::read(&memory).expect("the chip's linker script"),
    )
    .expect("write link.x");
    fs::write(
        out.join("sections.x"),
        include_bytes!("sections.x"),
    )
    .expect("write sections.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg=-Tlink.x");
    for c in CHIPS {
        println!("cargo:rerun-if-changed=link-{c}.x");
    }
    println!("cargo:rerun-if-changed=../cortex-m-start/sections.x");
}
