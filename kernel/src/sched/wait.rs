//! Wait queues: threads blocked until another thread or a handler wakes them.

use alloc::collections::VecDeque;
use alloc::sync::Arc;

use super::{block, current, prepare_to_block, wake, Thread};
use crate::sync::SpinNoIrq;

/// Threads waiting for something, woken in FIFO order.
pub struct WaitQueue {
    waiters: SpinNoIrq<VecDeque<Arc<Thread>>>,
}

impl WaitQueue {
    pub const fn new() -> Self {
        Self {
            waiters: SpinNoIrq::new(VecDeque::new()),
        }
    }

    /// Blocks until `ready()` holds. `ready` is evaluated under the queue's
    /// lock, so a waker that makes it true and then calls
    /// [`WaitQueue::wake_one`] / [`WaitQueue::wake_all`] is never missed.
    pub fn wait_until(&self, mut ready: impl FnMut() -> bool) {
        while self.wait_if(|| !ready(), || {}) {}
    }

    /// The building block: under the queue's lock, if `should_block()`,
    /// queue the calling thread; then (lock released, still queued) run
    /// `before_block` and block until woken. Returns whether it queued.
    /// A wake between the two still counts: the thread does not sleep.
    pub fn wait_if(
        &self,
        should_block: impl FnOnce() -> bool,
        before_block: impl FnOnce(),
    ) -> bool {
        self.wait(false, should_block, before_block)
    }

    /// [`WaitQueue::wait_if`], queueing at the head: for a waiter that has
    /// waited before and must not go behind the newcomers.
    pub fn wait_first_if(
        &self,
        should_block: impl FnOnce() -> bool,
        before_block: impl FnOnce(),
    ) -> bool {
        self.wait(true, should_block, before_block)
    }

    fn wait(
        &self,
        first: bool,
        should_block: impl FnOnce() -> bool,
        before_block: impl FnOnce(),
    ) -> bool {
        let me = current();
        let id = me.id();
        {
            let mut waiters = self.waiters.lock();
            if !should_block() {
                return false;
            }
            prepare_to_block();
            if first {
                waiters.push_front(me);
            } else {
                waiters.push_back(me);
            }
        }
        before_block();
        block();
        // A waker of an earlier wait of this thread that dequeued it and
        // called `wake` late can end this wait early, with the thread still
        // queued: leave the queue, so no stale entry wakes a later wait.
        self.waiters.lock().retain(|t| t.id() != id);
        true
    }

    /// Wakes the longest waiter; false if there was none.
    pub fn wake_one(&self) -> bool {
        let first = self.waiters.lock().pop_front();
        first.map(wake).is_some()
    }

    /// Wakes the head waiter, first calling `then(its id, now empty)`
    /// under the queue's lock (so no thread can queue in between); false if
    /// there was none.
    pub fn wake_one_then(&self, then: impl FnOnce(Option<u64>, bool)) -> bool {
        let first = {
            let mut waiters = self.waiters.lock();
            let first = waiters.pop_front();
            then(first.as_ref().map(|t| t.id()), waiters.is_empty());
            first
        };
        first.map(wake).is_some()
    }

    /// Wakes every waiter; returns how many.
    pub fn wake_all(&self) -> usize {
        let all = core::mem::take(&mut *self.waiters.lock());
        let n = all.len();
        all.into_iter().for_each(wake);
        n
    }

    /// Whether no thread waits.
    pub fn is_empty(&self) -> bool {
        self.waiters.lock().is_empty()
    }
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}
