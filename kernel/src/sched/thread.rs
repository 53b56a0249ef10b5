//! Threads: what one is ([`Thread`], its accounted [`ThreadTimes`]), how one
//! is made ([`Builder`], [`spawn`]: a stack with a canary at its lowest
//! word, a first switch into [`thread_entry`]), waited for ([`JoinHandle`])
//! and listed ([`for_each_thread`]).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use arch::{Context, Cpu, Interrupts};

use super::{
    cpu_sched, current, current_ref, enqueue, finish_switch, schedule, select_cpu, Charge, Reason,
    Runnable, WaitQueue, EXITED, RUNNABLE,
};
use crate::sync::{SpinLock, SpinNoIrq};
use crate::{smp, A};

/// Stack size of a thread unless its [`Builder`] says otherwise.
pub const DEFAULT_STACK_SIZE: usize = 32 * 1024;

/// Smallest stack a thread may ask for (a switch frame, a trap frame and
/// room to run).
pub const MIN_STACK_SIZE: usize = 8 * 1024;

/// Written at the lowest word of every thread stack and checked at every
/// switch: a thread that overran its stack is reported, not left to corrupt
/// the heap silently.
const STACK_CANARY: u64 = u64::from_le_bytes(*b"lodger!!");

/// A kernel thread.
pub struct Thread {
    pub(super) id: u64,
    pub(super) name: String,
    /// The only CPU it may run on, if pinned.
    pub(super) pinned: Option<usize>,
    pub(super) is_idle: bool,
    /// Saved stack pointer while switched out (see [`Context::switch_context`]).
    pub(super) sp: UnsafeCell<usize>,
    /// `None` for a CPU's boot context adopted as a thread.
    pub(super) stack: Option<Box<[u64]>>,
    pub(super) state: AtomicU8,
    /// Set by the CPU switching to it, cleared once its context is saved.
    pub(super) on_cpu: AtomicBool,
    /// The CPU it last ran on.
    pub(super) cpu: AtomicUsize,
    /// Task time, adjusted when entering a run queue ([`super::runqueue`]).
    pub(super) vruntime: AtomicU64,
    pub(super) run_ns: AtomicU64,
    pub(super) steal_ns: AtomicU64,
    pub(super) wall_ns: AtomicU64,
    pub(super) switches: AtomicU64,
    pub(super) migrations: AtomicU64,
    pub(super) entry: SpinNoIrq<Option<Box<dyn FnOnce() + Send>>>,
    pub(super) exited: AtomicBool,
    pub(super) joiners: WaitQueue,
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
    pub(super) fn new(
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

    pub(super) fn charge(&self, c: Charge) {
        self.run_ns.fetch_add(c.task_ns, Ordering::Relaxed);
        self.steal_ns.fetch_add(c.steal_ns, Ordering::Relaxed);
        self.wall_ns.fetch_add(c.wall_ns, Ordering::Relaxed);
        self.vruntime.fetch_add(c.task_ns, Ordering::Relaxed);
    }

    pub(super) fn stack_intact(&self) -> bool {
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

/// Every live thread, for statistics.
pub(super) static THREADS: SpinLock<BTreeMap<u64, Weak<Thread>>> = SpinLock::new(BTreeMap::new());

pub(super) fn register(t: &Arc<Thread>) {
    THREADS.lock().insert(t.id, Arc::downgrade(t));
}

pub(super) fn new_thread(
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

pub(super) fn prepare_start(t: &Arc<Thread>, entry: extern "C" fn(usize) -> !) {
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
pub(super) extern "C" fn thread_entry(_: usize) -> ! {
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

/// Calls `f` for every live thread.
pub fn for_each_thread(mut f: impl FnMut(&Thread)) {
    let threads: Vec<Arc<Thread>> = THREADS.lock().values().filter_map(Weak::upgrade).collect();
    threads.iter().for_each(|t| f(t));
}
