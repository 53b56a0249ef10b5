//! The paravirtual view: the one place the rest of the kernel learns what
//! the host offers, with a native answer for everything.
//!
//! | query | with PV | native fallback |
//! |---|---|---|
//! | [`steal_ns`] | the host's steal clock | 0 |
//! | [`sched_steal_ns`] | the steal the scheduler takes out of run time: the steal clock, or 0 with `no-steal-acc` | 0 |
//! | [`vcpu_is_preempted`] | the host's preempted flag | false |
//! | [`send_ipi_mask`] | one multicast hypercall (LoongArch PV IPI) | one IPI per CPU |
//! | [`wait`] / [`kick`] | halt, woken by the host's kick (PV sched) | WFI / `idle`, woken by an IPI |
//! | [`lock_slow_path`] | qspinlock waiters spin, then halt until kicked | they only spin |
//!
//! The probe runs once on the boot CPU ([`init`]) as the boot switches allow;
//! its one-line report says what was found, what is used and why not the
//! rest. Nothing here is consulted on a fast path when PV is off: each query
//! is one arch call that finds no record and returns the native answer.

use core::sync::atomic::{AtomicBool, Ordering};

pub mod kicks;

use arch::pv::{CpuMask, Hypervisor, PvFeature, PvReport, PvSwitches};
use arch::{Cpu, Interrupts, Pv, Smp};

pub use arch::pv::{RawCallError, RawConvention, RawRegs};

use crate::sync::SlowPath;
use crate::A;

static REPORT: spin::Once<PvReport> = spin::Once::new();
/// How qspinlock waiters wait: chosen once, at boot, before any other CPU
/// runs ([`init`]); never changed after (a native pending waiter and a
/// halting head on one lock would both own it).
static LOCK_SLOW_PATH: spin::Once<SlowPath> = spin::Once::new();
/// Whether the scheduler takes steal out of run time (Linux's
/// `paravirt_steal_rq_enabled`): set at boot before any CPU accounts
/// ([`set_steal_accounting`]); `no-steal-acc` clears it.
static STEAL_ACC: AtomicBool = AtomicBool::new(true);

/// Probes the host (boot CPU, before the secondaries, interrupts masked),
/// and chooses the qspinlock slow path.
///
/// The halting slow path (spin a while, then `wait`; the unlocker `kick`s)
/// is the default everywhere: it needs nothing from the host (WFI/`idle` and
/// an IPI natively; PV sched's kick and preempted flags when offered), and
/// any vCPU may be preempted by its host without the guest being told — TCG
/// runs each vCPU as a host thread, and 8 of them on 2 host cores made the
/// spin-only path take minutes where the halting one takes seconds.
/// `pv=off` or `pv.lock=off` selects the spin-only path (Linux's on bare metal).
pub(crate) fn init(switches: &PvSwitches) {
    REPORT.call_once(|| A::pv_probe(switches));
    // The probe registered the boot CPU; this reports a fallback there.
    init_cpu(0);
    let halting = switches.enabled && switches.lock.wanted();
    LOCK_SLOW_PATH.call_once(|| {
        if halting {
            SlowPath::Halt
        } else {
            SlowPath::Spin
        }
    });
}

/// One line on how qspinlock waiters wait and why, for the boot report.
pub fn lock_slow_path_summary() -> &'static str {
    macro_rules! halting {
        ($kicked_by:literal) => {
            concat!(
                "qspinlock halt-and-kick with lock stealing (the default: measured best on every host, docs/bench.md); kicked by ",
                $kicked_by
            )
        };
    }
    match (lock_slow_path(), report().uses(PvFeature::Sched)) {
        (SlowPath::Halt, true) => halting!("PV sched KICK_CPU"),
        (SlowPath::Halt, false) => halting!("IPI"),
        (SlowPath::Spin, _) => "qspinlock native spinning (pv.lock=off or pv=off)",
    }
}

/// How qspinlock waiters wait (native spinning until [`init`] chose).
#[inline(always)] // Read on every qspinlock slow-path entry.
pub fn lock_slow_path() -> SlowPath {
    LOCK_SLOW_PATH.get().copied().unwrap_or(SlowPath::Spin)
}

/// Registers a secondary CPU's per-vCPU records (the boot CPU's: says how
/// the probe's registration went). A feature that fails runs native on
/// that CPU only, in one line naming each and why, and what it keeps.
pub(crate) fn init_cpu(cpu: usize) {
    if let Some(why) = A::pv_init_cpu(cpu) {
        log::warn!("pv: CPU {cpu} falls back: {why}; other CPUs keep PV");
    }
}

/// What the probe found (the boot report).
pub fn report() -> &'static PvReport {
    REPORT.get().expect("pv::report() before pv::init()")
}

/// Whether the probe found no hypervisor at all (bare metal, TCG, SMCCC
/// 1.0); false if it found one or was not run (`pv=off`).
pub fn no_hypervisor() -> bool {
    report().hypervisor == Hypervisor::None
}

/// Whether the host says when it preempts a vCPU (the preempted flags:
/// LoongArch's `preempt`, arm64 PV sched): a host that preempts vCPUs.
pub fn reports_preemption() -> bool {
    let report = report();
    report.uses(PvFeature::Preempt) || report.uses(PvFeature::Sched)
}

/// Whether a steal clock is in use.
pub fn has_steal_clock() -> bool {
    report().uses(PvFeature::Time)
}

/// Nanoseconds of `cpu`'s time the host has stolen (0 without a steal clock).
pub fn steal_ns(cpu: usize) -> u64 {
    A::pv_steal_ns(cpu).unwrap_or(0)
}

/// Sets whether the scheduler takes steal out of run time (boot CPU,
/// before its scheduler starts; `no-steal-acc` turns it off). The steal
/// clock is read either way ([`steal_ns`]): only the accounting changes.
pub(crate) fn set_steal_accounting(on: bool) {
    STEAL_ACC.store(on, Ordering::Relaxed);
}

/// Whether the scheduler takes steal out of run time: a steal clock in
/// use and no `no-steal-acc`.
pub fn steal_accounted() -> bool {
    has_steal_clock() && STEAL_ACC.load(Ordering::Relaxed)
}

/// The steal clock as the scheduler's accounting sees it: [`steal_ns`],
/// or 0 with `no-steal-acc` (all time then counts as the running
/// thread's, as without a steal clock).
pub fn sched_steal_ns(cpu: usize) -> u64 {
    if STEAL_ACC.load(Ordering::Relaxed) {
        steal_ns(cpu)
    } else {
        0
    }
}

/// The boot report's line on `no-steal-acc`, when it was given (without
/// it steal is taken out of run time wherever the steal clock is used:
/// the `pv:` line's `time: used`).
pub fn steal_accounting_note() -> Option<&'static str> {
    steal_accounting_text(has_steal_clock(), STEAL_ACC.load(Ordering::Relaxed))
}

fn steal_accounting_text(clock: bool, acc: bool) -> Option<&'static str> {
    match (clock, acc) {
        (_, true) => None,
        (true, false) => {
            Some("off (no-steal-acc: the steal clock is read, but steal stays in run time)")
        }
        (false, false) => Some("off (no-steal-acc; no steal clock either)"),
    }
}

/// Whether the host says `cpu`'s vCPU is preempted right now: a hint only.
/// True means it was taken off its CPU; false means "not known to be
/// preempted" (the host does not say, sets its flag only on involuntary
/// preemptions, or has not cleared it yet), never "running" (docs/abi.md,
/// "The preempted flags are hints").
pub fn vcpu_is_preempted(cpu: usize) -> bool {
    A::pv_vcpu_preempted(cpu).unwrap_or(false)
}

/// At each tick of the calling CPU (interrupts masked): its own preempted
/// flag must read clear, else it is a host fault, said once and that
/// CPU's flag ignored from then on ([`arch::pv::PreemptedGuard`]).
pub(crate) fn check_own_preempted() {
    A::pv_check_own_preempted(A::cpu_id());
}

/// Sends the IPI to every CPU in `mask`.
pub fn send_ipi_mask(mask: CpuMask) {
    if !A::pv_send_ipi_mask(mask) {
        mask.iter().for_each(A::send_ipi);
    }
}

/// Halts the calling CPU while `still()`, until kicked or interrupted.
/// May return early (spuriously): callers re-check in a loop. Bounded: the
/// CPU's tick ends every halt, armed for the purpose if the halt is inside
/// the timer interrupt ([`crate::time::bound_halt`]).
pub fn wait(still: &dyn Fn() -> bool) {
    let me = A::cpu_id();
    let start = kicks::before_halt(me);
    let irq = A::irq_save();
    // Checked with interrupts masked: a kick (IPI) arriving after the check
    // stays pending and ends the halt at once.
    if still() {
        crate::time::bound_halt();
        A::wait_for_interrupt();
    }
    A::irq_restore(irq);
    kicks::after_halt(me, start);
}

/// Wakes `cpu` from [`wait`]: the host's PV kick where offered, unless its
/// kicks to `cpu` proved late or lost ([`kicks`]); an IPI otherwise.
pub fn kick(cpu: usize) {
    if !kicks::by_ipi(cpu) {
        let stamp = kicks::sent(cpu);
        if A::pv_kick(cpu) {
            return;
        }
        kicks::not_sent(cpu, stamp); // Only PV kicks are judged.
    }
    A::send_ipi(cpu);
}

/// The calling CPU stops for good: release its PV registrations.
pub(crate) fn cpu_off() {
    A::pv_cpu_off();
}

/// One raw hypercall in the host's convention ([`RawRegs`]), for the
/// hypercall fuzz app (`apps/src/hvcfuzz/`) only. Nothing else in the
/// kernel uses it; everything PV goes through the queries above. The
/// architecture issues it only where the probe found a convention that
/// answers any call, and refuses the calls that could take a CPU, the
/// machine or the kernel's memory away from it ([`arch::Pv::pv_raw_call`]).
pub fn raw_call(regs: RawRegs) -> Result<RawRegs, RawCallError> {
    A::pv_raw_call(regs)
}

/// The convention [`raw_call`]'s registers follow on this architecture.
pub fn raw_convention() -> RawConvention {
    A::RAW_CONVENTION
}

/// The calling CPU's live FUNC_NOTIFY a2 (LoongArch: its steal-time record's
/// physical address | VALID), if it registered one.
pub fn raw_hvcl_registration() -> Option<u64> {
    A::pv_hvcl_registration()
}

#[cfg(test)]
mod tests {
    use super::steal_accounting_text;

    #[test]
    fn the_report_says_when_steal_is_not_accounted() {
        assert_eq!(steal_accounting_text(true, true), None);
        assert_eq!(steal_accounting_text(false, true), None);
        assert!(steal_accounting_text(true, false)
            .unwrap()
            .starts_with("off (no-steal-acc: the steal clock is read"));
        assert!(steal_accounting_text(false, false)
            .unwrap()
            .starts_with("off (no-steal-acc; no steal clock"));
    }
}
