//! A sleeping mutex that spins only while spinning can pay.
//!
//! The state word holds the owner's thread id (shifted left by two) and two
//! flags, WAITERS and HANDOFF: 0 is unlocked. Taking it is one
//! compare-and-swap. A contender that finds it held spins while the owner
//! is running on a CPU whose vCPU is not preempted — the owner will release
//! it soon — and otherwise sleeps on the wait queue. Spinning behind an
//! owner the host has descheduled only burns the contender's own time
//! slice, so the PV view's preempted flag ends the spin (Linux's
//! `mutex_can_spin_on_owner` / `vcpu_is_preempted`). [`MutexSpin`] picks
//! the policy, for comparison.
//!
//! No lost wake-ups: a sleeper sets WAITERS and queues itself under the
//! wait queue's lock, only while the mutex is held (checked in the same
//! compare-and-swap); the unlocker clears the owner first and then, if
//! WAITERS was set, takes the queue's lock to wake one, so it sees every
//! sleeper that queued before its release.
//!
//! ```text
//!   sleeper (queue locked)                 unlocker
//!   CAS state: owner|0 -> owner|WAITERS    CAS state: owner|W -> 0|W   (owner := 0)
//!   queue self; unlock queue; block        if W: lock queue, pop one,
//!                                            clear W if now empty, wake it
//! ```
//!
//! A woken thread competes again, which keeps the mutex moving when the
//! woken vCPU is slow to run: a running contender may take it first. One
//! that loses after a wake-up is starving (Linux's `MUTEX_FLAG_HANDOFF`):
//! it queues again at the head and sets HANDOFF, and the next unlocker
//! hands the mutex straight to the head of the queue (state := its id,
//! under the queue's lock) instead of releasing it, so no thread waits
//! through more than one lost race.
//!
//! The algorithm is written against [`Threads`] and [`WaitList`], so that
//! this crate's loom models check it (lost wake-ups show as deadlocks);
//! `kernel::sync::Mutex` is the kernel's, over the scheduler and
//! `sched::WaitQueue`.

use core::sync::atomic::AtomicU64 as Counter;

use super::atomic::{spin_hint, AtomicU64, AtomicUsize, Ordering};

/// Some thread waits in the queue (or did when it was last looked at).
const WAITERS: u64 = 1;
/// A starving waiter asks the next unlocker to hand the mutex over.
const HANDOFF: u64 = 2;
const OWNER_SHIFT: u32 = 2;

fn owner_of(state: u64) -> u64 {
    state >> OWNER_SHIFT
}

/// When a contender spins instead of sleeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutexSpin {
    /// Never: sleep at once.
    Never,
    /// While the owner runs on a CPU, preempted vCPU or not.
    OwnerRunning,
    /// While the owner runs on a CPU whose vCPU is not preempted (default).
    OwnerRunningNotPreempted,
}

impl MutexSpin {
    pub const ALL: [MutexSpin; 3] = [
        MutexSpin::Never,
        MutexSpin::OwnerRunning,
        MutexSpin::OwnerRunningNotPreempted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MutexSpin::Never => "sleep",
            MutexSpin::OwnerRunning => "spin-owner",
            MutexSpin::OwnerRunningNotPreempted => "spin-owner-pv",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Counters of how contended acquisitions went.
#[derive(Debug, Default)]
pub struct MutexStats {
    /// Acquisitions that spun and then got it without sleeping.
    pub spun: Counter,
    /// Times a contender went to sleep.
    pub slept: Counter,
    /// Spins ended because the owner's vCPU was preempted.
    pub preempted_owner: Counter,
    /// Times an unlocker handed the mutex to a starving waiter.
    pub handed_off: Counter,
}

/// What the mutex needs to know about the calling thread and the others.
pub trait Threads {
    /// The calling thread's id: nonzero, below 2^62.
    fn current(&self) -> u64;
    /// The calling CPU.
    fn cpu(&self) -> usize;
    /// Whether thread `id` is running on `cpu` right now.
    fn is_running_on(&self, id: u64, cpu: usize) -> bool;
    /// Whether the caller should give up its CPU (a spinner stops).
    fn need_resched(&self) -> bool;
    /// Whether the host has preempted `cpu`'s vCPU (false if it does not say).
    fn vcpu_is_preempted(&self, cpu: usize) -> bool;
}

/// A queue of blocked threads: the contract of `sched::WaitQueue`.
pub trait WaitList {
    /// Under the queue's lock, if `should_block()`, queues the caller (at
    /// the head if `first`), then blocks until woken; returns whether it
    /// queued. A wake may be spurious (left over from an earlier wait).
    fn wait_if(&self, first: bool, should_block: impl FnOnce() -> bool) -> bool;
    /// Under the queue's lock, takes the head and calls `then(its id, the
    /// queue now empty)`; then wakes it. False if the queue was empty.
    fn wake_one_then(&self, then: impl FnOnce(Option<u64>, bool)) -> bool;
}

/// The mutex algorithm, without the value it protects.
pub struct RawMutex<W> {
    state: AtomicU64,
    /// CPU the owner took it on: where to look whether it runs (a hint).
    owner_cpu: AtomicUsize,
    spin: MutexSpin,
    waiters: W,
    stats: MutexStats,
}

macro_rules! raw_mutex {
    ($spin:expr, $waiters:expr) => {
        RawMutex {
            state: AtomicU64::new(0),
            owner_cpu: AtomicUsize::new(0),
            spin: $spin,
            waiters: $waiters,
            stats: MutexStats {
                spun: Counter::new(0),
                slept: Counter::new(0),
                preempted_owner: Counter::new(0),
                handed_off: Counter::new(0),
            },
        }
    };
}

impl<W> RawMutex<W> {
    #[cfg(not(loom))]
    pub const fn new(spin: MutexSpin, waiters: W) -> Self {
        raw_mutex!(spin, waiters)
    }

    /// loom's atomics have no const constructors.
    #[cfg(loom)]
    pub fn new(spin: MutexSpin, waiters: W) -> Self {
        raw_mutex!(spin, waiters)
    }

    pub fn stats(&self) -> &MutexStats {
        &self.stats
    }

    pub fn spin_policy(&self) -> MutexSpin {
        self.spin
    }

    /// The state word (owner and flags), for the model checks.
    #[cfg(all(test, loom))]
    pub(crate) fn word(&self) -> u64 {
        self.state.load(Ordering::Relaxed)
    }
}

impl<W: WaitList> RawMutex<W> {
    /// Takes the mutex, spinning or sleeping as needed.
    pub fn lock(&self, threads: &impl Threads) {
        let me = threads.current();
        if !self.try_acquire(me) {
            self.lock_contended(threads, me);
        }
        self.owner_cpu.store(threads.cpu(), Ordering::Relaxed);
    }

    /// Takes the mutex if it is free.
    pub fn try_lock(&self, threads: &impl Threads) -> bool {
        let taken = self.try_acquire(threads.current());
        if taken {
            self.owner_cpu.store(threads.cpu(), Ordering::Relaxed);
        }
        taken
    }

    fn try_acquire(&self, me: u64) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if owner_of(state) != 0 {
                return false;
            }
            // Free: HANDOFF is only ever set while it is held.
            match self.state.compare_exchange_weak(
                state,
                (me << OWNER_SHIFT) | (state & WAITERS),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => state = now,
            }
        }
    }

    fn lock_contended(&self, threads: &impl Threads, me: u64) {
        let mut spun = false;
        // Woken once and beaten to it since: queue at the head, ask for
        // the hand-off.
        let mut starving = false;
        loop {
            if self.try_acquire(me) {
                if spun {
                    self.stats.spun.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            if self.spin_on_owner(threads) {
                spun = true;
                continue;
            }
            let flags = if starving { WAITERS | HANDOFF } else { WAITERS };
            let queued = self.waiters.wait_if(starving, || loop {
                // Queue only while it is held, and say so in the word.
                let state = self.state.load(Ordering::Relaxed);
                if owner_of(state) == 0 {
                    return false;
                }
                if state & flags == flags
                    || self
                        .state
                        .compare_exchange_weak(
                            state,
                            state | flags,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                {
                    return true;
                }
            });
            if queued {
                self.stats.slept.fetch_add(1, Ordering::Relaxed);
                // Acquire: pairs with the hand-off's Release store.
                if owner_of(self.state.load(Ordering::Acquire)) == me {
                    return;
                }
                starving = true;
            }
        }
    }

    /// Spins while the owner runs (per the policy); true if the mutex was
    /// released or changed hands meanwhile (worth trying again), false if
    /// the caller should sleep.
    fn spin_on_owner(&self, threads: &impl Threads) -> bool {
        if self.spin == MutexSpin::Never {
            return false;
        }
        let owner = owner_of(self.state.load(Ordering::Relaxed));
        if owner == 0 {
            return true;
        }
        let cpu = self.owner_cpu.load(Ordering::Relaxed);
        loop {
            if owner_of(self.state.load(Ordering::Relaxed)) != owner {
                return true;
            }
            if !threads.is_running_on(owner, cpu) || threads.need_resched() {
                return false;
            }
            if self.spin == MutexSpin::OwnerRunningNotPreempted && threads.vcpu_is_preempted(cpu) {
                self.stats.preempted_owner.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            spin_hint();
        }
    }

    /// Releases the mutex, or hands it to the head waiter if one starves.
    ///
    /// # Safety
    /// The caller holds it.
    pub unsafe fn unlock(&self) {
        let mut state = self.state.load(Ordering::Relaxed);
        while state & HANDOFF == 0 {
            match self.state.compare_exchange_weak(
                state,
                state & WAITERS,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) if state & WAITERS == 0 => return,
                Ok(_) => {
                    self.waiters.wake_one_then(|_, empty| {
                        if empty {
                            self.state.fetch_and(!WAITERS, Ordering::Relaxed);
                        }
                    });
                    return;
                }
                Err(now) => state = now,
            }
        }
        // Under the queue's lock nothing else changes the word: flags are
        // set only under it, and only the owner (us) clears the owner.
        let handed = self.waiters.wake_one_then(|head, empty| {
            let waiters = if empty { 0 } else { WAITERS };
            let next = head.map_or(0, |id| id << OWNER_SHIFT);
            self.state.store(next | waiters, Ordering::Release);
        });
        if handed {
            self.stats.handed_off.fetch_add(1, Ordering::Relaxed);
        }
    }
}
