//! The `qemu-mps2` port of the profiling firmware: Cortex-M4F (`mps2-an386`) and Cortex-M7
//! (`mps2-an500`) under QEMU. Startup (vector table, .data/.bss, FPU), the CMSDK UART0 as the
//! serial line, SysTick as the cycle counter (with `-icount`, QEMU's virtual time follows the
//! instruction count, so counts are deterministic), the model read in place from its own flash
//! partition (placed there by QEMU's `-device loader`), and a painted stack for the high-water
//! mark. No crates besides the firmware core: nothing host-only can creep in.

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

/// The machine's SysTick reference: QEMU's mps2 boards clock the CPU at 25 MHz.
const CLOCK_HZ: u64 = 25_000_000;
const RAM_BYTES: u64 = 4 << 20;
const FLASH_BYTES: u64 = 4 << 20;

const UART0: usize = 0x4000_4000;
const UART_DATA: usize = UART0;
const UART_STATE: usize = UART0 + 4;
const UART_CTRL: usize = UART0 + 8;
const UART_BAUDDIV: usize = UART0 + 0x10;

const SYST_CSR: usize = 0xE000_E010;
const SYST_RVR: usize = 0xE000_E014;
const SYST_CVR: usize = 0xE000_E018;
const CPACR: usize = 0xE000_ED88;

extern "C" {
    static mut _sbss: u32;
    static mut _ebss: u32;
    static mut _sdata: u32;
    static mut _edata: u32;
    static _sidata: u32;
    static _model_start: u8;
    static _model_len: u8;
    static _stack_top: u32;
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
    let mut p = addr_of_mut!(_sbss);
    while p < addr_of_mut!(_ebss) {
        write_volatile(p, 0);
        p = p.add(1);
    }
    let (mut d, mut s) = (addr_of_mut!(_sdata), addr_of!(_sidata));
    while d < addr_of_mut!(_edata) {
        write_volatile(d, read_volatile(s));
        d = d.add(1);
        s = s.add(1);
    }
    // CP10 and CP11 full access, before any floating-point instruction.
    write_volatile(
        CPACR as *mut u32,
        read_volatile(CPACR as *const u32) | (0xF << 20),
    );
    core::arch::asm!("dsb", "isb");
    paint_stack();
    main()
}

/// Paints the free RAM between .bss and (just below) the current stack pointer.
unsafe fn paint_stack() {
    let sp: usize;
    core::arch::asm!("mov {}, sp", out(reg) sp);
    fwcore::stack::paint(addr_of_mut!(_ebss) as usize, sp - 64);
}

/// Deepest stack use so far: the lowest word below the stack top no longer painted.
fn stack_high_water() -> u64 {
    // SAFETY: .bss end to stack top is this image's RAM.
    unsafe { fwcore::stack::high_water(addr_of!(_ebss) as usize, addr_of!(_stack_top) as usize) }
}

fn uart_init() {
    unsafe {
        write_volatile(UART_BAUDDIV as *mut u32, 16);
        write_volatile(UART_CTRL as *mut u32, 0b11);
    }
}

fn systick_init() {
    unsafe {
        write_volatile(SYST_RVR as *mut u32, 0x00FF_FFFF);
        write_volatile(SYST_CVR as *mut u32, 0);
        // Enable, processor clock, no interrupt: wraps are counted by polling (see `cycles`), so
        // no handler's instructions land inside a measured stretch.
        write_volatile(SYST_CSR as *mut u32, 0b101);
    }
}

/// Restarts SysTick's tick phase here. Serial I/O and waiting for the host take a number of
/// instructions that depends on the host's pace, so the instant a measured stretch starts falls
/// anywhere within a tick. Writing the current-value register restarts the tick period at this
/// instruction (QEMU reloads its timer from "now"), so the ticks a stretch counts depend on its
/// own instructions only: deterministic under -icount. The part-tick since the last edge is
/// dropped (under one tick per stretch).
fn restart_ticks(clock: &mut Mps2) {
    clock.cycles();
    unsafe { write_volatile(SYST_CVR as *mut u32, 0) };
    clock.last = 0;
}

struct Mps2 {
    static_bytes: u64,
    /// Ticks counted up to `last` (the counter's value at the previous read).
    ticks: u64,
    last: u32,
}

impl Clock for Mps2 {
    /// SysTick counts down from 2^24 - 1 and wraps every ~0.67 s at 25 MHz; it is read far more
    /// often than that (every operator, and while waiting for input), so each read adds the
    /// distance travelled since the previous one.
    fn cycles(&mut self) -> u64 {
        let v = unsafe { read_volatile(SYST_CVR as *const u32) } & 0x00FF_FFFF;
        self.ticks += u64::from(self.last.wrapping_sub(v) & 0x00FF_FFFF);
        self.last = v;
        self.ticks
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
        restart_ticks(self);
    }
    fn phase(&mut self, computing: bool) {
        if computing {
            restart_ticks(self);
        }
    }
    fn micros(&mut self) -> u64 {
        self.cycles() / (CLOCK_HZ / 1_000_000)
    }
    fn memory(&mut self) -> (u64, u64, u64) {
        (self.static_bytes, 0, stack_high_water())
    }
    fn code_bytes(&self) -> u64 {
        // Flash starts at 0: vector table, .text and .rodata end where .data's initial values
        // are stored (_sidata), which take _edata - _sdata more.
        (addr_of!(_sidata) as usize + (addr_of!(_edata) as usize - addr_of!(_sdata) as usize))
            as u64
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
    systick_init();
    let data_bss = (addr_of!(_ebss) as usize - addr_of!(_sdata) as usize) as u64;
    let mut port = Mps2 {
        static_bytes: data_bss,
        ticks: 0,
        last: 0x00FF_FFFF,
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
        ticks: 0,
        last: 0,
    };
    fw::halt(&mut port, "panic")
}
