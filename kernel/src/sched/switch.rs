//! Switching threads: [`schedule`] (interrupts masked) charges the outgoing
//! thread, picks the next and switches; the incoming one finishes the
//! switch ([`finish_switch`]); the interrupt hooks charge interrupt time,
//! count the tick, balance, and preempt at interrupt exit (see the module
//! docs of [`super`]).

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use arch::{Context, Cpu};

use super::{
    arc_from_slot, cpu_sched, cpu_views, current_ref, enqueue, load, placement, steal_from,
    CpuSched, Ran, Thread, BALANCE_TICKS, BLOCKED, BLOCKING,
};
use crate::{pv, smp, time, A};

/// Why [`schedule`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reason {
    /// The tick or a wake-up asked (interrupt exit): the thread stays runnable.
    Preempt,
    /// The thread offers its CPU: it stays runnable.
    Yield,
    /// The thread waits ([`super::block`]).
    Block,
    /// The thread has finished.
    Exit,
}

/// Charges the time since the last sample to this CPU's running thread or,
/// inside an interrupt, to the CPU's interrupt time. Interrupts masked.
pub(super) fn account(cpu: usize, s: &CpuSched, t: &Thread) {
    account_until(cpu, s, t, time::now_ns());
}

pub(super) fn account_until(cpu: usize, s: &CpuSched, t: &Thread, now_ns: u64) {
    let ran = if s.in_irq.load(Ordering::Relaxed) {
        Ran::Irq
    } else if t.is_idle && !s.in_job.load(Ordering::Relaxed) {
        Ran::Idle
    } else {
        Ran::Thread
    };
    let charge = s.clock.lock().advance(now_ns, pv::sched_steal_ns(cpu), ran);
    if ran != Ran::Irq {
        t.charge(charge);
    }
}

/// Picks the next thread and switches to it. Interrupts masked.
pub(super) fn schedule(reason: Reason) {
    let cpu = A::cpu_id();
    let s = cpu_sched(cpu);
    if !s.running.load(Ordering::Relaxed) {
        return;
    }
    let prev = current_ref(s);
    if reason == Reason::Block
        && prev
            .state
            .compare_exchange(BLOCKING, BLOCKED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        return; // Woken before it got here.
    }
    // A posted job runs first, on the idle thread, and to its end (see
    // `smp`): the idle thread stays while a job waits or runs; any other
    // thread is switched out for it.
    let job = smp::job_pending();
    if prev.is_idle && (job || s.in_job.load(Ordering::Relaxed)) {
        return;
    }
    account(cpu, s, prev);
    s.need_resched.store(false, Ordering::Relaxed);
    let stays_runnable = matches!(reason, Reason::Preempt | Reason::Yield);
    if job {
        // SAFETY: the idle slot owns a reference for ever.
        let idle = unsafe { arc_from_slot(&s.idle) };
        switch_to(cpu, s, idle, stays_runnable);
        return;
    }
    let next = {
        let mut rq = s.rq.lock();
        if !prev.is_idle {
            rq.note_running(prev.vruntime.load(Ordering::Relaxed));
        }
        let next = rq.pop_next();
        s.queued.store(rq.len(), Ordering::Release);
        next
    };
    let next = match next {
        Some(next) => next,
        None if stays_runnable && !prev.is_idle => return,
        None => match pull(cpu) {
            Some(next) => next,
            None if prev.is_idle => return,
            // SAFETY: the idle slot owns a reference for ever.
            None => unsafe { arc_from_slot(&s.idle) },
        },
    };
    switch_to(cpu, s, next, stays_runnable && !prev.is_idle);
}

/// Takes a thread from the busiest other CPU, preferring CPUs whose vCPU is
/// preempted (their queued threads are not running anyway).
pub(super) fn pull(cpu: usize) -> Option<Arc<Thread>> {
    steal_from(placement::pull_victim(cpu, cpu_views())?)
}

pub(super) fn switch_to(cpu: usize, s: &CpuSched, next: Arc<Thread>, requeue_prev: bool) {
    let prev_ptr = s.current.load(Ordering::Relaxed);
    // SAFETY: the slot owns a live thread (see `current_ref`).
    let prev = unsafe { &*prev_ptr };
    assert!(
        prev.stack_intact(),
        "stack overflow in {prev:?} (its stack's lowest word was overwritten)"
    );
    next.on_cpu.store(true, Ordering::Relaxed);
    if next.cpu.swap(cpu, Ordering::Relaxed) != cpu {
        next.migrations.fetch_add(1, Ordering::Relaxed);
    }
    next.switches.fetch_add(1, Ordering::Relaxed);
    s.switches.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `next` is off every CPU (queued threads are; the idle thread
    // runs only here), so its saved `sp` is complete and nobody else reads it.
    let next_sp = unsafe { *next.sp.get() };
    s.current_id.store(next.id, Ordering::Release);
    s.current
        .store(Arc::into_raw(next) as *mut _, Ordering::Relaxed);
    s.prev.store(prev_ptr, Ordering::Relaxed);
    s.prev_requeue.store(requeue_prev, Ordering::Relaxed);
    // SAFETY: interrupts are masked; `next_sp` is a saved context of a
    // thread that runs nowhere; `prev.sp` belongs to the running thread.
    unsafe { A::switch_context(prev.sp.get(), next_sp) };
    finish_switch();
}

/// The second half of a switch, run by the incoming thread: the outgoing
/// one's context is saved now, so it may run elsewhere.
pub(super) fn finish_switch() {
    let cpu = A::cpu_id();
    let s = cpu_sched(cpu);
    let prev = s.prev.swap(core::ptr::null_mut(), Ordering::Relaxed);
    // SAFETY: `switch_to` moved the current slot's reference here.
    let prev = unsafe { Arc::from_raw(prev) };
    let requeue = s.prev_requeue.load(Ordering::Relaxed);
    prev.on_cpu.store(false, Ordering::Release);
    if requeue {
        enqueue(cpu, prev);
    }
    // Otherwise it blocked (its wait queue holds it), exited (joiners and
    // the registry's weak reference may), or is the idle thread (its slot
    // holds it): this reference goes.
}

/// The arch's interrupt-exit hook: switch if the tick or a wake-up asked and
/// the interrupted code allows it.
pub(crate) fn on_irq_exit() {
    let cpu = A::cpu_id();
    let s = cpu_sched(cpu);
    if s.running.load(Ordering::Relaxed) {
        account(cpu, s, current_ref(s));
    }
    s.in_irq.store(false, Ordering::Relaxed);
    if s.need_resched.load(Ordering::Relaxed)
        && s.preempt_count.load(Ordering::Relaxed) == 0
        && s.running.load(Ordering::Relaxed)
    {
        schedule(Reason::Preempt);
    }
}

/// The kernel's interrupt dispatch begins (see [`super::may_block`]): the
/// interrupted thread is charged up to when the interrupt's time began
/// (`timer_fired_ns` for a timer, see [`super::account::irq_start`]), the rest of
/// it until [`on_irq_exit`] is interrupt time.
pub(crate) fn on_irq_entry(timer_fired_ns: Option<u64>) {
    let cpu = A::cpu_id();
    let s = cpu_sched(cpu);
    if s.running.load(Ordering::Relaxed) {
        let start = super::account::irq_start(time::now_ns(), timer_fired_ns);
        account_until(cpu, s, current_ref(s), start);
    }
    s.in_irq.store(true, Ordering::Relaxed);
}

/// The tick: give the next queued thread its turn, balance (the interrupted
/// thread was charged when the interrupt began).
pub(crate) fn on_tick() {
    let cpu = A::cpu_id();
    let s = cpu_sched(cpu);
    if !s.running.load(Ordering::Relaxed) {
        return;
    }
    let ticks = s.ticks.fetch_add(1, Ordering::Relaxed) + 1;
    if ticks.is_multiple_of(BALANCE_TICKS) {
        balance(cpu);
    }
    if s.queued.load(Ordering::Relaxed) > 0 {
        s.need_resched.store(true, Ordering::Relaxed);
    }
}

/// Pulls one thread if another CPU has two or more threads more than this one.
pub(super) fn balance(cpu: usize) {
    if let Some(victim) = placement::balance_victim(cpu, load(cpu), cpu_views()) {
        if let Some(t) = steal_from(victim) {
            enqueue(cpu, t);
        }
    }
}
