//! The bootable lodger image: the arch entry calls in here, and this crate
//! hands the kernel its heap and the list of apps. It also owns the two
//! language items a bare-metal binary must define once.

#![no_std]
#![no_main]

use arch::BootHandoff;
use kernel::heap::Heap;

#[global_allocator]
static HEAP: Heap = Heap::empty();

/// Called by the arch entry code on the boot CPU, MMU on, interrupts masked.
#[unsafe(no_mangle)]
fn lodger_primary_entry(handoff: &BootHandoff) -> ! {
    kernel::boot::primary(handoff, &HEAP, apps::ALL)
}

/// Called by the arch entry code on every other CPU.
#[unsafe(no_mangle)]
fn lodger_secondary_entry(cpu: usize) -> ! {
    kernel::boot::secondary(cpu)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    kernel::exit::panic(info)
}
