//! CPU-local interrupts: the constant timer and IPIs over IOCSR.
//!
//! Each CPU has its own IOCSR IPI block (the same addresses reach the
//! calling CPU's registers): 32 vectors with a status word (a bit per vector
//! sent and not yet cleared), an enable word, and a clear word. A vector
//! sent to a CPU sets its status bit; while `status & enable` is non-zero the
//! CPU's IPI line (ESTAT.IS bit 12) is raised. lodger uses two vectors:
//!
//! | vector | meaning | handled by |
//! |---|---|---|
//! | 0 | the kernel's IPI ("look at your mailbox") | the kernel's `irq` hook ([`Irq::Ipi`]) |
//! | 1 | invalidate your TLB | [`super::mmu::on_flush_ipi`], never seen by the kernel |
//! | 2 | start (firmware wake-up) | the firmware; disabled once lodger runs |
//!
//! Device interrupts (EIOINTC / PCH-PIC) are not used: lodger's console is
//! polled, so only the timer and IPI lines are enabled in ECFG.LIE.

use core::sync::atomic::{fence, Ordering};

use loongArch64::consts::{
    LOONGARCH_IOCSR_IPI_CLEAR, LOONGARCH_IOCSR_IPI_EN, LOONGARCH_IOCSR_IPI_STATUS,
};
use loongArch64::iocsr::{iocsr_read_w, iocsr_write_w};
use loongArch64::register::ecfg;

use crate::Irq;

use super::csr;

/// IPI vector bits (IOCSR IPI status / enable / clear words).
pub(super) const IPI_KERNEL: u32 = 1 << 0;
pub(super) const IPI_TLB_FLUSH: u32 = 1 << 1;
/// Wakes a secondary parked in the firmware ([`super::smp`]); never enabled
/// once lodger runs on a CPU, so a late repeat is never taken.
pub(super) const IPI_START: u32 = 1 << 2;

/// Enables this CPU's IPI vectors and the timer and IPI lines.
pub(super) fn init_cpu() {
    // Drop whatever the firmware's start IPI left, then enable our vectors.
    iocsr_write_w(LOONGARCH_IOCSR_IPI_CLEAR, u32::MAX);
    iocsr_write_w(LOONGARCH_IOCSR_IPI_EN, IPI_KERNEL | IPI_TLB_FLUSH);
    // SAFETY: ECFG: VS = 0 (one entry for every exception and interrupt,
    // CSR.EENTRY, installed at entry) and only the timer and IPI lines
    // enabled; CRMD.IE still masks them until the kernel enables interrupts.
    unsafe { csr::write::<{ csr::ECFG }>(csr::INT_TIMER | csr::INT_IPI) };
}

/// Sends the IPI `vectors` to the CPU with physical id `hw_id`.
pub(super) fn send(hw_id: u64, vectors: u32) {
    // The stores the IPI announces (mailbox, flush flag) must be visible
    // before it arrives: a full `dbar` before the IOCSR write.
    fence(Ordering::SeqCst);
    // Blocking send: returns once the target's status bit is set.
    loongArch64::ipi::send_ipi_single(hw_id as usize, vectors);
}

/// Dispatches every pending, enabled interrupt; called by the trap code with
/// ESTAT (Ecode = 0: an interrupt).
pub(super) fn handle(estat: usize) {
    let pending = estat & ecfg::read().raw() & csr::INT_ALL;
    if pending & csr::INT_TIMER != 0 {
        super::timer::silence();
        (super::hooks().irq)(Irq::Timer);
    }
    if pending & csr::INT_IPI != 0 {
        // Clear before handling: a vector sent while the hook runs is then
        // pending again and taken after it.
        let status = iocsr_read_w(LOONGARCH_IOCSR_IPI_STATUS);
        iocsr_write_w(LOONGARCH_IOCSR_IPI_CLEAR, status);
        if status & IPI_TLB_FLUSH != 0 {
            super::mmu::on_flush_ipi();
        }
        if status & IPI_KERNEL != 0 {
            (super::hooks().irq)(Irq::Ipi);
        }
    }
    let others = pending & !(csr::INT_TIMER | csr::INT_IPI);
    for line in (0..13).filter(|line| others & (1 << line) != 0) {
        // Not enabled by lodger: report it like an unknown controller line.
        (super::hooks().irq)(Irq::Other(line));
    }
}
