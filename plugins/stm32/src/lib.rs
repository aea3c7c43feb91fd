//! The `stm32` platform plugin: STM32 boards flashed through a debug probe with the vendors'
//! tools — `st-flash` (stlink-tools, the default), `openocd` or `probe-rs` — found on PATH or
//! named in the lab file (`flash_tool`, `flash_program`, `probe_serial`). Bootstrap writes the
//! model to its flash partition and the `stm32` port's image to the start of flash and resets
//! the chip; the host then opens the board's serial console (the lab file's `serial` or
//! `usb_serial`) and checks that it comes back as what was flashed (the profile's banner).
//! Profiles exist for the chips the `stm32` port is built for: the STM32F405, the NUCLEO-F411RE
//! and the NUCLEO-F746ZG.

mod elf;
mod tools;

use abi_stable::{
    export_root_module,
    sabi_trait::TD_Opaque,
    std_types::{RNone, ROption, RResult, RString, RVec},
};
use labctl_plugin_api::{
    guard, plugin_info,
    profile::{
        memories, ConsoleKind, Profile, ProfileDoc, Timing, TimingSource, UsbIdent, UsbRole,
    },
    BoardSession, BoardSessionBox, BoardSession_TO, BoardSpec, ErrorKind, PluginError, PluginInfo,
    PluginModRef, RailControlBox, Step,
};

use tools::{Chip, Flasher};

#[export_root_module]
pub fn get_library() -> PluginModRef {
    labctl_plugin_api::platform_module(info, profiles, open_board)
}

extern "C" fn info() -> PluginInfo {
    plugin_info(
        "stm32",
        env!("CARGO_PKG_VERSION"),
        "STM32 boards flashed over SWD (st-flash, openocd or probe-rs), profiled on their serial console",
    )
}

/// The chips this plugin flashes, with the `stm32` port's memory map.
pub const CHIPS: &[Chip] = &[
    Chip {
        profile: "stm32f405",
        image: "labctl-fw-stm32",
        target: "thumbv7em-none-eabihf",
        variant: None,
        flash_base: 0x0800_0000,
        flash_bytes: 1 << 20,
        model_addr: 0x0802_0000,
        openocd_target: "target/stm32f4x.cfg",
        probe_rs_chip: "STM32F405RGTx",
    },
    Chip {
        profile: "nucleo-f411",
        image: "labctl-fw-stm32",
        target: "thumbv7em-none-eabihf",
        variant: Some(("fw-stm32f411", "f411")),
        flash_base: 0x0800_0000,
        flash_bytes: 512 << 10,
        model_addr: 0x0801_0000,
        openocd_target: "target/stm32f4x.cfg",
        probe_rs_chip: "STM32F411RETx",
    },
    Chip {
        profile: "nucleo-f746",
        image: "labctl-fw-stm32",
        target: "thumbv7em-none-eabihf",
        variant: Some(("fw-stm32f746", "f746")),
        flash_base: 0x0800_0000,
        flash_bytes: 1 << 20,
        model_addr: 0x0802_0000,
        openocd_target: "target/stm32f7x.cfg",
        probe_rs_chip: "STM32F746ZGTx",
    },
];

pub fn profile_table() -> Vec<Profile> {
    vec![Profile {
        name: "stm32f405".into(),
        description: "STM32F405RG (Adafruit Feather STM32F405 Express, Olimex STM32-H405, Netduino Plus 2): 168 MHz, 1 MiB flash (model in sectors 5-11), 128 KiB main SRAM used (+64 KiB CCM); console on USART1 (PA9/PA10) through a USB-serial adapter; flashed over SWD with an ST-LINK/V2".into(),
        cpu: "Cortex-M4F".into(),
        clock_hz: 168_000_000,
        memories: memories(128, 0, 1024),
        supply_mv: 3300.0,
        // Not given: a board's draw depends on its regulator and LEDs; measure it with a sensor.
        idle_ma: 0.0,
        active_ma: 0.0,
        // The ST-LINK/V2 that flashes it.
        usb: vec![UsbIdent {
            vid: 0x0483,
            pid: 0x3748,
            role: UsbRole::Probe,
        }],
        timing: Timing {
            source: TimingSource::Board,
            counter_hz: 168_000_000,
            note: "the chip's SysTick on the 168 MHz core clock".into(),
        },
        emulated: false,
        console: ConsoleKind::Device,
        banner: Some("stm32f405".into()),
    },
    Profile {
        name: "nucleo-f411".into(),
        description: "NUCLEO-F411RE: STM32F411RE at 100 MHz, 512 KiB flash (model in sectors 4-7), 128 KiB SRAM; console on USART2 through the on-board ST-LINK/V2-1's virtual COM port, flashed through the same ST-LINK".into(),
        cpu: "Cortex-M4F".into(),
        clock_hz: 100_000_000,
        memories: memories(128, 0, 512),
        supply_mv: 3300.0,
        idle_ma: 0.0,
        active_ma: 0.0,
        usb: vec![
            UsbIdent {
                vid: 0x0483,
                pid: 0x374b,
                role: UsbRole::Probe,
            },
            UsbIdent {
                vid: 0x0483,
                pid: 0x374b,
                role: UsbRole::Console,
            },
        ],
        timing: Timing {
            source: TimingSource::Board,
            counter_hz: 100_000_000,
            note: "the chip's SysTick on the 100 MHz core clock".into(),
        },
        emulated: false,
        console: ConsoleKind::Device,
        banner: Some("stm32f411".into()),
    },
    Profile {
        name: "nucleo-f746".into(),
        description: "NUCLEO-F746ZG: STM32F746ZG (Cortex-M7) at 180 MHz (216 MHz needs the regulator's over-drive, not used), 1 MiB flash (model in sectors 4-7), 320 KiB SRAM; console on USART3 through the on-board ST-LINK/V2-1's virtual COM port".into(),
        cpu: "Cortex-M7F".into(),
        clock_hz: 180_000_000,
        memories: memories(320, 0, 1024),
        supply_mv: 3300.0,
        idle_ma: 0.0,
        active_ma: 0.0,
        usb: vec![
            UsbIdent {
                vid: 0x0483,
                pid: 0x374b,
                role: UsbRole::Probe,
            },
            UsbIdent {
                vid: 0x0483,
                pid: 0x374b,
                role: UsbRole::Console,
            },
        ],
        timing: Timing {
            source: TimingSource::Board,
            counter_hz: 180_000_000,
            note: "the chip's SysTick on the 180 MHz core clock".into(),
        },
        emulated: false,
        console: ConsoleKind::Device,
        banner: Some("stm32f746".into()),
    }]
}

extern "C" fn profiles() -> RString {
    ProfileDoc::new(profile_table()).to_json().into()
}

struct Stm32Board {
    spec: BoardSpec,
    flasher: Flasher,
}

impl BoardSession for Stm32Board {
    fn plan(&self) -> RVec<Step> {
        RVec::from(self.flasher.steps())
    }

    fn bootstrap(&mut self) -> RResult<RVec<Step>, PluginError> {
        guard(|| self.flasher.flash().map(RVec::from))
    }

    fn console_path(&mut self) -> ROption<RString> {
        RNone
    }

    fn reset(&mut self) -> RResult<Step, PluginError> {
        guard(|| self.flasher.reset())
    }

    fn power_off(&mut self) -> RResult<(), PluginError> {
        RResult::ROk(())
    }

    fn check(&mut self) -> ROption<RString> {
        let _ = &self.spec;
        RNone
    }
}

extern "C" fn open_board(
    spec: &BoardSpec,
    _rail: ROption<RailControlBox>,
) -> RResult<BoardSessionBox, PluginError> {
    guard(|| {
        let profile = spec.profile()?;
        let chip = CHIPS
            .iter()
            .find(|c| c.profile == profile.name)
            .ok_or_else(|| {
                PluginError::new(
                    ErrorKind::InvalidConfig,
                    format!(
                        "the stm32 platform flashes {}; profile {:?} is not one of them",
                        CHIPS
                            .iter()
                            .map(|c| c.profile)
                            .collect::<Vec<_>>()
                            .join(", "),
                        profile.name
                    ),
                )
            })?;
        let flasher = Flasher::new(spec, chip)?;
        Ok(BoardSession_TO::from_value(
            Stm32Board {
                spec: spec.clone(),
                flasher,
            },
            TD_Opaque,
        ))
    })
}
