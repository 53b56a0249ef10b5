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
//! Where threads go: a woken or new thread goes to its last CPU if that is
//! idle, else to the least loaded CPU, skipping CPUs whose vCPU the PV view
//! reports preempted (a thread queued there would wait for the host). An
//! idle CPU pulls work from the busiest CPU, preferring preempted ones; a
//! busy CPU pulls on its tick when another has two or more threads more.
//!
//! # Switching
//!
//! [`schedule`] runs with interrupts masked: it charges the outgoing thread,
//! picks the next, and calls [`Arch::switch_context`]. The incoming thread
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
mod placement;
pub mod preempt;
mod runqueue;
mod wait;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use core::time::Duration;

use arch::Arch;

pub use account::{Charge, CpuClock, CpuTimes, Ran};
use placement::CpuView;
pub use runqueue::{RunQueue, Runnable};
pub use wait::WaitQueue;

use crate::percpu::PerCpu;
use crate::sync::{SpinLock, SpinNoIrq};
use crate::{per_cpu, pv, smp, time, A};

/// Stack size of a thread unless its [`Builder`] says otherwise.
pub const DEFAULT_STACK_SIZE: usize = 32 * 1024;
/// Smallest stack a thread may ask for (a switch frame, a trap frame and
/// room to run).
pub const MIN_STACK_SIZE: usize = 8 * 1024;
/// Time a thread runs before others queued on its CPU get a turn: one tick.
pub const SLICE_NS: u64 = 1_000_000_000 / time::TICK_HZ;
/// Ticks between a busy CPU's checks for imbalance.
const BALANCE_TICKS: u64 = 4;
/// Written at the lowest word of every thread stack and checked at every
/// switch: a thread that overran its stack is reported, not left to corrupt
/// the heap silently.
const STACK_CANARY: u64 = u64::from_le_bytes(*b"lodger!!");

const RUNNABLE: u8 = 0;
const BLOCKING: u8 = 1;
const BLOCKED: u8 = 2;
const EXITED: u8 = 3;

/// A kernel thread.
pub struct Thread {
    id: u64,
    name: String,
    /// The only CPU it may run on, if pinned.
    pinned: Option<usize>,
    is_idle: bool,
    /// Saved stack pointer while switched out (see [`Arch::switch_context`]).
    sp: UnsafeCell<usize>,
    /// `None` for a CPU's boot context adopted as a thread.
    stack: Option<Box<[u64]>>,
    state: AtomicU8,
    /// Set by the CPU switching to it, cleared once its context is saved.
    on_cpu: AtomicBool,
    /// The CPU it last ran on.
    cpu: AtomicUsize,
    /// Task time, adjusted when entering a run queue ([`runqueue`]).
    vruntime: AtomicU64,
    run_ns: AtomicU64,
    steal_ns: AtomicU64,
    wall_ns: AtomicU64,
    switches: AtomicU64,
    migrations: AtomicU64,
    entry: SpinNoIrq<Option<Box<dyn FnOnce() + Send>>>,
    exited: AtomicBool,
    joiners: WaitQueue,
}

// SAFETY: `sp` is written only by `switch_context` on the CPU switching the
// thread out and read only by the CPU switching it in, which first sees
// `on_cpu` false (Acquire) after the save (Release in `finish_switch`). All
// other fields are atomics or locks.
unsafe impl Sync for Thread {}
// SAFETY: as above; nothing in a thread is tied to the CPU that made it.
unsafe impl Send for Thread {}

/// A thread's accounted time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadTimes {
    /// Time it had a CPU, steal excluded (Linux's `clock_task`).
    pub run_ns: u64,
    /// Time the host stole while it was the running thread.
    pub steal_ns: u64,
    /// Guest time while it was the running thread: `run_ns + steal_ns`.
    pub wall_ns: u64,
    /// Times it was switched in.
    pub switches: u64,
    /// Times it was switched in on a different CPU than the last.
    pub migrations: u64,
}

impl Thread {
    fn new(
        name: String,
        pinned: Option<usize>,
        is_idle: bool,
        stack: Option<Box<[u64]>>,
        cpu: usize,
    ) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name,
            pinned,
            is_idle,
            sp: UnsafeCell::new(0),
            stack,
            state: AtomicU8::new(RUNNABLE),
            on_cpu: AtomicBool::new(false),
            cpu: AtomicUsize::new(cpu),
            vruntime: AtomicU64::new(0),
            run_ns: AtomicU64::new(0),
            steal_ns: AtomicU64::new(0),
            wall_ns: AtomicU64::new(0),
            switches: AtomicU64::new(0),
            migrations: AtomicU64::new(0),
            entry: SpinNoIrq::new(None),
            exited: AtomicBool::new(false),
            joiners: WaitQueue::new(),
        }
    }

    /// Unique, never 0.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CPU it runs on or last ran on.
    pub fn cpu(&self) -> usize {
        self.cpu.load(Ordering::Relaxed)
    }

    pub fn pinned(&self) -> Option<usize> {
        self.pinned
    }

    pub fn has_exited(&self) -> bool {
        self.exited.load(Ordering::Acquire)
    }

    /// Accounted time so far (up to the last switch or tick of its CPU).
    pub fn times(&self) -> ThreadTimes {
        ThreadTimes {
            run_ns: self.run_ns.load(Ordering::Relaxed),
            steal_ns: self.steal_ns.load(Ordering::Relaxed),
            wall_ns: self.wall_ns.load(Ordering::Relaxed),
            switches: self.switches.load(Ordering::Relaxed),
            migrations: self.migrations.load(Ordering::Relaxed),
        }
    }

    fn charge(&self, c: Charge) {
        self.run_ns.fetch_add(c.task_ns, Ordering::Relaxed);
        self.steal_ns.fetch_add(c.steal_ns, Ordering::Relaxed);
        self.wall_ns.fetch_add(c.wall_ns, Ordering::Relaxed);
        self.vruntime.fetch_add(c.task_ns, Ordering::Relaxed);
    }

    fn stack_intact(&self) -> bool {
        self.stack.as_ref().is_none_or(|s| s[0] == STACK_CANARY)
    }
}

impl Runnable for Arc<Thread> {
    fn vruntime(&self) -> u64 {
        self.vruntime.load(Ordering::Relaxed)
    }
    fn movable(&self) -> bool {
        self.pinned.is_none()
    }
}

impl fmt::Debug for Thread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "thread {} `{}`", self.id, self.name)
    }
}

/// Why [`schedule`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// The tick or a wake-up asked (interrupt exit): the thread stays runnable.
    Preempt,
    /// The thread offers its CPU: it stays runnable.
    Yield,
    /// The thread waits ([`block`]).
    Block,
    /// The thread has finished.
    Exit,
}

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

/// Every live thread, for statistics.
static THREADS: SpinLock<BTreeMap<u64, Weak<Thread>>> = SpinLock::new(BTreeMap::new());

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

fn register(t: &Arc<Thread>) {
    THREADS.lock().insert(t.id, Arc::downgrade(t));
}

fn new_thread(
    name: String,
    pinned: Option<usize>,
    is_idle: bool,
    stack_size: usize,
) -> Result<Arc<Thread>, SpawnError> {
    let words = stack_size.max(MIN_STACK_SIZE).div_ceil(8);
    let mut stack = Vec::new();
    stack
        .try_reserve_exact(words)
        .map_err(|_| SpawnError::OutOfMemory)?;
    stack.resize(words, 0u64);
    stack[0] = STACK_CANARY;
    let cpu = pinned.unwrap_or(0);
    Ok(Arc::new(Thread::new(
        name,
        pinned,
        is_idle,
        Some(stack.into_boxed_slice()),
        cpu,
    )))
}

fn prepare_start(t: &Arc<Thread>, entry: extern "C" fn(usize) -> !) {
    let stack = t.stack.as_ref().expect("a new thread has a stack");
    let top = stack.as_ptr_range().end as usize;
    // SAFETY: the thread has not started, so nothing else touches `sp`.
    unsafe { *t.sp.get() = A::init_context(top, entry, 0) };
}

/// Why [`Builder::spawn`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnError {
    /// Pinned to a CPU that is not online.
    CpuOffline(usize),
    /// No memory for the stack.
    OutOfMemory,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::CpuOffline(cpu) => write!(f, "CPU {cpu} is not online"),
            SpawnError::OutOfMemory => f.write_str("no memory for the thread's stack"),
        }
    }
}

/// Thread options: name, CPU, stack size.
#[derive(Debug, Default)]
pub struct Builder {
    name: Option<String>,
    pin: Option<usize>,
    stack_size: Option<usize>,
}

impl Builder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Runs the thread on `cpu` only.
    pub fn pin(mut self, cpu: usize) -> Self {
        self.pin = Some(cpu);
        self
    }

    /// Stack size in bytes (at least [`MIN_STACK_SIZE`]).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Starts `f` in a new thread.
    pub fn spawn(self, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle, SpawnError> {
        if let Some(cpu) = self.pin {
            if !smp::is_online(cpu) || !cpu_sched(cpu).running.load(Ordering::Acquire) {
                return Err(SpawnError::CpuOffline(cpu));
            }
        }
        let name = self.name.unwrap_or_else(|| "thread".into());
        let t = new_thread(
            name,
            self.pin,
            false,
            self.stack_size.unwrap_or(DEFAULT_STACK_SIZE),
        )?;
        *t.entry.lock() = Some(Box::new(f));
        prepare_start(&t, thread_entry);
        register(&t);
        let handle = JoinHandle { thread: t.clone() };
        let cpu = select_cpu(&t);
        t.cpu.store(cpu, Ordering::Relaxed);
        enqueue(cpu, t);
        Ok(handle)
    }
}

/// Starts `f` in a new unpinned thread with the default stack.
///
/// # Panics
/// If there is no memory for its stack ([`Builder::spawn`] reports it).
pub fn spawn(f: impl FnOnce() + Send + 'static) -> JoinHandle {
    match Builder::new().spawn(f) {
        Ok(handle) => handle,
        Err(e) => panic!("spawn: {e}"),
    }
}

/// Owns the right to wait for a thread.
#[derive(Debug)]
pub struct JoinHandle {
    thread: Arc<Thread>,
}

impl JoinHandle {
    pub fn thread(&self) -> &Arc<Thread> {
        &self.thread
    }

    /// Waits for the thread to finish; returns its accounted time.
    pub fn join(self) -> ThreadTimes {
        let t = &self.thread;
        t.joiners.wait_until(|| t.has_exited());
        t.times()
    }
}

/// First code of every spawned thread, on its own stack.
extern "C" fn thread_entry(_: usize) -> ! {
    finish_switch();
    A::irq_enable();
    let me = current();
    let f = me.entry.lock().take().expect("a thread starts once");
    f();
    me.exited.store(true, Ordering::Release);
    THREADS.lock().remove(&me.id);
    me.joiners.wake_all();
    drop(me);
    let _ = A::irq_save();
    let s = cpu_sched(A::cpu_id());
    current_ref(s).state.store(EXITED, Ordering::Release);
    schedule(Reason::Exit);
    unreachable!("an exited thread was switched back in");
}

/// First code of the boot CPU's idle thread.
extern "C" fn idle_entry(_: usize) -> ! {
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
fn run_job() {
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
fn is_idle_running(s: &CpuSched) -> bool {
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

/// Charges the time since the last sample to this CPU's running thread or,
/// inside an interrupt, to the CPU's interrupt time. Interrupts masked.
fn account(cpu: usize, s: &CpuSched, t: &Thread) {
    account_until(cpu, s, t, time::now_ns());
}

fn account_until(cpu: usize, s: &CpuSched, t: &Thread, now_ns: u64) {
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
fn schedule(reason: Reason) {
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
fn pull(cpu: usize) -> Option<Arc<Thread>> {
    steal_from(placement::pull_victim(cpu, cpu_views())?)
}

fn switch_to(cpu: usize, s: &CpuSched, next: Arc<Thread>, requeue_prev: bool) {
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
fn finish_switch() {
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

/// The kernel's interrupt dispatch begins (see [`may_block`]): the
/// interrupted thread is charged up to when the interrupt's time began
/// (`timer_fired_ns` for a timer, see [`account::irq_start`]), the rest of
/// it until [`on_irq_exit`] is interrupt time.
pub(crate) fn on_irq_entry(timer_fired_ns: Option<u64>) {
    let cpu = A::cpu_id();
    let s = cpu_sched(cpu);
    if s.running.load(Ordering::Relaxed) {
        let start = account::irq_start(time::now_ns(), timer_fired_ns);
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
fn balance(cpu: usize) {
    if let Some(victim) = placement::balance_victim(cpu, load(cpu), cpu_views()) {
        if let Some(t) = steal_from(victim) {
            enqueue(cpu, t);
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

/// Calls `f` for every live thread.
pub fn for_each_thread(mut f: impl FnMut(&Thread)) {
    let threads: Vec<Arc<Thread>> = THREADS.lock().values().filter_map(Weak::upgrade).collect();
    threads.iter().for_each(|t| f(t));
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
