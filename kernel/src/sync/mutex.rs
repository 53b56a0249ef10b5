//! A sleeping mutex that spins only while spinning can pay.
//!
//! The state word holds the owner's thread id (shifted left by one) and a
//! WAITERS bit: 0 is unlocked. Taking it is one compare-and-swap. A
//! contender that finds it held spins while the owner is running on a CPU
//! whose vCPU is not preempted — the owner will release it soon — and
//! otherwise sleeps on the wait queue. Spinning behind an owner the host has
//! descheduled only burns the contender's own time slice, so the PV view's
//! preempted flag ends the spin (Linux's `mutex_can_spin_on_owner` /
//! `vcpu_is_preempted`). [`MutexSpin`] picks the policy, for comparison.
//!
//! No lost wake-ups: a sleeper sets WAITERS and queues itself under the
//! wait queue's lock, only while the mutex is held (checked in the same
//! compare-and-swap); the unlocker clears the owner first and then, if
//! WAITERS was set, takes the queue's lock to wake one, so it sees every
//! sleeper that queued before its release.
//!
//! ```text
//!   sleeper (queue locked)                 unlocker
//!   CAS state: owner|0 -> owner|WAITERS    prev = state.fetch_and(WAITERS)  (owner := 0)
//!   queue self; unlock queue; block        if prev & WAITERS: lock queue, pop one,
//!                                            clear WAITERS if now empty, wake it
//! ```
//!
//! A woken thread competes again (no hand-off): a running contender may take
//! the mutex first, which keeps it moving when the woken vCPU is slow to run.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arch::Arch;

use crate::sched::{self, WaitQueue};
use crate::{pv, A};

const WAITERS: u64 = 1;

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
    pub spun: AtomicU64,
    /// Times a contender went to sleep.
    pub slept: AtomicU64,
    /// Spins ended because the owner's vCPU was preempted.
    pub preempted_owner: AtomicU64,
}

/// `T` behind a sleeping mutex.
pub struct Mutex<T: ?Sized> {
    state: AtomicU64,
    /// CPU the owner took it on: where to look whether it runs (a hint).
    owner_cpu: AtomicUsize,
    spin: MutexSpin,
    waiters: WaitQueue,
    stats: MutexStats,
    data: UnsafeCell<T>,
}

// SAFETY: one `&mut T` at a time, so sharing needs only `T: Send`.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}
// SAFETY: moving the mutex moves the value.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}

/// Holds a [`Mutex`]; releases it when dropped.
pub struct MutexGuard<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
}

impl<T> Mutex<T> {
    pub const fn new(value: T) -> Self {
        Self::with_spin(value, MutexSpin::OwnerRunningNotPreempted)
    }

    pub const fn with_spin(value: T, spin: MutexSpin) -> Self {
        Self {
            state: AtomicU64::new(0),
            owner_cpu: AtomicUsize::new(0),
            spin,
            waiters: WaitQueue::new(),
            stats: MutexStats {
                spun: AtomicU64::new(0),
                slept: AtomicU64::new(0),
                preempted_owner: AtomicU64::new(0),
            },
            data: UnsafeCell::new(value),
        }
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Takes the mutex, sleeping if needed.
    ///
    /// # Panics
    /// Where the caller cannot sleep (a spinlock held, a handler, idle).
    pub fn lock(&self) -> MutexGuard<'_, T> {
        let me = sched::current().id();
        if self.try_acquire(me) {
            return self.acquired();
        }
        self.lock_contended(me);
        self.acquired()
    }

    /// Takes the mutex if it is free.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        let me = sched::current().id();
        self.try_acquire(me).then(|| self.acquired())
    }

    pub fn stats(&self) -> &MutexStats {
        &self.stats
    }

    pub fn spin_policy(&self) -> MutexSpin {
        self.spin
    }

    fn acquired(&self) -> MutexGuard<'_, T> {
        self.owner_cpu.store(A::cpu_id(), Ordering::Relaxed);
        MutexGuard { mutex: self }
    }

    fn try_acquire(&self, me: u64) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state >> 1 != 0 {
                return false;
            }
            match self.state.compare_exchange_weak(
                state,
                (me << 1) | (state & WAITERS),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => state = now,
            }
        }
    }

    fn lock_contended(&self, me: u64) {
        let mut spun = false;
        loop {
            if self.try_acquire(me) {
                if spun {
                    self.stats.spun.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            if self.spin_on_owner() {
                spun = true;
                continue;
            }
            let queued = self.waiters.wait_if(
                || loop {
                    // Queue only while it is held, and say so in the word.
                    let state = self.state.load(Ordering::Relaxed);
                    if state >> 1 == 0 {
                        return false;
                    }
                    if state & WAITERS != 0
                        || self
                            .state
                            .compare_exchange_weak(
                                state,
                                state | WAITERS,
                                Ordering::Relaxed,
                                Ordering::Relaxed,
                            )
                            .is_ok()
                    {
                        return true;
                    }
                },
                || {},
            );
            if queued {
                self.stats.slept.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Spins while the owner runs (per the policy); true if the mutex was
    /// released or changed hands meanwhile (worth trying again), false if
    /// the caller should sleep.
    fn spin_on_owner(&self) -> bool {
        if self.spin == MutexSpin::Never {
            return false;
        }
        let owner = self.state.load(Ordering::Relaxed) >> 1;
        if owner == 0 {
            return true;
        }
        let cpu = self.owner_cpu.load(Ordering::Relaxed);
        loop {
            if self.state.load(Ordering::Relaxed) >> 1 != owner {
                return true;
            }
            if !sched::is_running_on(owner, cpu) || sched::need_resched() {
                return false;
            }
            if self.spin == MutexSpin::OwnerRunningNotPreempted && pv::vcpu_is_preempted(cpu) {
                self.stats.preempted_owner.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            A::spin_hint();
        }
    }

    fn unlock(&self) {
        let prev = self.state.fetch_and(WAITERS, Ordering::Release);
        if prev & WAITERS != 0 {
            self.waiters.wake_one_then(|empty| {
                if empty {
                    self.state.fetch_and(!WAITERS, Ordering::Relaxed);
                }
            });
        }
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves we hold the mutex.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves we hold the mutex; `&mut self` that this
        // is the only reference through it.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    /// The mutex this guard holds (for [`super::Condvar`]).
    pub(super) fn mutex(&self) -> &'a Mutex<T> {
        self.mutex
    }
}
