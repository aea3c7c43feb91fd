//! The `virtual` platform plugin: emulated boards whose profiles mirror real ones (ESP32-S3,
//! STM32F7, RP2040). An emulated board is the profiling firmware running as a host process; its
//! supply rail is simulated from the profile's idle and active currents, so every result from
//! these boards is `simulated`.

use abi_stable::{
    export_root_module,
    prefix_type::PrefixTypeTrait,
    std_types::{RNone, RSome, RVec},
};
use labctl_plugin_api::{
    plugin_info, BoardProfile, PlatformApi, PlatformApiRef, PluginInfo, PluginMod, PluginModRef,
};

#[export_root_module]
pub fn get_library() -> PluginModRef {
    PluginMod {
        info,
        platform: RSome(platform_api()),
        sensor: RNone,
    }
    .leak_into_prefix()
}

fn platform_api() -> PlatformApiRef {
    PlatformApi { profiles }.leak_into_prefix()
}

extern "C" fn info() -> PluginInfo {
    plugin_info(
        "virtual",
        env!("CARGO_PKG_VERSION"),
        "emulated boards: the profiling firmware as a host process, on a simulated supply rail",
    )
}

/// Profile figures: memory from the chips' datasheets (see FACTS in the design notes); currents
/// are the rail model's parameters for a dev board powered at 5 V over USB, not measurements.
pub fn profile_table() -> Vec<BoardProfile> {
    let p = |name: &str,
             description: &str,
             cpu: &str,
             clock_hz: u64,
             ram_kb: u64,
             psram_kb: u64,
             flash_kb: u64,
             idle_ma: f64,
             active_ma: f64| BoardProfile {
        name: name.into(),
        description: description.into(),
        cpu: cpu.into(),
        clock_hz,
        ram_bytes: ram_kb * 1024,
        psram_bytes: psram_kb * 1024,
        flash_bytes: flash_kb * 1024,
        supply_mv: 5000.0,
        idle_ma,
        active_ma,
        usb_ids: RVec::new(),
        emulated: true,
    };
    vec![
        p(
            "esp32s3",
            "ESP32-S3 N16R8 class: 512 KB SRAM, 8 MB PSRAM, 16 MB flash",
            "Xtensa LX7 dual-core",
            240_000_000,
            512,
            8 * 1024,
            16 * 1024,
            32.0,
            96.0,
        ),
        p(
            "stm32f7",
            "STM32F746 class: 320 KB SRAM, 1 MB flash",
            "Cortex-M7F",
            216_000_000,
            320,
            0,
            1024,
            48.0,
            128.0,
        ),
        p(
            "rp2040",
            "RP2040 (Pico) class: 264 KB SRAM, 2 MB QSPI flash",
            "dual Cortex-M0+",
            133_000_000,
            264,
            0,
            2048,
            19.0,
            31.0,
        ),
    ]
}

extern "C" fn profiles() -> RVec<BoardProfile> {
    RVec::from(profile_table())
}
