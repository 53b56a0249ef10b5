//! The EL1 virtual generic timer: CNTVCT_EL0 is guest time on every host
//! (under KVM the host keeps CNTVOFF; at EL2 entry lodger sets it to 0).

use aarch64_cpu::registers::{
    Readable, Writeable, CNTFRQ_EL0, CNTVCT_EL0, CNTV_CTL_EL0, CNTV_TVAL_EL0,
};

pub(super) fn ticks() -> u64 {
    // The ISB keeps the read from being hoisted above earlier instructions.
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    CNTVCT_EL0.get()
}

pub(super) fn ticks_per_sec() -> u64 {
    CNTFRQ_EL0.get()
}

pub(super) fn arm(ticks: u64) {
    CNTV_TVAL_EL0.set(ticks.min(i32::MAX as u64));
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
}

/// Stops the (level-triggered) timer interrupt until the next [`arm`].
pub(super) fn silence() {
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::CLEAR);
}
