//! The console: whole lines, never interleaved between CPUs.
//!
//! One [`SpinNoIrq`] serialises every line, held from the first byte of a
//! line to its newline, so two CPUs' lines never mix. The `log` backend
//! prefixes each record with guest time and the CPU:
//! `[   0.012345 1] message` (`W`/`E`/`D`/`T` after the CPU for other levels).
//! [`println!`](crate::println) writes a bare line (machine-readable output).

use core::fmt::{self, Write};

use arch::{Console, Cpu};

use crate::sync::SpinNoIrq;
use crate::{time, A};

static CONSOLE: SpinNoIrq<Writer> = SpinNoIrq::new(Writer);

/// Raw writer to the console; only used with [`CONSOLE`] held.
pub struct Writer;

impl Write for Writer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        A::console_write(s.as_bytes());
        Ok(())
    }
}

/// Prints one line (a newline is added).
pub fn print_line(args: fmt::Arguments<'_>) {
    let mut out = CONSOLE.lock();
    let _ = writeln!(out, "{args}");
}

/// Prints one line from a path that may run while another CPU is stuck
/// holding the console (panic, fault): waits a little, then takes it anyway.
pub fn print_line_forced(args: fmt::Arguments<'_>) {
    const ATTEMPTS: usize = 1_000_000;
    if let Some(mut out) = CONSOLE.try_lock_for(ATTEMPTS) {
        let _ = writeln!(out, "{args}");
        return;
    }
    // SAFETY: the holder has been stopped or is itself stuck; losing the
    // integrity of its half-printed line is the lesser evil.
    unsafe { CONSOLE.force_unlock() };
    let mut out = CONSOLE.lock();
    let _ = writeln!(out, "{args}");
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::print_line(format_args!($($arg)*))
    };
}

struct Logger;

static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let ns = time::now_ns();
        let tag = match record.level() {
            log::Level::Error => " E",
            log::Level::Warn => " W",
            log::Level::Info => "",
            log::Level::Debug => " D",
            log::Level::Trace => " T",
        };
        print_line(format_args!(
            "[{:4}.{:06} {}{}] {}",
            ns / 1_000_000_000,
            ns % 1_000_000_000 / 1000,
            A::cpu_id(),
            tag,
            record.args()
        ));
    }

    fn flush(&self) {}
}

/// Installs the `log` backend at `level`.
pub fn init_log(level: log::LevelFilter) {
    // Only fails if a logger is already set, which is then the one in use.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
