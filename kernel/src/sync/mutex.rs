//! The kernel's sleeping mutex: [`RawMutex`] (the algorithm, model-checked
//! in the `locks` crate) over the scheduler and [`WaitQueue`].
//!
//! A contender spins while the owner runs on a CPU whose vCPU is not
//! preempted and otherwise sleeps on the wait queue; the algorithm, its
//! state word and its hand-off are taught in [`locks::mutex`].

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};

use arch::Cpu;
pub use locks::mutex::{MutexSpin, MutexStats, RawMutex, Threads, WaitList};

use crate::sched::{self, WaitQueue};
use crate::{pv, A};

/// The calling kernel thread and the scheduler's view of the others.
struct KernelThreads;

impl Threads for KernelThreads {
    fn current(&self) -> u64 {
        sched::current().id()
    }
    fn cpu(&self) -> usize {
        A::cpu_id()
    }
    fn is_running_on(&self, id: u64, cpu: usize) -> bool {
        sched::is_running_on(id, cpu)
    }
    fn need_resched(&self) -> bool {
        sched::need_resched()
    }
    fn vcpu_is_preempted(&self, cpu: usize) -> bool {
        pv::vcpu_is_preempted(cpu)
    }
}

impl WaitList for WaitQueue {
    fn wait_if(&self, first: bool, should_block: impl FnOnce() -> bool) -> bool {
        if first {
            self.wait_first_if(should_block, || {})
        } else {
            WaitQueue::wait_if(self, should_block, || {})
        }
    }
    fn wake_one_then(&self, then: impl FnOnce(Option<u64>, bool)) -> bool {
        WaitQueue::wake_one_then(self, then)
    }
}

/// `T` behind a sleeping mutex.
pub struct Mutex<T: ?Sized> {
    raw: RawMutex<WaitQueue>,
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
            raw: RawMutex::new(spin, WaitQueue::new()),
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
        self.raw.lock(&KernelThreads);
        MutexGuard { mutex: self }
    }

    /// Takes the mutex if it is free.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.raw
            .try_lock(&KernelThreads)
            .then_some(MutexGuard { mutex: self })
    }

    pub fn stats(&self) -> &MutexStats {
        self.raw.stats()
    }

    pub fn spin_policy(&self) -> MutexSpin {
        self.raw.spin_policy()
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
        // SAFETY: the guard proves we hold the mutex; `&mut self` that
        // this is the only reference through it.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard proves we hold it.
        unsafe { self.mutex.raw.unlock() };
    }
}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    /// The mutex this guard holds (for [`crate::sync::Condvar`]).
    pub(in crate::sync) fn mutex(&self) -> &'a Mutex<T> {
        self.mutex
    }
}
