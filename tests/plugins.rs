//! `labctl plugins` loads the real plugin libraries built in the workspace, and rejects an
//! incompatible library (another plugin ABI), a foreign shared library and a file that is not a
//! library at all, each with its path and reason, while carrying on with the rest.

use labctl_integration_tests::{labctl, plugin_lib, run, text};
use serde_json::Value;

#[test]
fn default_plugins_beside_labctl_load() {
    let o = run(&["plugins", "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    let names: Vec<&str> = v["loaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"virtual"), "{names:?}");
    assert!(names.contains(&"ina219"), "{names:?}");
    let ina = v["loaded"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "ina219")
        .unwrap();
    assert_eq!(ina["chips"][0], "ina219");
    assert_eq!(ina["abi_version"], v["abi_version"]);
    assert!(ina["file"]
        .as_str()
        .unwrap()
        .ends_with("liblabctl_sensor_ina219.so"));
    let virt = v["loaded"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "virtual")
        .unwrap();
    let profiles: Vec<&str> = virt["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for p in ["esp32s3", "stm32f7", "rp2040"] {
        assert!(profiles.contains(&p), "{profiles:?}");
    }
}

fn foreign_library() -> Option<std::path::PathBuf> {
    [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib/aarch64-linux-gnu/libm.so.6",
        "/usr/lib/aarch64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.exists())
}

#[test]
fn bad_libraries_are_rejected_with_path_and_reason_and_the_rest_loads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for lib in ["labctl_platform_virtual", "labctl_sensor_ina219"] {
        std::fs::copy(plugin_lib(lib), d.join(format!("lib{lib}.so"))).unwrap();
    }
    std::fs::copy(
        plugin_lib("fixture_abi_mismatch"),
        d.join("liblabctl_future.so"),
    )
    .unwrap();
    // A real ABI 2 plugin: built against the frozen ABI 2 interface crate.
    std::fs::copy(
        plugin_lib("fixture_plugin_abi2"),
        d.join("liblabctl_oldboard.so"),
    )
    .unwrap();
    std::fs::write(d.join("liblabctl_garbage.so"), b"this is not an ELF file").unwrap();
    // A real plugin cut short, as an interrupted copy leaves it: mapping it would end labctl with
    // SIGBUS, so it is refused before it is loaded.
    let whole = std::fs::read(plugin_lib("labctl_platform_serial")).unwrap();
    std::fs::write(d.join("liblabctl_cut.so"), &whole[..3072]).unwrap();
    let foreign = foreign_library().expect("a libm to use as a foreign shared library");
    std::fs::copy(foreign, d.join("liblabctl_libm.so")).unwrap();
    let lab = d.join("lab.toml");
    std::fs::write(
        &lab,
        format!(
            "name = \"t\"\nplugin_dirs = [{:?}]\n",
            d.display().to_string()
        ),
    )
    .unwrap();

    let o = labctl()
        .args(["--lab", lab.to_str().unwrap(), "plugins", "--json"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "labctl carries on: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    let loaded: Vec<&str> = v["loaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(loaded.len(), 2, "{loaded:?}");
    let rejected = v["rejected"].as_array().unwrap();
    let reason = |file: &str| -> String {
        rejected
            .iter()
            .find(|r| r["path"].as_str().unwrap().ends_with(file))
            .unwrap_or_else(|| panic!("{file} not rejected: {rejected:?}"))["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let abi = reason("liblabctl_future.so");
    let (theirs, ours) = (
        format!("built for plugin ABI {}", labctl_plugin_api_version() + 1),
        format!("needs plugin ABI {}", labctl_plugin_api_version()),
    );
    assert!(abi.contains(&theirs) && abi.contains(&ours), "{abi}");
    let old = reason("liblabctl_oldboard.so");
    assert!(
        old.contains("\"oldboard\" was built for plugin ABI 2")
            && old.contains(&format!("needs plugin ABI {}", labctl_plugin_api_version())),
        "{old}"
    );
    assert!(reason("liblabctl_garbage.so").contains("not a labctl plugin"));
    assert!(
        reason("liblabctl_cut.so").contains("cut short"),
        "{rejected:?}"
    );
    assert!(reason("liblabctl_libm.so").contains("not a labctl plugin"));

    // The human listing names them too.
    let o = labctl()
        .args(["--lab", lab.to_str().unwrap(), "plugins"])
        .output()
        .unwrap();
    let (out, _) = text(&o);
    assert!(
        out.contains("REJECTED") && out.contains("liblabctl_future.so"),
        "{out}"
    );
}

#[test]
fn a_missing_plugin_faults_only_its_boards() {
    // A lab whose plugin directory has the virtual platform and the power drivers but no INA219
    // plugin: the sensors
    // are faulted with the reason; boards still list and switch.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for lib in ["labctl_platform_virtual", "labctl_power"] {
        std::fs::copy(plugin_lib(lib), d.join(format!("lib{lib}.so"))).unwrap();
    }
    let src = std::fs::read_to_string(
        labctl_integration_tests::repo().join("lab-config/examples/virtual-lab.toml"),
    )
    .unwrap()
    .replace(
        "name = \"virtual-lab\"",
        &format!(
            "name = \"virtual-lab\"\nplugin_dirs = [{:?}]",
            d.display().to_string()
        ),
    );
    let lab = d.join("lab.toml");
    std::fs::write(&lab, src).unwrap();
    let o = labctl()
        .args(["--lab", lab.to_str().unwrap(), "boards", "--json"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    for b in v.as_array().unwrap() {
        assert!(b["fault"].is_null(), "board itself not faulted: {b}");
        assert!(
            b["sensor_health"]
                .as_str()
                .unwrap()
                .contains("chip \"ina219\""),
            "{b}"
        );
    }
    let o = labctl()
        .args(["--lab", lab.to_str().unwrap(), "power", "pico", "on"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
}

/// The ABI version this workspace's plugin API declares (read from its source, so the test does
/// not need to link the plugin API).
fn labctl_plugin_api_version() -> u32 {
    let src =
        std::fs::read_to_string(labctl_integration_tests::repo().join("plugin-api/src/lib.rs"))
            .unwrap();
    src.lines()
        .find_map(|l| l.strip_prefix("pub const ABI_VERSION: u32 = "))
        .and_then(|v| v.trim_end_matches(';').parse().ok())
        .expect("ABI_VERSION in plugin-api")
}
