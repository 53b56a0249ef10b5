//! The idle thread: what a CPU runs when no thread is runnable, and where
//! the jobs other CPUs post to it ([`smp`]) run, to their end.

use core::sync::atomic::Ordering;

use arch::{Cpu, Interrupts};

use super::{account_now, cpu_sched, finish_switch, schedule, CpuSched, Reason};
use crate::{smp, A};

/// First code of the boot CPU's idle thread.
pub(super) extern "C" fn idle_entry(_: usize) -> ! {
    finish_switch();
    A::irq_enable();
    idle_loop()
}

/// A CPU with nothing to run: run posted jobs, take threads, else wait for
/// an interrupt (checked with interrupts masked, so a wake-up IPI or a job
/// that arrives after the check ends the wait).
pub(crate) fn idle_loop() -> ! {
    loop {
        if smp::job_pending() {
            run_job();
        }
        let irq = A::irq_save();
        schedule(Reason::Yield);
        let s = cpu_sched(A::cpu_id());
        if !smp::job_pending() && s.queued.load(Ordering::Acquire) == 0 {
            A::wait_for_interrupt();
        }
        A::irq_restore(irq);
    }
}

/// Runs this CPU's smp job in the idle thread, its time accounted as busy.
/// Nests: a job that posts jobs runs its CPU's jobs while it waits.
pub(super) fn run_job() {
    let s = cpu_sched(A::cpu_id());
    account_now();
    let outer = s.in_job.swap(true, Ordering::Relaxed);
    smp::run_pending_job();
    account_now();
    s.in_job.store(outer, Ordering::Relaxed);
}

/// A job arrived in this CPU's mailbox (the IPI handler): switch to the idle
/// thread at interrupt exit, if the interrupted code allows (see [`smp`]).
pub(crate) fn job_arrived() {
    cpu_sched(A::cpu_id())
        .need_resched
        .store(true, Ordering::Relaxed);
}

/// Whether the caller may wait for smp jobs to finish: not in an interrupt
/// handler, and either preemption is enabled (its CPU can switch to its
/// idle thread for a job posted to it) or it is the idle thread, which runs
/// such jobs itself while it waits ([`run_job_if_idle`]).
pub(crate) fn may_wait_for_jobs() -> bool {
    let irq = A::irq_save();
    let s = cpu_sched(A::cpu_id());
    let ok = !s.in_irq.load(Ordering::Relaxed)
        && (s.preempt_count.load(Ordering::Relaxed) == 0 || is_idle_running(s));
    A::irq_restore(irq);
    ok
}

/// Whether `s`'s CPU runs its idle thread (for another CPU: a snapshot).
pub(super) fn is_idle_running(s: &CpuSched) -> bool {
    s.current_id.load(Ordering::Relaxed) == s.idle_id.load(Ordering::Relaxed)
}

/// For a CPU waiting for smp jobs: if the caller is the idle thread (a job
/// that posts jobs), runs the job posted to this CPU, if any, now: nothing
/// else would. The idle thread is pinned, so the CPU cannot change.
pub(crate) fn run_job_if_idle() {
    let irq = A::irq_save();
    let idle = is_idle_running(cpu_sched(A::cpu_id()));
    A::irq_restore(irq);
    if idle && smp::job_pending() {
        run_job();
    }
}
