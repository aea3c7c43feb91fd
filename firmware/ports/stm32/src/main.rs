//! The `stm32` port of the profiling firmware, for the STM32F405 (Cortex-M4F, 1 MiB flash,
//! 192 KiB SRAM of which the 128 KiB main SRAM is used): the same image runs on a real board and
//! on QEMU's `netduinoplus2`. Startup (vector table, .data/.bss, FPU), the clock tree
//! ([`clock`]: 168 MHz from the HSI through the PLL, bounded waits, the emulator's clock where no
//! RCC answers), USART1 as the console ([`usart`]), SysTick on the processor clock as the cycle
//! counter (the count DWT's CYCCNT would give, which QEMU does not model), the model read in
//! place from its flash partition (sectors 5–11), and a painted stack for the high-water mark.

#![no_std]
#![no_main]

mod clock;
mod usart;

use core::{
    panic::PanicInfo,
    ptr::{addr_of, addr_of_mut, read_volatile, write_volatile},
};

use fwcore::{
    fw::{self, Port},
    infer::Clock,
};

/// What the firmware may use: the main SRAM and the whole flash (the model partition is part of
/// it).
const RAM_BYTES: u64 = 128 << 10;
const FLASH_BYTES: u64 = 1 << 20;

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

/// The firmware's static arena for the model's buffers (KV cache, activations): what the main
/// SRAM has left after the firmware's statics and the stack's reserve (the link fails if it
/// does not fit).
const ARENA_BYTES: usize = 100 << 10;
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
    let sp: usize;
    core::arch::asm!("mov {}, sp", out(reg) sp);
    fwcore::stack::paint(addr_of_mut!(_ebss) as usize, sp - 64);
    main()
}

/// Deepest stack use so far: the lowest word below the stack top no longer painted.
fn stack_high_water() -> u64 {
    // SAFETY: .bss end to stack top is this image's RAM.
    unsafe { fwcore::stack::high_water(addr_of!(_ebss) as usize, addr_of!(_stack_top) as usize) }
}

fn systick_init() {
    // SAFETY: the core's SysTick registers.
    unsafe {
        write_volatile(SYST_RVR as *mut u32, 0x00FF_FFFF);
        write_volatile(SYST_CVR as *mut u32, 0);
        // Enable, processor clock, no interrupt: wraps are counted by polling.
        write_volatile(SYST_CSR as *mut u32, 0b101);
    }
}

struct Stm32 {
    clocks: clock::Clocks,
    static_bytes: u64,
    /// Ticks counted up to `last` (the counter's value at the previous read).
    ticks: u64,
    last: u32,
}

impl Stm32 {
    /// Restarts SysTick's tick phase here, so a measured stretch counts its own instructions
    /// only (as the qemu-mps2 port does; see there).
    fn restart_ticks(&mut self) {
        self.cycles();
        // SAFETY: the core's SysTick current-value register.
        unsafe { write_volatile(SYST_CVR as *mut u32, 0) };
        self.last = 0;
    }
}

impl Clock for Stm32 {
    /// SysTick counts down from 2^24 - 1 and wraps every 0.1 s at 168 MHz; it is read far more
    /// often than that, so each read adds the distance travelled since the previous one.
    fn cycles(&mut self) -> u64 {
        // SAFETY: the core's SysTick current-value register.
        let v = unsafe { read_volatile(SYST_CVR as *const u32) } & 0x00FF_FFFF;
        self.ticks += u64::from(self.last.wrapping_sub(v) & 0x00FF_FFFF);
        self.last = v;
        self.ticks
    }
}

impl Port for Stm32 {
    fn read_byte(&mut self) -> Option<u8> {
        while !usart::byte_ready() {
            // Keep the tick count current through long waits.
            self.cycles();
        }
        Some(usart::read())
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            usart::write(b);
        }
        self.restart_ticks();
    }
    fn phase(&mut self, computing: bool) {
        if computing {
            self.restart_ticks();
        }
    }
    fn micros(&mut self) -> u64 {
        self.cycles() / (self.clocks.sysclk / 1_000_000)
    }
    fn memory(&mut self) -> (u64, u64, u64) {
        (self.static_bytes, 0, stack_high_water())
    }
    fn code_bytes(&self) -> u64 {
        // The image: vector table, .text and .rodata up to where .data's initial values are
        // stored (_sidata), which take _edata - _sdata more.
        let start = 0x0800_0000usize;
        (addr_of!(_sidata) as usize - start
            + (addr_of!(_edata) as usize - addr_of!(_sdata) as usize)) as u64
    }
    fn platform(&self) -> &str {
        if self.clocks.emulated {
            "stm32f405-qemu"
        } else {
            "stm32f405"
        }
    }
    fn clock_hz(&self) -> u64 {
        self.clocks.sysclk
    }
    fn ram_bytes(&self) -> u64 {
        RAM_BYTES
    }
    fn flash_bytes(&self) -> u64 {
        FLASH_BYTES
    }
}

fn main() -> ! {
    let clocks = clock::init();
    usart::init(clocks.apb2);
    systick_init();
    let data_bss = (addr_of!(_ebss) as usize - addr_of!(_sdata) as usize) as u64;
    let mut port = Stm32 {
        clocks,
        static_bytes: data_bss,
        ticks: 0,
        last: 0x00FF_FFFF,
    };
    // SAFETY: the model partition is flash this image never writes; the arena is ours alone.
    let partition = unsafe {
        core::slice::from_raw_parts(addr_of!(_model_start), addr_of!(_model_len) as usize)
    };
    let arena = unsafe { &mut (*addr_of_mut!(ARENA)).0 };
    fw::boot(&mut port, partition, arena)
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    let mut port = Stm32 {
        clocks: clock::Clocks {
            sysclk: 16_000_000,
            apb2: 16_000_000,
            emulated: false,
        },
        static_bytes: 0,
        ticks: 0,
        last: 0,
    };
    fw::halt(&mut port, "panic")
}
