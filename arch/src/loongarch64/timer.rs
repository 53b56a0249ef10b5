//! The constant timer: the stable counter (`rdtime.d`, shared by all CPUs)
//! for time, and each CPU's countdown timer (CSR.TCFG) for its tick, used
//! one-shot: [`arm`] loads it, it interrupts once at zero and stops.

use loongArch64::time::{get_timer_freq, Time};

use super::csr;

pub(super) fn ticks() -> u64 {
    Time::read() as u64
}

/// CPUCFG word 4 (base frequency) times word 5's multiplier / divider.
pub(super) fn ticks_per_sec() -> u64 {
    get_timer_freq() as u64
}

/// Interrupts this CPU once, `ticks` counter ticks from now.
pub(super) fn arm(ticks: u64) {
    // The countdown's initial value is a multiple of 4 (its two low bits are
    // not stored) and must not be 0.
    let init = (ticks.next_multiple_of(4) as usize).clamp(4, csr::TCFG_INIT_MASK);
    // SAFETY: TCFG only controls this CPU's timer: enabled, one-shot.
    unsafe { csr::write::<{ csr::TCFG }>(init | csr::TCFG_EN) };
}

/// Withdraws the timer interrupt (it stays raised until cleared).
pub(super) fn silence() {
    // SAFETY: TICLR.CLR only clears the timer interrupt.
    unsafe { csr::write::<{ csr::TICLR }>(csr::TICLR_CLR) };
}
