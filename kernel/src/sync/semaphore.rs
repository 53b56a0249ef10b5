//! A counting semaphore whose waiters sleep.
//!
//! `down` checks the count under the wait queue's lock before it sleeps and
//! `up` adds to the count before it takes that lock to wake one, so an `up`
//! is never missed by a `down` about to sleep.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::sched::WaitQueue;

/// Permits, taken by [`Semaphore::down`] and returned by [`Semaphore::up`].
pub struct Semaphore {
    count: AtomicUsize,
    waiters: WaitQueue,
}

impl Semaphore {
    pub const fn new(permits: usize) -> Self {
        Self {
            count: AtomicUsize::new(permits),
            waiters: WaitQueue::new(),
        }
    }

    /// Takes a permit if one is free.
    pub fn try_down(&self) -> bool {
        self.count
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |c| c.checked_sub(1))
            .is_ok()
    }

    /// Takes a permit, sleeping until one is free.
    pub fn down(&self) {
        while !self.try_down() {
            self.waiters
                .wait_if(|| self.count.load(Ordering::Relaxed) == 0, || {});
        }
    }

    /// Returns a permit and wakes a waiter.
    pub fn up(&self) {
        self.count.fetch_add(1, Ordering::Release);
        self.waiters.wake_one();
    }

    /// Free permits now.
    pub fn permits(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}
