//! The `esp32` port of the profiling firmware, for the ESP32-C3 (RV32IMC at 160 MHz, 400 KiB
//! SRAM, 4 MiB flash on the DevKitM-1 and most modules), started by the ESP-IDF second-stage
//! bootloader from the app partition. Watchdogs off, the CPU to 160 MHz ([`chip`]), UART0 as the
//! bootloader left it (115200 8N1 on the devkit's USB-UART bridge) as the console, the core's
//! performance counter as the cycle counter, and the model mapped from its flash partition
//! (0x110000) into the data bus at 0x3C400000. The chip's temperature sensor needs the analog
//! I2C registers' calibration and is not read (no `TEMP` frame).

#![no_std]
#![no_main]

mod chip;

use core::{
    panic::PanicInfo,
    ptr::{addr_of, read_volatile, write_volatile},
};

use fwcore::{
    board::{Console, Counter},
    fw,
};
use start::Wide;

extern "C" {
    static _model_start: u8;
    static _model_len: u8;
    static _model_flash: u8;
    static _iram_start: u8;
    static _iram_end: u8;
    static _drom_end: u8;
    static _sdata: u8;
    static _edata: u8;
}

const UART0: usize = 0x6000_0000;
const UART_STATUS: usize = UART0 + 0x1C;

/// The app descriptor (ESP-IDF's `esp_app_desc_t`, 256 bytes) the bootloader and flashers read
/// at the start of DROM: magic, versions and names, the eFuse block revisions it accepts and the
/// MMU page size (2^16).
#[repr(C)]
struct AppDesc {
    magic: u32,
    secure_version: u32,
    reserved1: [u32; 2],
    version: [u8; 32],
    project_name: [u8; 32],
    time: [u8; 16],
    date: [u8; 16],
    idf_ver: [u8; 32],
    app_elf_sha256: [u8; 32],
    min_efuse_blk_rev_full: u16,
    max_efuse_blk_rev_full: u16,
    mmu_page_size: u8,
    reserved3: [u8; 3],
    reserved2: [u32; 18],
}

const fn text<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && i < N - 1 {
        out[i] = b[i];
        i += 1;
    }
    out
}

#[link_section = ".rodata_desc"]
#[used]
static APP_DESC: AppDesc = AppDesc {
    magic: 0xABCD_5432,
    secure_version: 0,
    reserved1: [0; 2],
    version: text(env!("CARGO_PKG_VERSION")),
    project_name: text("labctl-fw-esp32"),
    time: [0; 16],
    date: [0; 16],
    idf_ver: text("labctl (no ESP-IDF)"),
    app_elf_sha256: [0; 32],
    min_efuse_blk_rev_full: 0,
    max_efuse_blk_rev_full: 99,
    mmu_page_size: 16,
    reserved3: [0; 3],
    reserved2: [0; 18],
};

/// The static arena for the model's buffers: DRAM left after the statics and the stack.
const ARENA_BYTES: usize = 256 << 10;

start::entry!(esp_main);

struct Esp32c3 {
    hz: u64,
}

/// The core's performance counter (32 bits) extended to 64.
struct Mpccr(Wide);

impl Counter for Mpccr {
    fn cycles(&mut self) -> u64 {
        self.0.update(chip::counter())
    }
}

impl Console for Esp32c3 {
    fn byte_ready(&mut self) -> bool {
        // SAFETY: UART0's status register.
        unsafe { read_volatile(UART_STATUS as *const u32) & 0x3FF != 0 }
    }
    fn read(&mut self) -> u8 {
        // SAFETY: UART0's FIFO register: reading pops a received byte.
        unsafe { read_volatile(UART0 as *const u32) as u8 }
    }
    fn write(&mut self, b: u8) {
        // SAFETY: UART0's status and FIFO registers; the TX FIFO holds 128 bytes.
        unsafe {
            while (read_volatile(UART_STATUS as *const u32) >> 16) & 0x3FF >= 126 {}
            write_volatile(UART0 as *mut u32, u32::from(b));
        }
    }
    fn platform(&self) -> &str {
        "esp32c3"
    }
    fn clock_hz(&self) -> u64 {
        self.hz
    }
    fn ram_bytes(&self) -> u64 {
        400 << 10
    }
    fn flash_bytes(&self) -> u64 {
        4 << 20
    }
}

/// The app's bytes in flash: IRAM code, DROM data and .data's initial values.
fn code_bytes() -> u64 {
    let a = |s: &u8| s as *const u8 as usize;
    // SAFETY: linker symbols; only their addresses are used.
    unsafe {
        (a(&_iram_end) - a(&_iram_start) + a(&_drom_end) - 0x3C00_0020 + a(&_edata) - a(&_sdata))
            as u64
    }
}

#[no_mangle]
extern "C" fn esp_main() -> ! {
    // SAFETY: first thing after the entry, once.
    unsafe { start::init() };
    chip::watchdogs_off();
    let hz = chip::cpu_clock();
    chip::counter_start();
    let mut port = start::board(Esp32c3 { hz }, Mpccr(Wide::new()), code_bytes());
    if !chip::map_flash(
        addr_of!(_model_start) as u32,
        addr_of!(_model_flash) as u32,
        addr_of!(_model_len) as u32,
    ) {
        fw::halt(&mut port, "the ROM refused to map the model partition")
    }
    let arena = fwcore::static_arena!(ARENA_BYTES);
    fw::boot(&mut port, start::model_partition(), arena)
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    let mut port = start::board(Esp32c3 { hz: 160_000_000 }, Mpccr(Wide::new()), 0);
    fw::halt(&mut port, "panic")
}
