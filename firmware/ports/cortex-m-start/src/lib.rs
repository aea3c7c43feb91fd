//! What every Cortex-M port of the profiling firmware does the same way, so that a port is only
//! its console and its memory map: the vector table and the reset handler ([`entry!`]), RAM set
//! up from the linker's symbols ([`fwcore::linked`]), the FPU turned on, the free RAM painted for
//! the stack high-water mark, SysTick on the processor clock as the cycle counter — polled, never
//! interrupting, its tick phase restarted at each measured stretch — and the firmware's port
//! ([`board`]: [`fwcore::board::Board`] with SysTick).

#![no_std]

use core::ptr::{read_volatile, write_volatile};

use fwcore::{
    board::{Board, Console, Counter, Linked},
    linked,
};

pub use fwcore::linked::model_partition;

const SYST_CSR: usize = 0xE000_E010;
const SYST_RVR: usize = 0xE000_E014;
const SYST_CVR: usize = 0xE000_E018;
#[cfg(target_abi = "eabihf")]
const CPACR: usize = 0xE000_ED88;

/// Zeroes .bss, copies .data's initial values from flash, enables CP10/CP11 (the FPU) and paints
/// the RAM between .bss and the current stack pointer. [`entry!`]'s reset handler calls it first
/// thing, before any floating-point instruction and before any static is touched.
///
/// # Safety
/// Only from the reset handler, once: it overwrites every static.
pub unsafe fn init() {
    linked::init_ram();
    // Cores without an FPU (Cortex-M0+, thumbv6m) have no CPACR either.
    #[cfg(target_abi = "eabihf")]
    {
        write_volatile(
            CPACR as *mut u32,
            read_volatile(CPACR as *const u32) | (0xF << 20),
        );
        core::arch::asm!("dsb", "isb");
    }
    let sp: usize;
    core::arch::asm!("mov {}, sp", out(reg) sp);
    linked::paint_stack(sp - 64);
}

/// The port's entry: the vector table (below) and the reset handler `reset`, which runs
/// [`init`] and then `$main` (a `fn() -> !`).
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        $crate::vector_table!(reset);

        /// Entry after reset: RAM set up, FPU on, stack painted, then the firmware.
        #[no_mangle]
        unsafe extern "C" fn reset() -> ! {
            $crate::init();
            $main()
        }
    };
}

/// The vector table after the initial stack pointer (which the linker script writes): the reset
/// handler in `.vector_table.reset`, then exceptions 2..=15 — NMI, HardFault, MemManage,
/// BusFault, UsageFault, 4 reserved, SVCall, DebugMonitor, reserved, PendSV, SysTick — in
/// `.vector_table.exceptions`. Faults spin (a debugger finds them there); SysTick never
/// interrupts (it is polled) and its handler returns. A macro, so that the statics are the
/// port's own and the linker's KEEP always sees them.
#[macro_export]
macro_rules! vector_table {
    ($reset:path) => {
        #[link_section = ".vector_table.reset"]
        #[no_mangle]
        #[used]
        static RESET_VECTOR: unsafe extern "C" fn() -> ! = $reset;

        #[link_section = ".vector_table.exceptions"]
        #[no_mangle]
        #[used]
        static EXCEPTIONS: [unsafe extern "C" fn(); 14] = {
            use $crate::{fault as f, systick};
            [f, f, f, f, f, f, f, f, f, f, f, f, f, systick]
        };
    };
}

/// Every fault's handler: spin where a debugger finds it.
pub extern "C" fn fault() {
    loop {
        core::hint::spin_loop();
    }
}

/// SysTick's handler (it never fires: the counter runs without its interrupt).
pub extern "C" fn systick() {}

/// The firmware's port for `chip`: SysTick started on the core clock, the linker's figures
/// (code counted from `flash_base`). Call after [`init`].
pub fn board<C: Console>(chip: C, flash_base: usize) -> Board<C, SysTick> {
    Board::new(chip, SysTick::start(), linked::figures(flash_base))
}

/// A port for the panic handler: nothing counted, nothing started.
pub fn halted<C: Console>(chip: C) -> Board<C, SysTick> {
    Board::new(
        chip,
        SysTick::idle(),
        Linked {
            static_bytes: 0,
            code_bytes: 0,
            stack_high_water: linked::stack_high_water,
        },
    )
}

/// SysTick as a 64-bit cycle count.
pub struct SysTick {
    /// Ticks counted up to `last` (the counter's value at the previous read).
    ticks: u64,
    last: u32,
}

impl Counter for SysTick {
    fn cycles(&mut self) -> u64 {
        SysTick::cycles(self)
    }
    fn restart(&mut self) {
        SysTick::restart(self)
    }
}

impl SysTick {
    /// Starts SysTick on the processor clock, no interrupt: wraps are counted by polling, so no
    /// handler's instructions land inside a measured stretch.
    pub fn start() -> SysTick {
        // SAFETY: the core's SysTick registers.
        unsafe {
            write_volatile(SYST_RVR as *mut u32, 0x00FF_FFFF);
            write_volatile(SYST_CVR as *mut u32, 0);
            write_volatile(SYST_CSR as *mut u32, 0b101);
        }
        SysTick {
            ticks: 0,
            last: 0x00FF_FFFF,
        }
    }

    /// A counter that reads as zero (a panic handler's port).
    pub const fn idle() -> SysTick {
        SysTick { ticks: 0, last: 0 }
    }

    /// The counter counts down from 2^24 - 1 and wraps every 2^24 cycles; it is read far more
    /// often than that (every operator, and while waiting for input), so each read adds the
    /// distance travelled since the previous one.
    #[inline]
    pub fn cycles(&mut self) -> u64 {
        // SAFETY: the core's SysTick current-value register.
        let v = unsafe { read_volatile(SYST_CVR as *const u32) } & 0x00FF_FFFF;
        self.ticks += u64::from(self.last.wrapping_sub(v) & 0x00FF_FFFF);
        self.last = v;
        self.ticks
    }

    /// Restarts the tick phase here. Serial I/O and waiting for the host take a number of
    /// instructions that depends on the host's pace, so the instant a measured stretch starts
    /// falls anywhere within a tick; writing the current-value register restarts the period at
    /// this instruction (QEMU reloads its timer from "now"), so a stretch counts its own
    /// instructions only: deterministic under -icount. The part-tick since the last edge is
    /// dropped (under one tick per stretch).
    #[inline]
    pub fn restart(&mut self) {
        self.cycles();
        // SAFETY: the core's SysTick current-value register.
        unsafe { write_volatile(SYST_CVR as *mut u32, 0) };
        self.last = 0;
    }
}
