//! Ending a run: the exit marker, panics and fatal faults.
//!
//! Every run ends in [`exit`]: the other CPUs are parked, the line
//! `[[lodger:exit=N]]` is printed, and the machine powers off. The marker is
//! how the status reaches the host on every hypervisor (semihosting does not
//! exist under KVM); `cargo xtask` turns it into its own exit status.

use core::fmt;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use arch::{Cpu, Interrupts, Power};

use crate::{console, smp, A};

/// Exit statuses the kernel itself uses (apps return their own).
pub mod status {
    pub const SUCCESS: u8 = 0;
    /// An app reported failure (e.g. a self-test failed).
    pub const FAILURE: u8 = 1;
    /// Bad boot arguments or an unknown app.
    pub const USAGE: u8 = 2;
    /// The FDT lacked something the kernel needs.
    pub const BAD_PLATFORM: u8 = 3;
    /// A Rust panic on some CPU.
    pub const PANIC: u8 = 101;
    /// An unhandled exception (fault) on some CPU.
    pub const FAULT: u8 = 102;
}

/// Formats the exit marker line for `status`.
pub fn marker(status: u8) -> impl fmt::Display {
    struct Marker(u8);
    impl fmt::Display for Marker {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "[[lodger:exit={}]]", self.0)
        }
    }
    Marker(status)
}

/// Ends the run with `status`.
pub fn exit(status: u8) -> ! {
    smp::stop_others();
    crate::pv::cpu_off();
    console::print_line_forced(format_args!("{}", marker(status)));
    A::power_off()
}

/// Set by the first CPU to panic or fault; any later one only parks.
static DYING: AtomicBool = AtomicBool::new(false);

fn die(status: u8, report: fmt::Arguments<'_>) -> ! {
    if DYING.swap(true, Ordering::AcqRel) {
        A::irq_save();
        loop {
            A::wait_for_interrupt();
        }
    }
    A::irq_save();
    console::print_line_forced(report);
    exit(status)
}

/// The panic handler's body: CPU, location and message, then a failing exit.
pub fn panic(info: &PanicInfo<'_>) -> ! {
    let cpu = A::cpu_id();
    match info.location() {
        Some(loc) => die(
            status::PANIC,
            format_args!(
                "panicked on CPU {cpu} at {}:{}: {}",
                loc.file(),
                loc.line(),
                info.message()
            ),
        ),
        None => die(
            status::PANIC,
            format_args!("panicked on CPU {cpu}: {}", info.message()),
        ),
    }
}

/// The arch layer's `fatal` hook: an unhandled exception, already decoded.
pub(crate) fn fatal(report: fmt::Arguments<'_>) -> ! {
    die(status::FAULT, format_args!("FATAL: {report}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_format_is_what_xtask_parses() {
        assert_eq!(marker(0).to_string(), "[[lodger:exit=0]]");
        assert_eq!(marker(101).to_string(), "[[lodger:exit=101]]");
    }
}
