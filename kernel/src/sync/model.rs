//! Model checks of the lock algorithms with loom: every interleaving (up to
//! a preemption bound) of a few CPUs taking a lock, each updating a counter
//! through a loom `UnsafeCell`, which reports any access not ordered by the
//! lock as a data race.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p kernel --release`
//! (`cargo xtask test` does, in its own target directory).

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

use super::mcs::{McsCpuNodes, McsLock};
use super::qspinlock::QSpinLock;
use super::test_platform::{shared, Cpu};
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
fn qspinlock(cpus: usize, rounds: u32, pv: bool, bound: usize) {
    model(bound, move || {
        let shared = shared(cpus, pv);
        let lock = Arc::new(QSpinLock::new());
        let counter = Arc::new(UnsafeCell::new(0u32));
        let threads: Vec<_> = (1..cpus)
            .map(|id| {
                let cpu = Cpu {
                    id,
                    shared: Arc::clone(&shared),
                };
                let (lock, counter) = (Arc::clone(&lock), Arc::clone(&counter));
                thread::spawn(move || critical_sections(&cpu, &lock, &counter, rounds))
            })
            .collect();
        let cpu0 = Cpu {
            id: 0,
            shared: Arc::clone(&shared),
        };
        critical_sections(&cpu0, &lock, &counter, rounds);
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
    qspinlock(2, 2, false, 3);
}

#[test]
fn qspinlock_native_three_cpus() {
    // Three CPUs reach the pending bit and the MCS queue.
    qspinlock(3, 1, false, 1);
}

#[test]
fn qspinlock_native_four_cpus() {
    // Holder, pending waiter, queue head and a second queued waiter: the
    // MCS hand-over between two waiters.
    qspinlock(4, 1, false, 1);
}

#[test]
fn qspinlock_pv_two_cpus() {
    qspinlock(2, 2, true, 3);
}

#[test]
fn qspinlock_pv_three_cpus() {
    // Halting, hashing, SLOW_VAL unlocks and kick_node.
    qspinlock(3, 1, true, 2);
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
