//! Preemption control: while a CPU's count is non-zero, the tick does not
//! switch threads there (interrupts still run). Spinlocks hold it for their
//! whole critical section, so a lock holder never migrates or yields the CPU
//! to a thread that would spin on the same lock.

use core::sync::atomic::Ordering;

use arch::{Cpu, Interrupts};

use super::cpu_sched;
use crate::A;

/// Disables preemption on the calling CPU (nests).
#[inline]
pub fn disable() {
    // Masked so the CPU cannot change between reading its id and counting.
    let irq = A::irq_save();
    cpu_sched(A::cpu_id())
        .preempt_count
        .fetch_add(1, Ordering::Relaxed);
    A::irq_restore(irq);
}

/// Undoes one [`disable`]. A switch that became due meanwhile happens at the
/// next interrupt (at most a tick later).
#[inline]
pub fn enable() {
    // No migration while the count is non-zero: this is the same CPU.
    let previous = cpu_sched(A::cpu_id())
        .preempt_count
        .fetch_sub(1, Ordering::Relaxed);
    debug_assert!(previous > 0, "preempt::enable without disable");
}

/// Whether preemption is disabled on the calling CPU.
pub fn is_disabled() -> bool {
    let irq = A::irq_save();
    let disabled = cpu_sched(A::cpu_id()).preempt_count.load(Ordering::Relaxed) > 0;
    A::irq_restore(irq);
    disabled
}
