//! ns16550 transmit path (polled), register shift 0 (byte registers), reached
//! through the uncached window. QEMU has set the line up; lodger only writes.

use core::sync::atomic::{AtomicUsize, Ordering};

/// Transmit holding register and line status register offsets (bytes);
/// LSR.THRE = the transmitter can take a byte.
const UART_THR: usize = 0;
const UART_LSR: usize = 5;
const LSR_THRE: u8 = 1 << 5;

/// Uncached (DMW0) address of the UART, 0 until [`init`].
static BASE: AtomicUsize = AtomicUsize::new(0);

/// # Safety
/// `pa` must be the physical address of an ns16550 with byte registers.
pub(super) unsafe fn init(pa: usize) {
    BASE.store(super::mmu::uncached(pa), Ordering::Release);
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
    // SAFETY: `init` was given an ns16550; DMW0 maps it uncached, and LSR
    // and THR are byte registers.
    unsafe {
        while core::ptr::read_volatile((base + UART_LSR) as *const u8) & LSR_THRE == 0 {
            core::hint::spin_loop();
        }
        core::ptr::write_volatile((base + UART_THR) as *mut u8, byte);
    }
}
