//! The `posix` port of the profiling firmware: the portable core as a host program. It maps the
//! model file in place (mmap), opens its serial line (a pseudo-terminal the host created, in raw
//! mode; stdin/stdout without `--serial`), and runs the firmware loop on a thread of its own
//! whose stack is painted at start, so `MEM` reports a stack high-water mark as the bare-metal
//! ports do.
//!
//! Cycle counts on this port are host nanoseconds scaled to the emulated profile's clock
//! (`--clock-hz`): they measure the host CPU, not the real chip.
//!
//! With `--phase-fd N` the port writes one line `<CLOCK_MONOTONIC ns> <0|1>` to descriptor N at
//! the start (1) and end (0) of every compute phase: the emulated board's power model (in the
//! `virtual` platform plugin) follows it, as a bench instrument follows a board's timestamp GPIO.

use std::{
    fs::File,
    io::{Read, Write},
    os::fd::AsRawFd,
    time::Instant,
};

use fwcore::{
    fw::{self, Port},
    infer::{sizes, Clock, State},
    model::Model,
};

struct Args {
    model: String,
    serial: Option<String>,
    platform: String,
    clock_hz: u64,
    ram: u64,
    flash: u64,
    ctx: usize,
    phase_fd: Option<i32>,
    /// A Linux thermal zone's `temp` file (millidegrees), e.g. an SBC's SoC sensor.
    thermal: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: labctl-fw-posix --model FILE [--serial TTY] [--platform NAME] [--clock-hz N] [--ram BYTES] [--flash BYTES] [--ctx TOKENS] [--phase-fd FD] [--thermal /sys/class/thermal/thermal_zone0/temp]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        model: String::new(),
        serial: None,
        platform: "posix".into(),
        clock_hz: 1_000_000_000,
        ram: 0,
        flash: 0,
        ctx: 256,
        phase_fd: None,
        thermal: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| usage());
        let num = |v: &str| v.parse::<u64>().unwrap_or_else(|_| usage());
        match k.as_str() {
            "--model" => a.model = v,
            "--serial" => a.serial = Some(v),
            "--platform" => a.platform = v,
            "--clock-hz" => a.clock_hz = num(&v).max(1),
            "--ram" => a.ram = num(&v),
            "--flash" => a.flash = num(&v),
            "--ctx" => a.ctx = num(&v).max(1) as usize,
            "--phase-fd" => a.phase_fd = Some(num(&v) as i32),
            "--thermal" => a.thermal = Some(v),
            _ => usage(),
        }
    }
    if a.model.is_empty() {
        usage();
    }
    a
}

/// A read-only memory map of the model file ("flash").
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    fn open(path: &str) -> std::io::Result<Mapped> {
        let f = File::open(path)?;
        let len = f.metadata()?.len() as usize;
        if len == 0 {
            return Err(std::io::Error::other("model file is empty"));
        }
        // SAFETY: mapping a file we opened read-only; the mapping outlives every use (until exit).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapped { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: ptr/len describe a live read-only mapping.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

fn raw_mode(fd: i32) {
    // SAFETY: termios calls on a descriptor we own; failure leaves the line as it was.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSANOW, &t);
        }
    }
}

struct PosixPort {
    input: Box<dyn Read + Send>,
    output: Box<dyn Write + Send>,
    buf: [u8; 256],
    pos: usize,
    len: usize,
    start: Instant,
    args: Args,
    static_bytes: u64,
    stack: Option<Stack>,
}

/// The firmware thread's stack below the frame that painted it.
struct Stack {
    lo: usize,
    hi: usize,
}

/// Stack for the firmware thread: far more than the core needs (a few KiB), like a generous
/// MCU linker script.
const STACK_BYTES: usize = 1 << 20;

impl Stack {
    /// Paints this thread's unused stack (from just above its guard area up to a page below the
    /// caller's frame). Must run first thing on the firmware thread.
    #[inline(never)]
    fn paint() -> Option<Stack> {
        // SAFETY: pthread_getattr_np fills the attr we pass and we destroy it; the painted range
        // lies inside this thread's own mapped stack, below every live frame (a page of margin
        // under the current one), where nothing lives yet.
        unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
                return None;
            }
            let (mut addr, mut size) = (std::ptr::null_mut(), 0usize);
            let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
            libc::pthread_attr_destroy(&mut attr);
            if !ok {
                return None;
            }
            let lo = addr as usize + 64 * 1024;
            let hi = addr as usize + size;
            let marker = 0u8;
            let here = std::ptr::addr_of!(marker) as usize;
            fwcore::stack::paint(lo, here.checked_sub(4096)?);
            Some(Stack { lo, hi })
        }
    }

    /// Bytes from the stack's top down to the deepest word ever written.
    fn high_water(&self) -> u64 {
        // SAFETY: reads inside this thread's stack mapping, painted by `paint`.
        unsafe { fwcore::stack::high_water(self.lo, self.hi) }
    }
}

impl Clock for PosixPort {
    fn cycles(&mut self) -> u64 {
        let ns = self.start.elapsed().as_nanos();
        (ns * u128::from(self.args.clock_hz) / 1_000_000_000) as u64
    }
}

impl Port for PosixPort {
    fn read_byte(&mut self) -> Option<u8> {
        if self.pos == self.len {
            let _ = self.output.flush();
            loop {
                match self.input.read(&mut self.buf) {
                    Ok(0) => return None,
                    Ok(n) => {
                        self.pos = 0;
                        self.len = n;
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return None,
                }
            }
        }
        self.pos += 1;
        Some(self.buf[self.pos - 1])
    }

    fn write(&mut self, bytes: &[u8]) {
        let _ = self.output.write_all(bytes);
        let _ = self.output.flush();
    }

    fn micros(&mut self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn memory(&mut self) -> (u64, u64, u64) {
        // The arena is the firmware's static RAM; the core never allocates; the stack is the
        // firmware thread's, painted at its start (its top holds the thread's TLS and start-up
        // frames too, as an MCU's holds the reset handler's).
        let stack = self.stack.as_ref().map_or(0, Stack::high_water);
        (self.static_bytes, 0, stack)
    }

    fn temperature_c(&mut self) -> Option<f32> {
        // Missing, unreadable or not a number: no reading (the run's temperature stays NULL).
        let t = std::fs::read_to_string(self.args.thermal.as_ref()?).ok()?;
        let milli: i64 = t.trim().parse().ok()?;
        Some(milli as f32 / 1000.0)
    }

    fn platform(&self) -> &str {
        &self.args.platform
    }
    fn clock_hz(&self) -> u64 {
        self.args.clock_hz
    }
    fn ram_bytes(&self) -> u64 {
        self.args.ram
    }
    fn flash_bytes(&self) -> u64 {
        self.args.flash
    }
    fn phase(&mut self, computing: bool) {
        let Some(fd) = self.args.phase_fd else {
            return;
        };
        let line = format!("{} {}\n", monotonic_ns(), u8::from(computing));
        // SAFETY: writing a buffer we own to a descriptor the parent handed us; a failed write
        // only loses the power model's input, never the protocol.
        unsafe {
            libc::write(fd, line.as_ptr().cast(), line.len());
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock the host stamps its measurements on.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn main() {
    let args = parse_args();
    let fw = std::thread::Builder::new()
        .name("firmware".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let stack = Stack::paint();
            firmware(args, stack)
        })
        .expect("spawn the firmware thread");
    if fw.join().is_err() {
        std::process::exit(101);
    }
}

fn firmware(args: Args, stack: Option<Stack>) {
    let mapped = Mapped::open(&args.model).unwrap_or_else(|e| {
        eprintln!("labctl-fw-posix: cannot map {}: {e}", args.model);
        std::process::exit(1)
    });
    let model = Model::from_bytes(mapped.bytes()).unwrap_or_else(|e| {
        eprintln!("labctl-fw-posix: {}: {e}", args.model);
        std::process::exit(1)
    });
    let ctx = args.ctx.min(model.cfg.seq_len as usize);
    let need = sizes(&model.cfg, ctx);
    let (mut f, mut i, mut s) = (
        vec![0f32; need.f32s],
        vec![0i8; need.i8s],
        vec![0i32; need.i32s],
    );
    let mut state = State::new(&model.cfg, ctx, &mut f, &mut i, &mut s).expect("sized by sizes()");
    let (input, output): (Box<dyn Read + Send>, Box<dyn Write + Send>) = match &args.serial {
        Some(path) => {
            let tty = File::options()
                .read(true)
                .write(true)
                .open(path)
                .unwrap_or_else(|e| {
                    eprintln!("labctl-fw-posix: cannot open {path}: {e}");
                    std::process::exit(1)
                });
            raw_mode(tty.as_raw_fd());
            let out = tty.try_clone().expect("dup tty");
            (Box::new(tty), Box::new(out))
        }
        None => (Box::new(std::io::stdin()), Box::new(std::io::stdout())),
    };
    let mut port = PosixPort {
        input,
        output,
        buf: [0; 256],
        pos: 0,
        len: 0,
        start: Instant::now(),
        static_bytes: need.bytes() as u64,
        args,
        stack,
    };
    fw::run(&mut port, &model, &mut state);
}
