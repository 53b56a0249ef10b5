//! PL011 transmit path (polled). The boot loader or QEMU has set the line up;
//! lodger only writes bytes, so a crate's full driver would add nothing.

use core::sync::atomic::{AtomicUsize, Ordering};

/// Data register and flag register offsets; FR.TXFF = transmit FIFO full.
const UART_DR: usize = 0x00;
const UART_FR: usize = 0x18;
const FR_TXFF: u32 = 1 << 5;

static BASE: AtomicUsize = AtomicUsize::new(0);

/// # Safety
/// `base` must be a PL011 mapped as device memory.
pub(super) unsafe fn init(base: usize) {
    BASE.store(base, Ordering::Release);
}

pub(super) fn write(bytes: &[u8]) {
    let base = BASE.load(Ordering::Acquire);
    if base == 0 {
        return; // No console yet: nothing can be shown.
    }
    for &b in bytes {
        put(base, b);
    }
}

fn put(base: usize, byte: u8) {
    // SAFETY: `init` was given a mapped PL011; FR and DR are 32-bit registers.
    unsafe {
        while core::ptr::read_volatile((base + UART_FR) as *const u32) & FR_TXFF != 0 {
            core::hint::spin_loop();
        }
        core::ptr::write_volatile((base + UART_DR) as *mut u32, u32::from(byte));
    }
}
