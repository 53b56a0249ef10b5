//! The PL011 transmit path (polled), shared with the guest: pvhost writes
//! only whole lines, and only at boot, on errors and at SYSTEM_OFF, when
//! the guest is not printing.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

/// QEMU `virt`'s PL011, used until the DTB names one (early errors).
const QEMU_VIRT_PL011: u64 = 0x0900_0000;
const UART_DR: u64 = 0x00;
const UART_FR: u64 = 0x18;
const FR_TXFF: u32 = 1 << 5;

static BASE: AtomicU64 = AtomicU64::new(QEMU_VIRT_PL011);
static LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Uses the PL011 at `base` (from the DTB).
pub fn init(base: u64) {
    BASE.store(base, Ordering::Relaxed);
}

struct Uart(u64);

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: a PL011 in the device window, which the EL2 map covers
            // as Device memory; FR and DR are 32-bit registers.
            unsafe {
                while core::ptr::read_volatile((self.0 + UART_FR) as *const u32) & FR_TXFF != 0 {
                    core::hint::spin_loop();
                }
                core::ptr::write_volatile((self.0 + UART_DR) as *mut u32, u32::from(b));
            }
        }
        Ok(())
    }
}

/// Prints one line.
pub fn line(args: fmt::Arguments<'_>) {
    let _guard = LOCK.lock();
    let mut uart = Uart(BASE.load(Ordering::Relaxed));
    let _ = uart.write_fmt(args);
    let _ = uart.write_str("\n");
}
