//! Bringing up secondary CPUs, and running work on other CPUs.
//!
//! # Jobs
//!
//! Each CPU has a mailbox holding at most one [`Job`]. [`run_on_cpus`] (and
//! [`run_on_all`] / [`run_on`]) puts the job in each target's mailbox, sends
//! it the IPI and waits until every target ran it, so a job may borrow from
//! the caller's stack (like a scoped thread). Jobs run on the target's idle
//! thread, in thread context with interrupts enabled, and before anything
//! else there:
//!
//! - The IPI handler asks for a switch ([`sched::job_arrived`]). At the
//!   interrupt's exit the scheduler switches a running thread out (it stays
//!   runnable, queued) for the idle thread, whose loop runs the job; then the
//!   thread runs again. So a CPU busy with threads runs a job within an IPI,
//!   or, where the interrupted code disabled preemption (a spinlock held),
//!   at the first interrupt after it enabled it again (at most a tick).
//! - A job runs to its end: the idle thread is not switched out while it
//!   runs one (its CPU counts as busy for placement). A job must therefore
//!   not wait for a thread of its own CPU.
//! - The poster holds no lock while it waits, and waits with preemption
//!   enabled (asserted), so its own CPU can run jobs meanwhile, its own
//!   share included (the idle thread runs it like any other job): CPUs that
//!   post to each other, or a busy thread that posts while others post to
//!   its CPU (`sched::log_stats`), cannot deadlock. A poster that is itself
//!   an idle thread (a job posting jobs) runs its CPU's jobs inline while it
//!   waits, as nothing else would.
//! - A mailbox holds one job: a poster that finds one there waits for the
//!   target to take it (soon: its poster has sent the IPI) and claims the
//!   mailbox with a compare-and-swap.
//!
//! ```text
//!   poster (any CPU, preemption on)        target CPU t
//!   [S] CAS MAILBOX[t] null -> job (Release)
//!       send_ipi(t) ---------------------> on_ipi: job pending, need_resched
//!                                          irq exit: running thread -> queue,
//!                                            switch to the idle thread
//!                                          [L] job = MAILBOX[t].swap(null) (Acquire)
//!                                              run job; remaining -= 1 (Release)
//!   [L] wait remaining == 0 (Acquire)      idle loop: schedule -> the thread
//! ```

use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;

use arch::{Cpu, Devices, Interrupts, Smp, Timer};

use crate::percpu::{self, PerCpu};
use crate::{per_cpu, sched, time, A, MAX_CPUS};

/// Stack size of each secondary CPU.
pub(crate) const SECONDARY_STACK_SIZE: usize = 64 * 1024;
/// How long the CPUs may take to come online after PSCI CPU_ON / mailbox
/// start: they start together, but on an overcommitted host (256 vCPUs under
/// TCG on 2 cores took 0.5 s) each one more needs its share of the cores.
const ONLINE_TIMEOUT: Duration = Duration::from_secs(2);
const ONLINE_TIMEOUT_PER_CPU: Duration = Duration::from_millis(20);

/// How many CPUs start together: the next wave starts when this one is
/// online. All at once would be fastest on a host with a core per vCPU, but
/// on an overcommitted one the CPUs that wait (for the heap, for the first
/// one to set up shared per-CPU blocks) spend the cores the others need;
/// one at a time pays every CPU's start in full. Measured with 256 vCPUs
/// under TCG on 2 busy cores: waves of 8 took 0.9-2.4 s, all at once
/// 1.3-2.8 s, one at a time 5.8-7.7 s.
const START_WAVE: usize = 8;

/// A job posted to other CPUs; lives on the poster's stack until all ran it.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
    remaining: AtomicUsize,
}

static MAILBOX: PerCpu<AtomicPtr<Job<'static>>> = per_cpu!(AtomicPtr::new(core::ptr::null_mut()));

static ONLINE: PerCpu<AtomicBool> = per_cpu!(AtomicBool::new(false));
static ONLINE_COUNT: AtomicUsize = AtomicUsize::new(0);

/// IPIs received per CPU.
static IPIS: PerCpu<AtomicU64> = per_cpu!(AtomicU64::new(0));
/// CPU to send an IPI back to on the next IPI (usize::MAX: none).
static PONG_TO: PerCpu<AtomicUsize> = per_cpu!(AtomicUsize::new(usize::MAX));
/// Set when the run is ending: every CPU that takes an IPI parks.
static STOPPING: AtomicBool = AtomicBool::new(false);
static PARKED: AtomicUsize = AtomicUsize::new(0);

/// Number of CPUs online.
pub fn online_count() -> usize {
    ONLINE_COUNT.load(Ordering::Acquire)
}

/// Whether logical CPU `cpu` is online.
pub fn is_online(cpu: usize) -> bool {
    cpu < percpu::cpus() && ONLINE.of(cpu).load(Ordering::Acquire)
}

/// Online CPUs, in order.
pub fn online_cpus() -> impl Iterator<Item = usize> + Clone {
    (0..percpu::cpus()).filter(|&c| is_online(c))
}

pub(crate) fn mark_online(cpu: usize) {
    ONLINE.of(cpu).store(true, Ordering::Release);
    // SeqCst, with `wait_for_starts`: either the boot CPU sees the count, or
    // we see it waiting and wake it.
    ONLINE_COUNT.fetch_add(1, Ordering::SeqCst);
    if cpu != 0 && BOOT_CPU_WAITING.load(Ordering::SeqCst) {
        A::send_ipi(0);
    }
}

/// Set while the boot CPU halts in [`wait_for_starts`].
static BOOT_CPU_WAITING: AtomicBool = AtomicBool::new(false);

/// How long the boot CPU halts at most between [`Smp::poll_starts`] calls.
const START_POLL: Duration = Duration::from_millis(1);

/// Waits until `expected` CPUs are online or `deadline` passes. Halts rather
/// than spins: on an overcommitted host the CPUs coming up need the cores.
/// Each one wakes the boot CPU (an IPI) as it comes online.
fn wait_for_starts(expected: usize, deadline: u64) {
    let poll = time::ns_to_ticks(START_POLL.as_nanos() as u64, A::ticks_per_sec());
    while online_count() < expected && A::ticks() < deadline {
        A::poll_starts();
        let irq = A::irq_save();
        BOOT_CPU_WAITING.store(true, Ordering::SeqCst);
        if online_count() < expected {
            A::timer_arm(poll);
            // Wakes on a pending interrupt even though they are masked.
            A::wait_for_interrupt();
        }
        BOOT_CPU_WAITING.store(false, Ordering::SeqCst);
        time::program_timer(None);
        A::irq_restore(irq);
    }
}

/// Starts logical CPUs `1..count` and waits for them, [`START_WAVE`] at a
/// time, all within one deadline; returns the ones that failed, with the
/// reason.
pub(crate) fn start_secondaries(count: usize) -> heapless::Vec<(usize, &'static str), MAX_CPUS> {
    let mut failed = heapless::Vec::new();
    let mut started = 0;
    let timeout = ONLINE_TIMEOUT + ONLINE_TIMEOUT_PER_CPU * count as u32;
    let deadline = A::ticks() + time::ns_to_ticks(timeout.as_nanos() as u64, A::ticks_per_sec());
    let cpus: heapless::Vec<usize, MAX_CPUS> = (1..count).collect();
    for wave in cpus.chunks(START_WAVE) {
        for &cpu in wave {
            let stack = Box::leak(alloc::vec![0u8; SECONDARY_STACK_SIZE].into_boxed_slice());
            let top = (stack.as_ptr() as usize + stack.len()) & !15;
            match A::start_cpu(cpu, top) {
                Ok(()) => started += 1,
                Err(e) => {
                    let _ = failed.push((cpu, e));
                }
            }
        }
        wait_for_starts(1 + started, deadline);
    }
    for cpu in 1..count {
        if !is_online(cpu) && !failed.iter().any(|(c, _)| *c == cpu) {
            let _ = failed.push((cpu, "started but did not come online"));
        }
    }
    failed
}

/// A secondary CPU's life after its arch entry: set up, then be its idle
/// thread.
pub(crate) fn secondary_main(cpu: usize) -> ! {
    A::init_cpu(cpu);
    crate::pv::init_cpu(cpu);
    crate::sched::init_cpu(cpu);
    time::start_tick();
    mark_online(cpu);
    A::irq_enable();
    crate::sched::idle_loop()
}

/// Whether a job waits in this CPU's mailbox.
pub(crate) fn job_pending() -> bool {
    !MAILBOX.current().load(Ordering::Acquire).is_null()
}

/// Runs the job in this CPU's mailbox, if any (the idle thread calls it).
pub(crate) fn run_pending_job() {
    // Acquire: pairs with the Release CAS in `run_on_cpus`.
    let job = MAILBOX
        .current()
        .swap(core::ptr::null_mut(), Ordering::Acquire);
    if job.is_null() {
        return;
    }
    // SAFETY: the poster keeps the job alive until `remaining` reaches 0,
    // which happens only after this CPU's decrement below.
    let job = unsafe { &*job };
    (job.f)(A::cpu_id());
    // Release: the job's effects before the poster's Acquire load.
    job.remaining.fetch_sub(1, Ordering::Release);
}

/// Runs `f(cpu)` on the idle thread of every online CPU in `cpus` and
/// returns when all have finished (see the module docs).
///
/// # Panics
/// In an interrupt handler, or with preemption disabled (a spinlock held)
/// outside an idle thread: the caller's CPU could not run the jobs posted
/// to it while it waits.
pub fn run_on_cpus(cpus: impl Iterator<Item = usize> + Clone, f: &(dyn Fn(usize) + Sync)) {
    assert!(
        sched::may_wait_for_jobs(),
        "smp::run_on_cpus in an interrupt handler or with preemption disabled: this CPU could not run the jobs posted to it meanwhile"
    );
    let targets = cpus.filter(|&c| is_online(c));
    let job = Job {
        f,
        remaining: AtomicUsize::new(targets.clone().count()),
    };
    // The mailbox type is 'static; the job outlives every use (see `Job`).
    let ptr = &job as *const Job<'_> as *mut Job<'static>;
    // The caller's own CPU last: its IPI switches to its idle thread at
    // once, and jobs that meet (lockstorm's, the spin calibration's) should
    // start together, as far as a poster that stays on its CPU can tell.
    let me = A::cpu_id();
    let others_first = targets
        .clone()
        .filter(|&c| c != me)
        .chain(targets.filter(|&c| c == me));
    for cpu in others_first {
        // Release: the job (and `remaining`) before the pointer; pairs with
        // the Acquire swap in `run_pending_job`.
        let mailbox = MAILBOX.of(cpu);
        wait_serving_jobs(|| {
            mailbox
                .compare_exchange(
                    core::ptr::null_mut(),
                    ptr,
                    Ordering::Release,
                    Ordering::Relaxed,
                )
                .is_ok()
        });
        A::send_ipi(cpu);
    }
    // Acquire: pairs with the Release decrement in `run_pending_job`.
    wait_serving_jobs(|| job.remaining.load(Ordering::Acquire) == 0);
}

/// Spins until `done`; an idle thread runs its own CPU's jobs meanwhile.
fn wait_serving_jobs(mut done: impl FnMut() -> bool) {
    while !done() {
        sched::run_job_if_idle();
        A::spin_hint();
    }
}

/// Runs `f(cpu)` on every online CPU and waits for all.
pub fn run_on_all(f: &(dyn Fn(usize) + Sync)) {
    run_on_cpus(online_cpus(), f);
}

/// Runs `f(cpu)` on CPU `cpu` and waits for it.
pub fn run_on(cpu: usize, f: &(dyn Fn(usize) + Sync)) {
    run_on_cpus(core::iter::once(cpu), f);
}

/// IPIs CPU `cpu` has taken.
pub fn ipis_on(cpu: usize) -> u64 {
    IPIS.of(cpu).load(Ordering::Relaxed)
}

/// Sends an IPI to `target` whose handler sends one straight back; returns
/// the round-trip time, or `None` if no answer came within `timeout`.
/// The caller must have interrupts enabled.
pub fn ping(target: usize, timeout: Duration) -> Option<Duration> {
    let me = A::cpu_id();
    let before = ipis_on(me);
    PONG_TO.of(target).store(me, Ordering::Release);
    let start = A::ticks();
    A::send_ipi(target);
    let answered = time::spin_until(timeout, || ipis_on(me) > before);
    answered.then(|| time::ticks_between(start, A::ticks()))
}

/// The IPI handler (interrupts masked).
pub(crate) fn on_ipi() {
    IPIS.current().fetch_add(1, Ordering::Relaxed);
    if STOPPING.load(Ordering::Acquire) {
        crate::pv::cpu_off();
        PARKED.fetch_add(1, Ordering::AcqRel);
        loop {
            A::wait_for_interrupt();
        }
    }
    if job_pending() {
        sched::job_arrived();
    }
    let back = PONG_TO.current().swap(usize::MAX, Ordering::AcqRel);
    if back != usize::MAX {
        A::send_ipi(back);
    }
}

/// How long [`stop_others`] waits for the other CPUs to park. Each releases
/// its PV registrations as it parks (`crate::pv::cpu_off`), which must
/// happen before the power-off: a vCPU thread of a loaded host can take tens
/// of ms to run the IPI. A CPU not parked by then spins with interrupts
/// masked (a deadlock, a fault of its own) and never will.
const PARK_TIMEOUT: Duration = Duration::from_secs(1);

/// Parks every other online CPU (best effort: a CPU spinning with interrupts
/// masked cannot take the IPI) so the run can end with only the caller.
pub(crate) fn stop_others() {
    if STOPPING.swap(true, Ordering::AcqRel) {
        return;
    }
    let me = A::cpu_id();
    let others: usize = online_cpus().filter(|&c| c != me).map(A::send_ipi).count();
    time::spin_until(PARK_TIMEOUT, || PARKED.load(Ordering::Acquire) >= others);
}
