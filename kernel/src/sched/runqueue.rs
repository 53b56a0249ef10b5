//! A CPU's queue of runnable threads, ordered by virtual run time.
//!
//! The next thread to run is the one that has had the least task time
//! ([`super::account`]: steal excluded), ties going to the one queued
//! first; a thread that waited gets its turn before one that just ran. A
//! thread entering the queue (new, woken or migrated) starts no further back
//! than one slice behind the queue's minimum, so a long sleeper cannot
//! monopolise the CPU to "catch up". Linear scans: run queues are short.

use alloc::vec::Vec;

/// What the queue needs to know about a thread.
pub trait Runnable {
    /// Task time charged so far, adjusted on entry (see the module docs).
    fn vruntime(&self) -> u64;
    /// Only another CPU's balancer asks: may it move this thread?
    fn movable(&self) -> bool;
}

/// Runnable threads waiting for one CPU.
pub struct RunQueue<T> {
    queue: Vec<T>,
    /// Lower bound of the vruntime of every thread queued or running here
    /// (monotonic).
    min_vruntime: u64,
}

impl<T: Runnable> RunQueue<T> {
    pub const fn new() -> Self {
        Self {
            queue: Vec::new(),
            min_vruntime: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The vruntime a thread entering this queue starts from, given its
    /// own: no less than `slice_ns` behind the queue's minimum.
    pub fn entry_vruntime(&self, own: u64, slice_ns: u64) -> u64 {
        own.max(self.min_vruntime.saturating_sub(slice_ns))
    }

    /// Raises the minimum as the thread running here (`vruntime`) advances.
    pub fn note_running(&mut self, vruntime: u64) {
        let floor = self
            .queue
            .iter()
            .map(Runnable::vruntime)
            .min()
            .map_or(vruntime, |q| q.min(vruntime));
        self.min_vruntime = self.min_vruntime.max(floor);
    }

    pub fn push(&mut self, thread: T) {
        self.queue.push(thread);
    }

    /// Removes the thread to run next: least vruntime, first queued on ties.
    pub fn pop_next(&mut self) -> Option<T> {
        let (index, _) = self
            .queue
            .iter()
            .enumerate()
            .min_by_key(|(i, t)| (t.vruntime(), *i))?;
        let next = self.queue.remove(index);
        self.min_vruntime = self.min_vruntime.max(next.vruntime());
        Some(next)
    }

    /// Removes a thread another CPU may take: the movable one that would
    /// run last here.
    pub fn steal(&mut self) -> Option<T> {
        let (index, _) = self
            .queue
            .iter()
            .enumerate()
            .filter(|(_, t)| t.movable())
            .max_by_key(|(i, t)| (t.vruntime(), *i))?;
        Some(self.queue.remove(index))
    }

    /// Whether some queued thread may move to another CPU.
    pub fn has_movable(&self) -> bool {
        self.queue.iter().any(Runnable::movable)
    }
}

impl<T: Runnable> Default for RunQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct T(&'static str, u64, bool);

    impl Runnable for T {
        fn vruntime(&self) -> u64 {
            self.1
        }
        fn movable(&self) -> bool {
            self.2
        }
    }

    #[test]
    fn runs_least_vruntime_first_and_fifo_on_ties() {
        let mut rq = RunQueue::new();
        rq.push(T("a", 30, true));
        rq.push(T("b", 10, true));
        rq.push(T("c", 10, true));
        rq.push(T("d", 20, true));
        let order: Vec<_> = core::iter::from_fn(|| rq.pop_next()).map(|t| t.0).collect();
        assert_eq!(order, ["b", "c", "d", "a"]);
        assert!(rq.is_empty());
    }

    #[test]
    fn entrants_start_at_most_one_slice_behind() {
        let mut rq = RunQueue::new();
        rq.push(T("a", 1_000_000, true));
        rq.pop_next();
        assert_eq!(rq.entry_vruntime(0, 100), 999_900);
        assert_eq!(rq.entry_vruntime(2_000_000, 100), 2_000_000);
    }

    #[test]
    fn minimum_never_goes_back() {
        let mut rq = RunQueue::new();
        rq.note_running(500);
        rq.push(T("late", 100, true));
        rq.note_running(900);
        assert_eq!(rq.entry_vruntime(0, 0), 500);
        rq.pop_next();
        rq.note_running(900);
        assert_eq!(rq.entry_vruntime(0, 0), 900);
    }

    #[test]
    fn steal_takes_only_movable_threads_last_in_line() {
        let mut rq = RunQueue::new();
        rq.push(T("pinned", 50, false));
        rq.push(T("soon", 10, true));
        rq.push(T("later", 40, true));
        assert_eq!(rq.steal().map(|t| t.0), Some("later"));
        assert_eq!(rq.steal().map(|t| t.0), Some("soon"));
        assert!(rq.steal().is_none());
        assert!(!rq.has_movable());
        assert_eq!(rq.len(), 1);
    }
}
