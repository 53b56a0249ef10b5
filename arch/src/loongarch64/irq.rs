//! CPU-local interrupts: the constant timer, and IPIs as per-CPU action bits
//! rung in by a doorbell.
//!
//! # IPIs: actions and doorbells
//! The PV IPI (KVM's FUNC_IPI) arrives as SWI0 and carries no vector, so what
//! an IPI asks for is not in the interrupt: it is in the target's action word
//! ([`ACTIONS`]), and the interrupt is only the doorbell that makes the target
//! look. Every IPI lodger sends (the kernel's, the TLB shootdown's) goes this
//! way, so one PV multicast can serve a whole shootdown.
//!
//! | action | asks for | handled by |
//! |---|---|---|
//! | [`ACTION_KERNEL`] | the kernel's IPI ("look at your mailbox") | the kernel's `irq` hook ([`Irq::Ipi`]) |
//! | [`ACTION_TLB_FLUSH`] | invalidate your TLB | [`super::mmu::on_flush_ipi`], never seen by the kernel |
//!
//! | doorbell | used | arrives as | cleared by |
//! |---|---|---|---|
//! | FUNC_IPI, one `hvcl` per window of 128 physical ids | the PV IPI is in use ([`super::pv::ring`]) | SWI0 (ESTAT.IS bit 0) | clearing ESTAT bit 0 |
//! | IOCSR IPI vector 0 ([`IPI_DOORBELL`]), one write per target | otherwise, and for CPUs a FUNC_IPI was refused for | the IPI line (ESTAT.IS bit 12) | writing the vector to IOCSR IPI_CLEAR |
//!
//! The receiver accepts both, whichever is in use. IOCSR vector 2
//! ([`IPI_START`]) only wakes secondaries parked in the firmware; the
//! secondary start stays on the native mailbox even with the PV IPI.
//!
//! A sender rings only when the action word was empty: a non-empty word has a
//! doorbell outstanding that will make the target read the new bits too.
//!
//! ```text
//!   sender                                   target t (interrupt, masked)
//!   [S] the data the action announces
//!   [S] old = ACTIONS[t].fetch_or(a) (Release)
//!   if old == 0:
//!       fence; ring t  ------------------->  clear the doorbell (SWI0 / IOCSR vector)
//!                                            fence
//!                                            [L] a = ACTIONS[t].swap(0) (Acquire)
//!                                            run the actions in a
//! ```
//!
//! Invariant: while `ACTIONS[t] != 0`, a doorbell of t is pending, or t is
//! between clearing one and its swap. (The first bit after a swap rings;
//! clearing comes before the swap, so a ring the swap did not account for
//! stays pending and at worst causes one empty pass.)
//!
//! Device interrupts (EIOINTC / PCH-PIC) are not used: lodger's console is
//! polled, so only SWI0, the timer and the IPI line are enabled in ECFG.LIE.

use core::sync::atomic::{fence, AtomicU32, Ordering};

use loongArch64::consts::{
    LOONGARCH_IOCSR_IPI_CLEAR, LOONGARCH_IOCSR_IPI_EN, LOONGARCH_IOCSR_IPI_STATUS,
};
use loongArch64::iocsr::{iocsr_read_w, iocsr_write_w};
use loongArch64::register::{ecfg, estat};

use crate::pv::CpuMask;
use crate::tlb::Sent;
use crate::{Irq, MAX_CPUS};

use super::csr;

/// IOCSR IPI vector bits (status / enable / clear words).
/// The native doorbell.
pub(super) const IPI_DOORBELL: u32 = 1 << 0;
/// Wakes a secondary parked in the firmware ([`super::smp`]); never enabled
/// once lodger runs on a CPU, so a late repeat is never taken.
pub(super) const IPI_START: u32 = 1 << 2;

/// Action bits.
pub(super) const ACTION_KERNEL: u32 = 1 << 0;
pub(super) const ACTION_TLB_FLUSH: u32 = 1 << 1;

/// Each CPU's pending actions: set by senders, taken by the CPU's doorbell
/// handler ([`run_actions`]).
static ACTIONS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// Enables this CPU's doorbells and the SWI0, timer and IPI lines.
pub(super) fn init_cpu() {
    // Drop whatever the firmware's start IPI left, then enable our vector.
    iocsr_write_w(LOONGARCH_IOCSR_IPI_CLEAR, u32::MAX);
    iocsr_write_w(LOONGARCH_IOCSR_IPI_EN, IPI_DOORBELL);
    check_swi0();
    // SAFETY: ECFG: VS = 0 (one entry for every exception and interrupt,
    // CSR.EENTRY, installed at entry) and only the SWI0, timer and IPI lines
    // enabled; CRMD.IE still masks them until the kernel enables interrupts.
    unsafe { csr::write::<{ csr::ECFG }>(csr::INT_SWI0 | csr::INT_TIMER | csr::INT_IPI) };
}

/// Withdraws SWI0 on this CPU (the PV IPI's doorbell).
fn clear_swi0() {
    // SAFETY: clears ESTAT.IS bit 0 only, a software-writable pending bit;
    // the rest of ESTAT is untouched (masked update).
    unsafe { csr::exchange::<{ csr::ESTAT }>(0, csr::INT_SWI0) };
}

/// Raises SWI0 on this CPU, checks ESTAT shows it, and clears it with the
/// handler's own [`clear_swi0`]. Without KVM nothing else sends SWI0, so this
/// is the only exercise the PV IPI's receive path gets under TCG. Called with
/// interrupts masked (CRMD.IE = 0), so nothing is taken.
fn check_swi0() {
    // SAFETY: sets ESTAT.IS bit 0 only (a software-writable pending bit);
    // it is cleared again below before SWI0 is enabled.
    unsafe { csr::exchange::<{ csr::ESTAT }>(csr::INT_SWI0, csr::INT_SWI0) };
    let raised = estat::read().raw() & csr::INT_SWI0 != 0;
    clear_swi0();
    let cleared = estat::read().raw() & csr::INT_SWI0 == 0;
    assert!(
        raised && cleared,
        "ESTAT.SWI0 does not follow software writes (raised {raised}, cleared {cleared})"
    );
}

/// Sends the IOCSR IPI `vectors` to the CPU with physical id `hw_id`.
pub(super) fn send(hw_id: u64, vectors: u32) {
    // The stores the IPI announces (action word, mailbox) must be visible
    // before it arrives: a full `dbar` before the IOCSR write.
    fence(Ordering::SeqCst);
    // Blocking send: returns once the target's status bit is set.
    loongArch64::ipi::send_ipi_single(hw_id as usize, vectors);
}

/// Asks every CPU in `targets` for `action`, ringing the doorbell of those
/// that had no action pending: one PV multicast for all of them when the PV
/// IPI is in use, else an IOCSR IPI each. Returns what it sent.
pub(super) fn raise(targets: CpuMask, action: u32) -> Sent {
    let mut ring = CpuMask::default();
    for cpu in targets.iter().filter(|&c| c < MAX_CPUS) {
        // Release: what the action announces (the kernel's mailbox,
        // FLUSH_PENDING) is visible before the bit; pairs with the Acquire
        // swap in `run_actions`.
        if ACTIONS[cpu].fetch_or(action, Ordering::Release) == 0 {
            ring = ring.with(cpu);
        }
    }
    if ring.is_empty() {
        return Sent::default();
    }
    // SeqCst: the action bits are visible before any doorbell rings (the
    // target reads them after clearing the doorbell).
    fence(Ordering::SeqCst);
    super::pv::ring(ring).unwrap_or_else(|| {
        let hw_id = &super::platform().hw_id;
        let mut sent = Sent::default();
        for cpu in ring.iter() {
            send(hw_id[cpu], IPI_DOORBELL);
            sent.ipis += 1;
        }
        sent
    })
}

/// Takes and runs this CPU's actions; called after a doorbell was cleared.
fn run_actions() {
    // SeqCst: the doorbell was cleared before the word is read, so a ring
    // for bits this swap misses stays pending (see the invariant above).
    fence(Ordering::SeqCst);
    // Acquire: pairs with the Release `fetch_or` in `raise`.
    let actions = ACTIONS[super::cpu_id()].swap(0, Ordering::Acquire);
    // The TLB first: the kernel's IPI may park this CPU for good.
    if actions & ACTION_TLB_FLUSH != 0 {
        super::mmu::on_flush_ipi();
    }
    if actions & ACTION_KERNEL != 0 {
        (super::hooks().irq)(Irq::Ipi);
    }
}

/// Dispatches every pending, enabled interrupt; called by the trap code with
/// ESTAT (Ecode = 0: an interrupt).
pub(super) fn handle(estat: usize) {
    let pending = estat & ecfg::read().raw() & csr::INT_ALL;
    if pending & csr::INT_TIMER != 0 {
        super::timer::silence();
        (super::hooks().irq)(Irq::Timer);
    }
    // Clear every doorbell before taking the actions (see the diagram).
    let mut doorbell = false;
    if pending & csr::INT_SWI0 != 0 {
        clear_swi0();
        doorbell = true;
    }
    if pending & csr::INT_IPI != 0 {
        let status = iocsr_read_w(LOONGARCH_IOCSR_IPI_STATUS);
        iocsr_write_w(LOONGARCH_IOCSR_IPI_CLEAR, status);
        doorbell |= status & IPI_DOORBELL != 0;
    }
    if doorbell {
        run_actions();
    }
    let others = pending & !(csr::INT_SWI0 | csr::INT_TIMER | csr::INT_IPI);
    for line in (0..13).filter(|line| others & (1 << line) != 0) {
        // Not enabled by lodger: report it like an unknown controller line.
        (super::hooks().irq)(Irq::Other(line));
    }
}
