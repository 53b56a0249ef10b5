//! Threads and the scheduler.
//!
//! Kernel threads with their own stacks, one run queue per CPU
//! ([`runqueue`]: least virtual run time first), preemption by the tick
//! (one slice per tick), sleep / wake / yield / join, and an idle thread per
//! CPU that runs [`smp`] jobs and waits in WFI / `idle`. Time is accounted
//! per CPU and per thread with the PV steal clock ([`account`]): a thread's
//! run time excludes what the host stole (unless `no-steal-acc`:
//! [`crate::pv::sched_steal_ns`]).
//!
//! The pieces: [`thread`] (threads, spawning, joining), [`switch`] (the
//! switch and the interrupt hooks), [`idle`] (the idle thread and smp
//! jobs), [`account`], [`placement`], [`runqueue`], [`wait`], [`preempt`];
//! this file holds each CPU's state and blocking, sleeping and waking.
//!
//! Where threads go: a woken or new thread goes to its last CPU if that is
//! idle, else to the least loaded CPU, skipping CPUs whose vCPU the PV view
//! reports preempted (a thread queued there would wait for the host). An
//! idle CPU pulls work from the busiest CPU, preferring preempted ones; a
//! busy CPU pulls on its tick when another has two or more threads more.
//!
//! # Switching
//!
//! [`schedule`] runs with interrupts masked: it charges the outgoing thread,
//! picks the next, and calls [`Context::switch_context`]. The incoming thread
//! finishes the switch ([`finish_switch`]): only then is the outgoing one
//! off the CPU (`on_cpu` false), so only then may it be queued again or run
//! elsewhere. A waker that finds a thread blocked waits for `on_cpu` to
//! clear before queueing it, so no thread ever runs on two CPUs.
//!
//! # Blocking without lost wake-ups
//!
//! ```text
//!   sleeper                                 waker
//!   lock queue; check condition (false)
//!   state = BLOCKING; enqueue self
//!   unlock queue                            (makes condition true)
//!   block():                                lock queue; dequeue sleeper; unlock
//!     CAS BLOCKING -> BLOCKED, switch out   wake(): CAS BLOCKING -> RUNNABLE (sleeper
//!       (fails if the waker got there           does not switch out), or
//!        first: keep running)                  CAS BLOCKED -> RUNNABLE, wait !on_cpu, enqueue
//! ```
//!
//! A thread preempted between setting BLOCKING and `block()` stays runnable
//! (it is queued like any preempted thread) and blocks when it runs again,
//! unless it was woken meanwhile.
//!
//! # Preemption
//!
//! The tick sets `need_resched` when other threads wait; the switch happens
//! at interrupt exit ([`on_irq_exit`], the arch's `irq_exit` hook), unless
//! the interrupted code disabled preemption ([`preempt`]): every
//! [`SpinLock`](crate::sync::SpinLock) does, so a lock holder never migrates
//! and the per-CPU queue nodes of the lock algorithms stay consistent. A job
//! posted to the CPU ([`smp`]) asks for a switch the same way, and the next
//! thread is then the idle thread, which runs the job to its end before
//! anything else runs there.

mod account;
mod idle;
mod placement;
pub mod preempt;
mod runqueue;
mod switch;
mod thread;
mod wait;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;

use arch::{Cpu, Interrupts, Smp, Timer};

pub use account::{Charge, CpuClock, CpuTimes, Ran};
use placement::CpuView;
pub use runqueue::{RunQueue, Runnable};
pub use wait::WaitQueue;

use idle::{idle_entry, is_idle_running};
pub(crate) use idle::{idle_loop, job_arrived, may_wait_for_jobs, run_job_if_idle};
use switch::{account, finish_switch, schedule, Reason};
pub(crate) use switch::{on_irq_entry, on_irq_exit, on_tick};
pub use thread::{
    for_each_thread, spawn, Builder, JoinHandle, SpawnError, Thread, ThreadTimes,
    DEFAULT_STACK_SIZE, MIN_STACK_SIZE,
};
use thread::{new_thread, prepare_start, register};

use crate::percpu::PerCpu;
use crate::sync::SpinNoIrq;
use crate::{per_cpu, pv, smp, time, A};

/// Time a thread runs before others queued on its CPU get a turn: one tick.
pub const SLICE_NS: u64 = 1_000_000_000 / time::TICK_HZ;
/// Ticks between a busy CPU's checks for imbalance.
const BALANCE_TICKS: u64 = 4;
const RUNNABLE: u8 = 0;
const BLOCKING: u8 = 1;
const BLOCKED: u8 = 2;
const EXITED: u8 = 3;

/// One CPU's scheduler state.
struct CpuSched {
    rq: SpinNoIrq<RunQueue<Arc<Thread>>>,
    /// Length of `rq`, readable without its lock (load estimates).
    queued: AtomicUsize,
    /// The running thread: an `Arc` turned raw (owned by this slot).
    current: AtomicPtr<Thread>,
    /// Its id, readable from other CPUs without touching the thread.
    current_id: AtomicU64,
    idle: AtomicPtr<Thread>,
    idle_id: AtomicU64,
    /// The thread just switched out, for [`finish_switch`], and whether it
    /// goes back to the run queue.
    prev: AtomicPtr<Thread>,
    prev_requeue: AtomicBool,
    need_resched: AtomicBool,
    preempt_count: AtomicUsize,
    /// Inside an interrupt handler (from the kernel's dispatch to irq exit).
    in_irq: AtomicBool,
    /// The idle thread is running an smp job (busy time, not idle).
    in_job: AtomicBool,
    /// Set once this CPU schedules.
    running: AtomicBool,
    clock: SpinNoIrq<CpuClock>,
    /// Threads in [`sleep`] here, with their deadline (counter ticks).
    sleepers: SpinNoIrq<Vec<(u64, Arc<Thread>)>>,
    ticks: AtomicU64,
    switches: AtomicU64,
}

static CPUS: PerCpu<CpuSched> = per_cpu!(CpuSched {
    rq: SpinNoIrq::new(RunQueue::new()),
    queued: AtomicUsize::new(0),
    current: AtomicPtr::new(core::ptr::null_mut()),
    current_id: AtomicU64::new(0),
    idle: AtomicPtr::new(core::ptr::null_mut()),
    idle_id: AtomicU64::new(0),
    prev: AtomicPtr::new(core::ptr::null_mut()),
    prev_requeue: AtomicBool::new(false),
    need_resched: AtomicBool::new(false),
    preempt_count: AtomicUsize::new(0),
    in_irq: AtomicBool::new(false),
    in_job: AtomicBool::new(false),
    running: AtomicBool::new(false),
    clock: SpinNoIrq::new(CpuClock::new()),
    sleepers: SpinNoIrq::new(Vec::new()),
    ticks: AtomicU64::new(0),
    switches: AtomicU64::new(0),
});

fn cpu_sched(cpu: usize) -> &'static CpuSched {
    CPUS.of(cpu)
}

/// The running thread of this CPU; call with interrupts masked.
fn current_ref(s: &CpuSched) -> &Thread {
    // SAFETY: `current` is set in `init_cpu` before this CPU schedules and
    // always holds a live thread (the slot owns a reference).
    unsafe { &*s.current.load(Ordering::Relaxed) }
}

/// The calling thread.
pub fn current() -> Arc<Thread> {
    let irq = A::irq_save();
    let s = cpu_sched(A::cpu_id());
    assert!(
        s.running.load(Ordering::Relaxed),
        "sched::current() before the scheduler runs"
    );
    // SAFETY: the slot holds the running thread; interrupts are masked.
    let me = unsafe { arc_from_slot(&s.current) };
    A::irq_restore(irq);
    me
}

/// Id of the thread running on `cpu` now (0 before it schedules).
pub fn current_id_on(cpu: usize) -> u64 {
    cpu_sched(cpu).current_id.load(Ordering::Acquire)
}

/// Whether thread `id` is the one running on `cpu` right now.
pub fn is_running_on(id: u64, cpu: usize) -> bool {
    cpu < crate::percpu::cpus() && current_id_on(cpu) == id
}

/// Whether the calling CPU's tick asked for a switch (spinners give up).
pub fn need_resched() -> bool {
    let irq = A::irq_save();
    let due = cpu_sched(A::cpu_id()).need_resched.load(Ordering::Relaxed);
    A::irq_restore(irq);
    due
}

/// Whether the caller may block: a thread other than idle, not in an
/// interrupt handler, preemption enabled.
pub fn may_block() -> bool {
    let irq = A::irq_save();
    let s = cpu_sched(A::cpu_id());
    let ok = s.running.load(Ordering::Relaxed)
        && !s.in_irq.load(Ordering::Relaxed)
        && s.preempt_count.load(Ordering::Relaxed) == 0
        && !is_idle_running(s);
    A::irq_restore(irq);
    ok
}

/// Adopts the calling CPU's boot context as a thread and starts accounting.
/// On the boot CPU it becomes `main` (the app's thread, pinned to CPU 0)
/// and an idle thread is made; on the others it is the idle thread.
/// Interrupts masked.
pub(crate) fn init_cpu(cpu: usize) {
    let s = cpu_sched(cpu);
    let (this, idle) = if cpu == 0 {
        let main = Arc::new(Thread::new("main".into(), Some(0), false, None, 0));
        let idle = new_thread(alloc::format!("idle/{cpu}"), Some(cpu), true, 0)
            .expect("memory for the boot CPU's idle thread");
        prepare_start(&idle, idle_entry);
        (main, idle)
    } else {
        let idle = Arc::new(Thread::new(
            alloc::format!("idle/{cpu}"),
            Some(cpu),
            true,
            None,
            cpu,
        ));
        (idle.clone(), idle)
    };
    register(&this);
    register(&idle);
    this.on_cpu.store(true, Ordering::Relaxed);
    s.idle_id.store(idle.id, Ordering::Relaxed);
    s.idle
        .store(Arc::into_raw(idle) as *mut _, Ordering::Relaxed);
    s.current_id.store(this.id, Ordering::Release);
    s.current
        .store(Arc::into_raw(this) as *mut _, Ordering::Release);
    s.clock
        .lock()
        .start(time::now_ns(), pv::sched_steal_ns(cpu));
    s.running.store(true, Ordering::Release);
}

/// Offers the CPU to other runnable threads of this CPU (a no-op where the
/// caller may not switch: the idle thread, a handler, a spinlock held).
pub fn yield_now() {
    if !may_block() {
        return;
    }
    let irq = A::irq_save();
    schedule(Reason::Yield);
    A::irq_restore(irq);
}

/// Blocks the calling thread for at least `d` of guest time.
pub fn sleep(d: Duration) {
    let deadline = A::ticks() + time::ns_to_ticks(d.as_nanos() as u64, A::ticks_per_sec());
    sleep_until(deadline);
}

/// Blocks the calling thread until the counter reaches `deadline`.
pub fn sleep_until(deadline: u64) {
    assert_may_block("sleep");
    let irq = A::irq_save();
    // A late wake meant for an earlier wait can end the block early: go
    // back to sleep until the deadline has really passed.
    while A::ticks() < deadline {
        let s = cpu_sched(A::cpu_id());
        let me = current_ref(s);
        let id = me.id;
        me.state.store(BLOCKING, Ordering::Relaxed);
        let earliest = {
            let mut sleepers = s.sleepers.lock();
            // SAFETY: the slot owns a reference; the list takes another.
            sleepers.push((deadline, unsafe { arc_from_slot(&s.current) }));
            sleepers.iter().map(|(d, _)| *d).min()
        };
        time::program_timer(earliest);
        schedule(Reason::Block);
        // Woken early: drop the entry (on the CPU it was queued on).
        s.sleepers.lock().retain(|(_, t)| t.id != id);
    }
    A::irq_restore(irq);
}

/// A new reference from a slot holding an owned raw `Arc`.
///
/// # Safety
/// The slot holds a live thread and cannot change meanwhile (interrupts
/// masked on its CPU).
unsafe fn arc_from_slot(slot: &AtomicPtr<Thread>) -> Arc<Thread> {
    let ptr = slot.load(Ordering::Relaxed);
    // SAFETY: forwarded.
    unsafe {
        Arc::increment_strong_count(ptr);
        Arc::from_raw(ptr)
    }
}

fn assert_may_block(what: &str) {
    assert!(
        may_block(),
        "{what}: the caller cannot block (idle thread, interrupt handler or a spinlock held)"
    );
}

/// Blocks the calling thread, whose state is BLOCKING, until [`wake`].
/// Returns at once if it was woken already.
pub(crate) fn block() {
    assert_may_block("block");
    let irq = A::irq_save();
    schedule(Reason::Block);
    A::irq_restore(irq);
}

/// Marks the calling thread as about to block (see the module docs).
pub(crate) fn prepare_to_block() {
    let irq = A::irq_save();
    current_ref(cpu_sched(A::cpu_id()))
        .state
        .store(BLOCKING, Ordering::Release);
    A::irq_restore(irq);
}

/// Makes `t` runnable if it is blocking or blocked.
pub(crate) fn wake(t: Arc<Thread>) {
    loop {
        match t.state.load(Ordering::Acquire) {
            BLOCKING => {
                if t.state
                    .compare_exchange(BLOCKING, RUNNABLE, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return;
                }
            }
            BLOCKED => {
                if t.state
                    .compare_exchange(BLOCKED, RUNNABLE, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    // Its CPU may still be saving its context.
                    while t.on_cpu.load(Ordering::Acquire) {
                        A::spin_hint();
                    }
                    let cpu = select_cpu(&t);
                    enqueue(cpu, t);
                    return;
                }
            }
            _ => return,
        }
    }
}

/// Where a thread that becomes runnable should go (see the module docs).
fn select_cpu(t: &Thread) -> usize {
    if let Some(cpu) = t.pinned {
        return cpu;
    }
    placement::wake_target(t.cpu(), cpu_views())
}

/// Every online CPU as placement sees it now.
fn cpu_views() -> impl Iterator<Item = CpuView> + Clone {
    smp::online_cpus().map(|cpu| {
        let s = cpu_sched(cpu);
        CpuView {
            cpu,
            up: s.running.load(Ordering::Acquire),
            preempted: pv::vcpu_is_preempted(cpu),
            load: load(cpu),
            queued: s.queued.load(Ordering::Acquire),
        }
    })
}

/// Threads on `cpu`: queued, plus the running one unless it is idle (an
/// idle thread running an smp job counts: it runs it to its end).
fn load(cpu: usize) -> usize {
    let s = cpu_sched(cpu);
    let busy = !is_idle_running(s) || s.in_job.load(Ordering::Relaxed);
    s.queued.load(Ordering::Relaxed) + busy as usize
}

/// Takes the thread `victim` would run last, if one may move.
fn steal_from(victim: usize) -> Option<Arc<Thread>> {
    let vs = cpu_sched(victim);
    let mut rq = vs.rq.lock();
    let t = rq.steal();
    vs.queued.store(rq.len(), Ordering::Release);
    t
}

/// Queues runnable `t` on `cpu`; an idle CPU is told to switch to it.
fn enqueue(cpu: usize, t: Arc<Thread>) {
    let s = cpu_sched(cpu);
    {
        let mut rq = s.rq.lock();
        let v = rq.entry_vruntime(t.vruntime.load(Ordering::Relaxed), SLICE_NS);
        t.vruntime.store(v, Ordering::Relaxed);
        rq.push(t);
        s.queued.store(rq.len(), Ordering::Release);
    }
    if s.current_id.load(Ordering::Acquire) == s.idle_id.load(Ordering::Relaxed) {
        s.need_resched.store(true, Ordering::Release);
        if cpu != A::cpu_id() {
            A::send_ipi(cpu);
        }
    }
}

/// Wakes this CPU's sleepers whose deadline is `now` or earlier; returns the
/// earliest deadline left. Interrupts masked.
pub(crate) fn expire_sleepers(now: u64) -> Option<u64> {
    let s = cpu_sched(A::cpu_id());
    let mut due = Vec::new();
    let earliest = {
        let mut sleepers = s.sleepers.lock();
        let mut i = 0;
        while i < sleepers.len() {
            if sleepers[i].0 <= now {
                due.push(sleepers.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
        sleepers.iter().map(|(d, _)| *d).min()
    };
    due.into_iter().for_each(wake);
    earliest
}

/// This CPU's time split so far (up to its last switch or tick).
pub fn cpu_times(cpu: usize) -> CpuTimes {
    cpu_sched(cpu).clock.lock().times
}

/// Brings this CPU's accounting up to now.
pub fn account_now() {
    let irq = A::irq_save();
    let cpu = A::cpu_id();
    let s = cpu_sched(cpu);
    if s.running.load(Ordering::Relaxed) {
        account(cpu, s, current_ref(s));
    }
    A::irq_restore(irq);
}

/// Context switches on `cpu` so far.
pub fn switches_on(cpu: usize) -> u64 {
    cpu_sched(cpu).switches.load(Ordering::Relaxed)
}

/// Logs the per-CPU busy / idle / steal split and every live thread's
/// accounted time (each CPU's figures are brought up to now first).
pub fn log_stats() {
    smp::run_on_all(&|_| account_now());
    for cpu in smp::online_cpus() {
        let t = cpu_times(cpu);
        log::info!(
            "sched: cpu={cpu} busy_ms={} idle_ms={} irq_ms={} steal_ms={} switches={}",
            t.busy_ns / 1_000_000,
            t.idle_ns / 1_000_000,
            t.irq_ns / 1_000_000,
            t.steal_ns / 1_000_000,
            switches_on(cpu)
        );
    }
    for_each_thread(|t| {
        let times = t.times();
        log::info!(
            "sched: thread={} name={} cpu={} run_ms={} steal_ms={} switches={} migrations={}",
            t.id,
            t.name,
            t.cpu(),
            times.run_ns / 1_000_000,
            times.steal_ns / 1_000_000,
            times.switches,
            times.migrations
        );
    });
}
