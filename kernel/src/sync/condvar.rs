//! Condition variables for the sleeping [`Mutex`].
//!
//! A waiter queues itself before it releases the mutex, so a notify that
//! comes after the release (and after whatever state change the waiter was
//! waiting for) finds it: no lost wake-ups.

use super::mutex::{Mutex, MutexGuard};
use crate::sched::WaitQueue;

/// Threads waiting for a condition protected by a [`Mutex`].
pub struct Condvar {
    waiters: WaitQueue,
}

impl Condvar {
    pub const fn new() -> Self {
        Self {
            waiters: WaitQueue::new(),
        }
    }

    /// Releases the mutex, sleeps until notified, takes the mutex again.
    /// May return without a notify only if one was already in flight; use
    /// [`Condvar::wait_while`] for a condition.
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        let mutex: &'a Mutex<T> = guard.mutex();
        self.waiters.wait_if(|| true, move || drop(guard));
        mutex.lock()
    }

    /// Waits until `condition` is false; returns the guard with it false.
    pub fn wait_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> MutexGuard<'a, T> {
        while condition(&mut guard) {
            guard = self.wait(guard);
        }
        guard
    }

    /// Wakes one waiter; false if none waited.
    pub fn notify_one(&self) -> bool {
        self.waiters.wake_one()
    }

    /// Wakes every waiter; returns how many.
    pub fn notify_all(&self) -> usize {
        self.waiters.wake_all()
    }
}

impl Default for Condvar {
    fn default() -> Self {
        Self::new()
    }
}
