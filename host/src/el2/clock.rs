//! Time on a pCPU: the physical counter (the guest's clock too: CNTVOFF =
//! 0) and its conversions to and from nanoseconds.

use super::{facts, sysreg};

/// The physical counter, read after everything before it.
pub fn ticks() -> u64 {
    // SAFETY: an ISB only orders the counter read after what came before.
    unsafe { core::arch::asm!("isb", options(nomem, nostack, preserves_flags)) };
    sysreg!("cntpct_el0")
}

pub fn ticks_to_ns(ticks: u64) -> u64 {
    (u128::from(ticks) * 1_000_000_000 / u128::from(facts().counter_hz)) as u64
}

pub fn ns_to_ticks(ns: u64) -> u64 {
    (u128::from(ns) * u128::from(facts().counter_hz) / 1_000_000_000) as u64
}

/// Host time (= guest time), in ns.
pub fn now_ns() -> u64 {
    ticks_to_ns(ticks())
}
