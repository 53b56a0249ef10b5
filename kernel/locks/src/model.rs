//! Model checks of the lock algorithms with loom: every interleaving (up to
//! a preemption bound) of a few CPUs taking a lock, each updating a counter
//! through a loom `UnsafeCell`, which reports any access not ordered by the
//! lock as a data race.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p locks --release`
//! (`cargo xtask test` does, in its own target directory).

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

use super::mcs::{McsCpuNodes, McsLock};
use super::qspinlock::{QSpinLock, SlowPath, UNBOUNDED_STEALS};
use super::test_platform::{shared_with, Cpu};
use super::ticket::TicketLock;

fn model(preemption_bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemption_bound);
    // Spin-waits are branches to loom; the pending and MCS waits need more
    // than the default 1,000 to finish in the longest interleavings.
    builder.max_branches = 100_000;
    builder.check(f);
}

/// `cpus` CPUs each take the qspinlock `rounds` times.
fn qspinlock(cpus: usize, rounds: u32, slow_path: SlowPath, bound: usize) {
    qspinlock_unqueued(cpus, rounds, slow_path, bound, 0);
}

/// [`qspinlock`], contenders spinning `unqueued` times before they queue.
fn qspinlock_unqueued(cpus: usize, rounds: u32, slow_path: SlowPath, bound: usize, unqueued: u32) {
    qspinlock_with(cpus, rounds, slow_path, bound, unqueued, UNBOUNDED_STEALS);
}

/// [`qspinlock_unqueued`], at most `budget` steals past a queue head.
fn qspinlock_with(
    cpus: usize,
    rounds: u32,
    slow_path: SlowPath,
    bound: usize,
    unqueued: u32,
    budget: u32,
) {
    model(bound, move || {
        let shared = shared_with(cpus, slow_path, unqueued, budget);
        let lock = Arc::new(QSpinLock::new());
        let counter = Arc::new(UnsafeCell::new(0u32));
        let threads: Vec<_> = (1..cpus)
            .map(|id| {
                let shared = Arc::clone(&shared);
                let (lock, counter) = (Arc::clone(&lock), Arc::clone(&counter));
                thread::spawn(move || {
                    critical_sections(&Cpu::new(id, &shared), &lock, &counter, rounds)
                })
            })
            .collect();
        critical_sections(&Cpu::new(0, &shared), &lock, &counter, rounds);
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: every thread has been joined.
        let total = counter.with(|c| unsafe { *c });
        assert_eq!(total, cpus as u32 * rounds);
        assert!(!lock.is_locked());
    });
}

fn critical_sections(cpu: &Cpu, lock: &QSpinLock, counter: &UnsafeCell<u32>, rounds: u32) {
    for _ in 0..rounds {
        lock.lock(cpu);
        // SAFETY: the lock orders these accesses; loom checks that it does.
        counter.with_mut(|c| unsafe { *c += 1 });
        lock.unlock(cpu);
    }
}

#[test]
fn qspinlock_native_two_cpus() {
    qspinlock(2, 2, SlowPath::Spin, 3);
}

#[test]
fn qspinlock_native_three_cpus() {
    // Three CPUs reach the pending bit and the MCS queue.
    qspinlock(3, 1, SlowPath::Spin, 1);
}

#[test]
fn qspinlock_native_four_cpus() {
    // Holder, pending waiter, queue head and a second queued waiter: the
    // MCS hand-over between two waiters.
    qspinlock(4, 1, SlowPath::Spin, 1);
}

#[test]
fn qspinlock_pv_two_cpus() {
    qspinlock(2, 2, SlowPath::Halt, 3);
}

#[test]
fn qspinlock_pv_three_cpus() {
    // Halting, hashing, SLOW_VAL unlocks and kick_node.
    qspinlock(3, 1, SlowPath::Halt, 3);
}

#[test]
fn qspinlock_pv_unqueued_two_cpus() {
    // Unqueued spinning for a held lock, the budget running out, then the
    // queue: two spins, so both the steal and the queue after it are seen.
    qspinlock_unqueued(2, 2, SlowPath::Halt, 3, 2);
}

#[test]
fn qspinlock_pv_unqueued_three_cpus() {
    // Unqueued spinners beside a spinning or halted queue head.
    qspinlock_unqueued(3, 1, SlowPath::Halt, 2, 2);
}

#[test]
fn qspinlock_pv_steal_budget_two_cpus() {
    // One steal past a head, then the hand-over to it.
    qspinlock_with(2, 2, SlowPath::Halt, 3, 2, 1);
}

#[test]
fn qspinlock_pv_steal_budget_three_cpus() {
    // No steal past a head at all: a stealer queues behind a halted head.
    qspinlock_with(3, 1, SlowPath::Halt, 2, 2, 0);
}

#[test]
fn ticket_lock() {
    model(3, || {
        let lock = Arc::new(TicketLock::new());
        let counter = Arc::new(UnsafeCell::new(0u32));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (lock, counter) = (Arc::clone(&lock), Arc::clone(&counter));
                thread::spawn(move || {
                    lock.lock();
                    // SAFETY: ordered by the lock (checked by loom).
                    counter.with_mut(|c| unsafe { *c += 1 });
                    // SAFETY: we hold it.
                    unsafe { lock.unlock() };
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: both threads have been joined.
        assert_eq!(counter.with(|c| unsafe { *c }), 2);
    });
}

#[test]
fn mcs_lock() {
    model(3, || {
        let lock = Arc::new(McsLock::new());
        let counter = Arc::new(UnsafeCell::new(0u32));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (lock, counter) = (Arc::clone(&lock), Arc::clone(&counter));
                thread::spawn(move || {
                    let nodes = McsCpuNodes::new();
                    lock.lock(&nodes);
                    // SAFETY: ordered by the lock (checked by loom).
                    counter.with_mut(|c| unsafe { *c += 1 });
                    // SAFETY: we hold it, taken with `nodes`.
                    unsafe { lock.unlock(&nodes) };
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: both threads have been joined.
        assert_eq!(counter.with(|c| unsafe { *c }), 2);
    });
}

/// The sleeping mutex over a model of `sched::WaitQueue`: blocking is
/// loom's park, waking its unpark. As in the kernel, a wake that comes
/// before the block is kept (the thread does not sleep) and a late wake
/// from an earlier wait can end a later one early. A lost wake-up leaves a
/// thread parked for good, which loom reports as a deadlock.
mod sleeping_mutex {
    use std::cell::Cell;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicBool, Ordering};

    use loom::cell::UnsafeCell;
    use loom::sync::{Arc, Mutex as QueueLock};
    use loom::thread;

    use super::model;
    use crate::mutex::{MutexSpin, RawMutex, Threads, WaitList};

    loom::thread_local! {
        /// The model thread's id (the kernel's queue asks the scheduler).
        static ME: Cell<u64> = Cell::new(0);
    }

    struct ParkQueue {
        waiters: QueueLock<VecDeque<(u64, thread::Thread)>>,
    }

    impl ParkQueue {
        fn new() -> Self {
            Self {
                waiters: QueueLock::new(VecDeque::new()),
            }
        }
    }

    impl WaitList for ParkQueue {
        fn wait_if(&self, first: bool, should_block: impl FnOnce() -> bool) -> bool {
            let id = ME.with(Cell::get);
            {
                let mut waiters = self.waiters.lock().unwrap();
                if !should_block() {
                    return false;
                }
                let entry = (id, thread::current());
                if first {
                    waiters.push_front(entry);
                } else {
                    waiters.push_back(entry);
                }
            }
            thread::park();
            self.waiters.lock().unwrap().retain(|(t, _)| *t != id);
            true
        }

        fn wake_one_then(&self, then: impl FnOnce(Option<u64>, bool)) -> bool {
            let head = {
                let mut waiters = self.waiters.lock().unwrap();
                let head = waiters.pop_front();
                then(head.as_ref().map(|(id, _)| *id), waiters.is_empty());
                head
            };
            head.map(|(_, t)| t.unpark()).is_some()
        }
    }

    /// A model thread on CPU `id - 1`; odd CPUs' vCPUs read as preempted.
    struct ModelThread {
        id: u64,
    }

    impl Threads for ModelThread {
        fn current(&self) -> u64 {
            self.id
        }
        fn cpu(&self) -> usize {
            self.id as usize - 1
        }
        fn is_running_on(&self, _: u64, _: usize) -> bool {
            true
        }
        fn need_resched(&self) -> bool {
            false
        }
        fn vcpu_is_preempted(&self, cpu: usize) -> bool {
            cpu % 2 == 1
        }
    }

    /// `threads` threads each take the mutex `rounds` times; returns
    /// whether any execution handed it off.
    fn check(threads: u64, rounds: u32, spin: MutexSpin, bound: usize) -> bool {
        static HANDED_OFF: AtomicBool = AtomicBool::new(false);
        HANDED_OFF.store(false, Ordering::Relaxed);
        model(bound, move || {
            let mutex = Arc::new(RawMutex::new(spin, ParkQueue::new()));
            let counter = Arc::new(UnsafeCell::new(0u32));
            let run =
                move |id: u64, mutex: Arc<RawMutex<ParkQueue>>, counter: Arc<UnsafeCell<u32>>| {
                    ME.with(|me| me.set(id));
                    let me = ModelThread { id };
                    for _ in 0..rounds {
                        mutex.lock(&me);
                        // SAFETY: the mutex orders these accesses; loom checks that it does.
                        counter.with_mut(|c| unsafe { *c += 1 });
                        // SAFETY: taken just above.
                        unsafe { mutex.unlock() };
                    }
                };
            let spawned: Vec<_> = (2..=threads)
                .map(|id| {
                    let (mutex, counter) = (Arc::clone(&mutex), Arc::clone(&counter));
                    thread::spawn(move || run(id, mutex, counter))
                })
                .collect();
            run(1, Arc::clone(&mutex), Arc::clone(&counter));
            for t in spawned {
                t.join().unwrap();
            }
            // SAFETY: every thread has been joined.
            let total = counter.with(|c| unsafe { *c });
            assert_eq!(total, threads as u32 * rounds);
            assert_eq!(mutex.word(), 0, "released, and no waiter flag left behind");
            if mutex.stats().handed_off.load(Ordering::Relaxed) > 0 {
                HANDED_OFF.store(true, Ordering::Relaxed);
            }
        });
        HANDED_OFF.load(Ordering::Relaxed)
    }

    #[test]
    fn sleeping_two_threads() {
        check(2, 2, MutexSpin::Never, 3);
    }

    #[test]
    fn sleeping_three_threads_hand_off() {
        // A woken waiter beaten to it by a newcomer starves and is handed
        // the mutex: the model must reach that path.
        assert!(check(3, 1, MutexSpin::Never, 2), "no execution handed off");
    }

    #[test]
    fn spinning_on_running_owners() {
        // CPU 0's owner is spun on, CPU 1's (preempted vCPU) slept behind.
        check(2, 2, MutexSpin::OwnerRunningNotPreempted, 3);
    }

    #[test]
    fn spinning_and_sleeping_three_threads() {
        check(3, 1, MutexSpin::OwnerRunningNotPreempted, 1);
    }
}
