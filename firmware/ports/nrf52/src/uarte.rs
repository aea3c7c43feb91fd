//! The console: UARTE0 (the UART with EasyDMA) on the nRF52840-DK's virtual COM port pins
//! (P0.06 TXD, P0.08 RXD, no flow control) at 115200 8N1, polled. EasyDMA moves bytes between
//! the UART and RAM only, so each byte goes through a one-byte RAM buffer: received with
//! RXD.MAXCNT = 1 and ENDRX (the receiver's FIFO holds what arrives before the next STARTRX),
//! sent with TXD.MAXCNT = 1 and ENDTX.

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

const U: usize = 0x4000_2000;
const TASKS_STARTRX: usize = U;
const TASKS_STARTTX: usize = U + 0x008;
const EVENTS_ENDRX: usize = U + 0x110;
const EVENTS_ENDTX: usize = U + 0x120;
const ENABLE: usize = U + 0x500;
const PSEL_TXD: usize = U + 0x50C;
const PSEL_RXD: usize = U + 0x514;
const BAUDRATE: usize = U + 0x524;
const RXD_PTR: usize = U + 0x534;
const RXD_MAXCNT: usize = U + 0x538;
const TXD_PTR: usize = U + 0x544;
const TXD_MAXCNT: usize = U + 0x548;
/// BAUDRATE's value for 115200 baud (nRF52840 product specification, UARTE).
const BAUD_115200: u32 = 0x01D7_E000;
/// GPIO P0's pin configuration registers (PIN_CNF[n]).
const P0_PIN_CNF: usize = 0x5000_0700;
const TX_PIN: u32 = 6;
const RX_PIN: u32 = 8;

static mut RX: u8 = 0;
static mut TX: u8 = 0;

fn rd(a: usize) -> u32 {
    // SAFETY: a UARTE0/GPIO register.
    unsafe { read_volatile(a as *const u32) }
}
fn wr(a: usize, v: u32) {
    // SAFETY: as above.
    unsafe { write_volatile(a as *mut u32, v) }
}

/// Configures the pins (TXD an output driven high, RXD an input), enables UARTE0 at 115200 and
/// starts the first one-byte reception.
pub fn init() {
    wr(P0_PIN_CNF + 4 * TX_PIN as usize, 1);
    wr(P0_PIN_CNF + 4 * RX_PIN as usize, 0);
    // OUTSET for P0: the line idles high.
    wr(0x5000_0508, 1 << TX_PIN);
    wr(PSEL_TXD, TX_PIN);
    wr(PSEL_RXD, RX_PIN);
    wr(BAUDRATE, BAUD_115200);
    wr(ENABLE, 8);
    start_rx();
}

fn start_rx() {
    wr(RXD_PTR, addr_of_mut!(RX) as u32);
    wr(RXD_MAXCNT, 1);
    wr(EVENTS_ENDRX, 0);
    wr(TASKS_STARTRX, 1);
}

pub fn byte_ready() -> bool {
    rd(EVENTS_ENDRX) != 0
}

/// The received byte; the next reception starts at once.
pub fn read() -> u8 {
    // SAFETY: EasyDMA finished writing RX (ENDRX) and starts again only in start_rx.
    let b = unsafe { read_volatile(addr_of!(RX)) };
    start_rx();
    b
}

pub fn write(b: u8) {
    // SAFETY: no transfer is running: each write waits for its ENDTX.
    unsafe { write_volatile(addr_of_mut!(TX), b) };
    wr(TXD_PTR, addr_of!(TX) as u32);
    wr(TXD_MAXCNT, 1);
    wr(EVENTS_ENDTX, 0);
    wr(TASKS_STARTTX, 1);
    for _ in 0..1_000_000 {
        if rd(EVENTS_ENDTX) != 0 {
            return;
        }
    }
}
