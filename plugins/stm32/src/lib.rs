//! The `stm32` platform plugin: STM32 boards flashed through a debug probe with the vendors'
//! tools — `st-flash` (stlink-tools, the default), `openocd` or `probe-rs` — found on PATH or
//! named in the lab file (`flash_tool`, `flash_program`, `probe_serial`). Bootstrap writes the
//! model to its flash partition and the `stm32` port's image to the start of flash and resets
//! the chip; the host then opens the board's serial console (the lab file's `serial` or
//! `usb_serial`) and checks that it comes back as what was flashed (the profile's banner).
//! Profiles exist for the chips the `stm32` port is built for: the STM32F405, the NUCLEO-F411RE,
//! the NUCLEO-F746ZG and the NUCLEO-H743ZI.

mod tools;

use abi_stable::std_types::{ROption, RResult};
use labctl_plugin_api::{
    flash::{self, Image},
    profile::{usb, Profile, Silicon, UsbIdent, UsbRole},
    BoardSessionBox, BoardSpec, PluginError, RailControlBox,
};

use tools::{Chip, Flasher};

labctl_plugin_api::platform_plugin!(
    "stm32",
    "STM32 boards flashed over SWD (st-flash, openocd or probe-rs), profiled on their serial console",
    profile_table,
    open_board,
);

/// The chips this plugin flashes, with the `stm32` port's memory map.
pub const CHIPS: &[Chip] = &[
    Chip {
        profile: "stm32f405",
        image: Image {
            file: "labctl-fw-stm32",
            target: "thumbv7em-none-eabihf",
            variant: None,
        },
        flash_base: 0x0800_0000,
        flash_bytes: 1 << 20,
        model_addr: 0x0802_0000,
        openocd_target: "target/stm32f4x.cfg",
        probe_rs_chip: "STM32F405RGTx",
    },
    Chip {
        profile: "nucleo-f411",
        image: Image {
            file: "labctl-fw-stm32",
            target: "thumbv7em-none-eabihf",
            variant: Some(("fw-stm32f411", "f411")),
        },
        flash_base: 0x0800_0000,
        flash_bytes: 512 << 10,
        model_addr: 0x0801_0000,
        openocd_target: "target/stm32f4x.cfg",
        probe_rs_chip: "STM32F411RETx",
    },
    Chip {
        profile: "nucleo-f746",
        image: Image {
            file: "labctl-fw-stm32",
            target: "thumbv7em-none-eabihf",
            variant: Some(("fw-stm32f746", "f746")),
        },
        flash_base: 0x0800_0000,
        flash_bytes: 1 << 20,
        model_addr: 0x0802_0000,
        openocd_target: "target/stm32f7x.cfg",
        probe_rs_chip: "STM32F746ZGTx",
    },
    Chip {
        profile: "nucleo-h743",
        image: Image {
            file: "labctl-fw-stm32",
            target: "thumbv7em-none-eabihf",
            variant: Some(("fw-stm32h743", "h743")),
        },
        flash_base: 0x0800_0000,
        flash_bytes: 2 << 20,
        model_addr: 0x0802_0000,
        openocd_target: "target/stm32h7x.cfg",
        probe_rs_chip: "STM32H743ZITx",
    },
];

/// A profile of an STM32 board, timed by SysTick on its core clock.
fn board(
    name: &str,
    description: &str,
    cpu: &str,
    clock_hz: u64,
    (ram_kib, flash_kib): (u64, u64),
    usb: Vec<UsbIdent>,
    banner: &str,
) -> Profile {
    Silicon {
        name,
        description,
        cpu,
        clock_hz,
        kib: (ram_kib, 0, flash_kib),
        usb,
        banner,
        counter: &format!(
            "the chip's SysTick on the {} MHz core clock",
            clock_hz / 1_000_000
        ),
    }
    .profile()
}

/// A Nucleo's ST-LINK/V2-1: the probe and the board's virtual COM port.
fn nucleo_stlink() -> Vec<UsbIdent> {
    usb(&[
        (0x0483, 0x374b, UsbRole::Probe),
        (0x0483, 0x374b, UsbRole::Console),
    ])
}

pub fn profile_table() -> Vec<Profile> {
    vec![
        board(
            "stm32f405",
            "STM32F405RG (Adafruit Feather STM32F405 Express, Olimex STM32-H405, Netduino Plus 2): 168 MHz, 1 MiB flash (model in sectors 5-11), 128 KiB main SRAM used (+64 KiB CCM); console on USART1 (PA9/PA10) through a USB-serial adapter; flashed over SWD with an ST-LINK/V2",
            "Cortex-M4F",
            168_000_000,
            (128, 1024),
            // The ST-LINK/V2 that flashes it.
            usb(&[(0x0483, 0x3748, UsbRole::Probe)]),
            "stm32f405",
        ),
        board(
            "nucleo-f411",
            "NUCLEO-F411RE: STM32F411RE at 100 MHz, 512 KiB flash (model in sectors 4-7), 128 KiB SRAM; console on USART2 through the on-board ST-LINK/V2-1's virtual COM port, flashed through the same ST-LINK",
            "Cortex-M4F",
            100_000_000,
            (128, 512),
            nucleo_stlink(),
            "stm32f411",
        ),
        board(
            "nucleo-f746",
            "NUCLEO-F746ZG: STM32F746ZG (Cortex-M7) at 180 MHz (216 MHz needs the regulator's over-drive, not used), 1 MiB flash (model in sectors 4-7), 320 KiB SRAM; console on USART3 through the on-board ST-LINK/V2-1's virtual COM port",
            "Cortex-M7F",
            180_000_000,
            (320, 1024),
            nucleo_stlink(),
            "stm32f746",
        ),
        board(
            "nucleo-h743",
            "NUCLEO-H743ZI / H743ZI2: STM32H743ZI (Cortex-M7) on its 64 MHz HSI (480 MHz needs the supply's voltage scaling and PLL1, not configured), 2 MiB flash (model from 0x08020000), 512 KiB AXI SRAM used; console on USART3 through the on-board ST-LINK's virtual COM port",
            "Cortex-M7F",
            64_000_000,
            (512, 2048),
            usb(&[
                (0x0483, 0x374e, UsbRole::Probe),
                (0x0483, 0x374e, UsbRole::Console),
                (0x0483, 0x374b, UsbRole::Probe),
                (0x0483, 0x374b, UsbRole::Console),
            ]),
            "stm32h743",
        ),
    ]
}

extern "C" fn open_board(
    spec: &BoardSpec,
    _rail: ROption<RailControlBox>,
) -> RResult<BoardSessionBox, PluginError> {
    flash::open(spec, "stm32", CHIPS, |c| c.profile, Flasher::new)
}
