//! The `qemu-mps2` port of the profiling firmware: Cortex-M4F (`mps2-an386`) and Cortex-M7
//! (`mps2-an500`) under QEMU. Startup (vector table, .data/.bss, FPU), the CMSDK UART0 as the
//! serial line, SysTick as the cycle counter (with `-icount`, QEMU's virtual time follows the
//! instruction count, so counts are deterministic), the model read in place from its own flash
//! partition (placed there by QEMU's `-device loader`), and a painted stack for the high-water
//! mark (RAM set-up, stack and SysTick are `cortex-m-start`'s, shared with the stm32 port). No
//! crates besides the firmware's own: nothing host-only can creep in.

#![no_std]
#![no_main]

use core::{
    panic::PanicInfo,
    ptr::{addr_of, addr_of_mut, read_volatile, write_volatile},
};

use fwcore::{
    fw::{self, Port},
    infer::Clock,
};
use start::SysTick;

/// The machine's SysTick reference: QEMU's mps2 boards clock the CPU at 25 MHz.
const CLOCK_HZ: u64 = 25_000_000;
const RAM_BYTES: u64 = 4 << 20;
const FLASH_BYTES: u64 = 4 << 20;

const UART0: usize = 0x4000_4000;
const UART_DATA: usize = UART0;
const UART_STATE: usize = UART0 + 4;
const UART_CTRL: usize = UART0 + 8;
const UART_BAUDDIV: usize = UART0 + 0x10;

extern "C" {
    static _model_start: u8;
    static _model_len: u8;
}

/// The firmware's static arena for the model's buffers (KV cache, activations).
const ARENA_BYTES: usize = 3 << 20;
#[repr(C, align(8))]
struct Arena([u8; ARENA_BYTES]);
static mut ARENA: Arena = Arena([0; ARENA_BYTES]);

#[link_section = ".vector_table.reset"]
#[no_mangle]
#[used]
static RESET_VECTOR: unsafe extern "C" fn() -> ! = reset;

/// Exceptions 2..=15: NMI, HardFault, MemManage, BusFault, UsageFault, 4 reserved, SVCall,
/// DebugMonitor, reserved, PendSV, SysTick.
#[link_section = ".vector_table.exceptions"]
#[no_mangle]
#[used]
static EXCEPTIONS: [unsafe extern "C" fn(); 14] = [
    fault, fault, fault, fault, fault, fault, fault, fault, fault, fault, fault, fault, fault,
    systick,
];

unsafe extern "C" fn fault() {
    loop {
        core::hint::spin_loop();
    }
}

unsafe extern "C" fn systick() {}

/// Entry after reset: RAM set up, FPU on, stack painted, then the firmware.
#[no_mangle]
unsafe extern "C" fn reset() -> ! {
    start::init();
    main()
}

fn uart_init() {
    unsafe {
        write_volatile(UART_BAUDDIV as *mut u32, 16);
        write_volatile(UART_CTRL as *mut u32, 0b11);
    }
}

struct Mps2 {
    static_bytes: u64,
    tick: SysTick,
}

impl Clock for Mps2 {
    fn cycles(&mut self) -> u64 {
        self.tick.cycles()
    }
}

impl Port for Mps2 {
    fn read_byte(&mut self) -> Option<u8> {
        while unsafe { read_volatile(UART_STATE as *const u32) } & 0b10 == 0 {
            // Keep the tick count current through long waits.
            self.cycles();
        }
        Some(unsafe { read_volatile(UART_DATA as *const u32) } as u8)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            unsafe {
                while read_volatile(UART_STATE as *const u32) & 0b1 != 0 {}
                write_volatile(UART_DATA as *mut u32, u32::from(b));
            }
        }
        self.tick.restart();
    }
    fn phase(&mut self, computing: bool) {
        if computing {
            self.tick.restart();
        }
    }
    fn micros(&mut self) -> u64 {
        self.cycles() / (CLOCK_HZ / 1_000_000)
    }
    fn memory(&mut self) -> (u64, u64, u64) {
        (self.static_bytes, 0, start::stack_high_water())
    }
    fn code_bytes(&self) -> u64 {
        // Flash starts at 0.
        start::code_bytes(0)
    }
    fn platform(&self) -> &str {
        "mps2-cortex-m"
    }
    fn clock_hz(&self) -> u64 {
        CLOCK_HZ
    }
    fn ram_bytes(&self) -> u64 {
        RAM_BYTES
    }
    fn flash_bytes(&self) -> u64 {
        FLASH_BYTES
    }
}

fn main() -> ! {
    uart_init();
    let mut port = Mps2 {
        static_bytes: start::static_bytes(),
        tick: SysTick::start(),
    };
    // The model partition (QEMU's -device loader put the model there) and the static arena; the
    // arena is part of .bss, so `static_bytes` (.data + .bss) already counts it, as linked.
    let partition = unsafe {
        core::slice::from_raw_parts(addr_of!(_model_start), addr_of!(_model_len) as usize)
    };
    let arena = unsafe { &mut (*addr_of_mut!(ARENA)).0 };
    fw::boot(&mut port, partition, arena)
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    let mut port = Mps2 {
        static_bytes: 0,
        tick: SysTick::idle(),
    };
    fw::halt(&mut port, "panic")
}
