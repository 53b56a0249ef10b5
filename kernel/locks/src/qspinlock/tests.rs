//! Host stress tests and rule tests of the qspinlock (std threads as CPUs).

use super::halt::{steal, Halt, Steal};
use super::hash::PvHash;
use super::*;
use crate::test_platform::{shared, shared_unqueued, shared_with, Cpu, Shared};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread;

#[test]
fn word_layout() {
    assert_eq!(LOCKED_MASK, 0xff);
    assert_eq!(PENDING_MASK, 0x100);
    assert_eq!(TAIL_IDX_MASK, 0x3_0000);
    assert_eq!(TAIL_CPU_MASK, 0xfffc_0000);
    assert_eq!(decode_tail(encode_tail(13, 3)), (13, 3));
    assert_eq!(encode_tail(0, 0), 1 << 18);
}

/// The CPUs at the edges of the bit fields and masks: the first, the last
/// of a 128-CPU window (LoongArch's PV IPI), the first past it, the last.
const EDGE_CPUS: [usize; 4] = [0, 127, 128, 255];

#[test]
fn tails_round_trip_for_every_cpu_and_level() {
    assert_eq!(arch::MAX_CPUS, 256);
    let mut seen = std::collections::HashSet::new();
    for cpu in 0..arch::MAX_CPUS {
        for idx in 0..MAX_NODES {
            let tail = encode_tail(cpu, idx);
            assert_eq!(
                tail & !TAIL_MASK,
                0,
                "CPU {cpu} level {idx} spills out of the tail"
            );
            assert_ne!(tail, 0, "CPU {cpu} level {idx} reads as an empty queue");
            assert_eq!(decode_tail(tail), (cpu, idx));
            assert!(seen.insert(tail), "CPU {cpu} level {idx} shares a tail");
        }
    }
    for cpu in EDGE_CPUS {
        assert_eq!(
            decode_tail(encode_tail(cpu, MAX_NODES - 1)),
            (cpu, MAX_NODES - 1)
        );
    }
}

#[test]
fn edge_cpus_stress() {
    stress_on(SlowPath::Spin, &EDGE_CPUS, 20_000);
    stress_on(SlowPath::Halt, &EDGE_CPUS, 20_000);
}

fn stress(slow_path: SlowPath, cpus: usize, per_cpu: u64) {
    stress_on(slow_path, &(0..cpus).collect::<Vec<_>>(), per_cpu);
}

fn stress_unqueued(slow_path: SlowPath, cpus: usize, per_cpu: u64, unqueued: u32) {
    let ids: Vec<_> = (0..cpus).collect();
    stress_with(shared_unqueued(cpus, slow_path, unqueued), &ids, per_cpu);
}

/// `per_cpu` lock/unlock rounds on each of the CPUs `ids` at once.
fn stress_on(slow_path: SlowPath, ids: &[usize], per_cpu: u64) {
    stress_with(
        shared(ids.iter().max().map_or(0, |&m| m + 1), slow_path),
        ids,
        per_cpu,
    );
}

fn stress_with(shared: Arc<Shared>, ids: &[usize], per_cpu: u64) {
    let cpus = ids.len();
    let lock = Arc::new(QSpinLock::new());
    let counter = Arc::new(AtomicU32::new(0));
    let inside = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = ids
        .iter()
        .map(|&id| {
            let shared = Arc::clone(&shared);
            let (lock, counter, inside) =
                (Arc::clone(&lock), Arc::clone(&counter), Arc::clone(&inside));
            thread::spawn(move || {
                let cpu = Cpu::new(id, &shared);
                for _ in 0..per_cpu {
                    lock.lock(&cpu);
                    assert!(!inside.swap(true, Ordering::Relaxed), "two holders at once");
                    // A non-atomic-style update: load, then store.
                    let v = counter.load(Ordering::Relaxed);
                    counter.store(v + 1, Ordering::Relaxed);
                    inside.store(false, Ordering::Relaxed);
                    lock.unlock(&cpu);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        counter.load(Ordering::Relaxed) as u64,
        cpus as u64 * per_cpu
    );
    assert_eq!(
        lock.val.load(Ordering::Relaxed),
        0,
        "lock word not back to 0,0,0"
    );
    for n in &shared.nodes {
        assert_eq!(n[0].count.load(Ordering::Relaxed), 0);
    }
}

/// No steal budget (Linux's rules).
const U: u32 = UNBOUNDED_STEALS;

#[test]
fn stealing_rules() {
    let tail = encode_tail(1, 0);
    // No queue: free, take it (the fast path's case); held, queue and
    // become the head.
    assert_eq!(steal(0, 0, 4, false, U), Steal::Take);
    assert_eq!(steal(LOCKED_VAL, 0, 4, false, U), Steal::Queue);
    // A queue whose head is not spinning (halted, preempted, between
    // heads): take a free lock, spin for a held one.
    assert_eq!(steal(tail, 0, 4, false, U), Steal::Take);
    assert_eq!(steal(tail | LOCKED_VAL, 0, 4, false, U), Steal::Wait);
    assert_eq!(steal(tail | SLOW_VAL, 0, 4, false, U), Steal::Wait);
    // A spinning head waiting for a holder: queue behind it.
    assert_eq!(
        steal(tail | PENDING_VAL | LOCKED_VAL, 0, 4, false, U),
        Steal::Queue
    );
    // A spinning head that leaves the lock free: give it `stale` looks.
    assert_eq!(
        steal(tail | PENDING_VAL, 0, 4, false, U),
        Steal::WaitForHead
    );
    assert_eq!(
        steal(tail | PENDING_VAL, 3, 4, false, U),
        Steal::WaitForHead
    );
    assert_eq!(steal(tail | PENDING_VAL, 4, 4, false, U), Steal::Take);
}

#[test]
fn unqueued_spinning_rules() {
    let tail = encode_tail(1, 0);
    // With unqueued spins left, a held lock is spun for, queue or not
    // (without them: queued for, above).
    assert_eq!(steal(LOCKED_VAL, 0, 4, true, U), Steal::Wait);
    assert_eq!(
        steal(tail | PENDING_VAL | LOCKED_VAL, 0, 4, true, U),
        Steal::Wait
    );
    assert_eq!(steal(tail | LOCKED_VAL, 0, 4, true, U), Steal::Wait);
    // A free lock: taken as without them; a spinning head still gets its
    // `stale` looks first (it keeps its turn).
    assert_eq!(steal(0, 0, 4, true, U), Steal::Take);
    assert_eq!(steal(tail, 0, 4, true, U), Steal::Take);
    assert_eq!(steal(tail | PENDING_VAL, 0, 4, true, U), Steal::WaitForHead);
    assert_eq!(steal(tail | PENDING_VAL, 4, 4, true, U), Steal::Take);
}

#[test]
fn a_steal_past_a_stale_head_clears_its_pending_bit() {
    // CPU 1 is the queue head, its pending bit set, the lock free: CPU 0
    // looks `stale` times (the test platform: 1), then takes the lock, and
    // the pending bit goes with it (the next stealer does not wait again).
    let shared = shared(2, SlowPath::Halt);
    let cpu = Cpu::new(0, &shared);
    let lock = QSpinLock::new();
    let tail = encode_tail(1, 0);
    lock.val.store(tail | PENDING_VAL, Ordering::Relaxed);
    assert!(Halt::trylock_before_queueing(&cpu, &lock));
    assert_eq!(
        lock.val.load(Ordering::Relaxed),
        tail | STEAL_ONE | LOCKED_VAL
    );
    // Not past a head that is spinning for a held lock: queue.
    lock.val
        .store(tail | PENDING_VAL | LOCKED_VAL, Ordering::Relaxed);
    assert!(!Halt::trylock_before_queueing(&cpu, &lock));
    // Unqueued spins for a held lock end, and the CPU queues.
    let shared = shared_unqueued(2, SlowPath::Halt, 3);
    let cpu = Cpu::new(0, &shared);
    lock.val.store(LOCKED_VAL, Ordering::Relaxed);
    assert!(!Halt::spin_unqueued(&cpu, &lock));
    lock.val.store(0, Ordering::Relaxed);
    assert!(Halt::spin_unqueued(&cpu, &lock));
}

#[test]
fn the_steal_budget_hands_the_lock_to_the_head() {
    let tail = encode_tail(1, 0);
    let spent = |n: u32| tail | (n << STEALS_OFFSET);
    // Under the budget the rules are as without one; at it, every
    // contender queues, spins left or not, the lock free or not.
    assert_eq!(steal(spent(1), 0, 4, false, 2), Steal::Take);
    for (val, unqueued) in [
        (spent(2), false),
        (spent(2), true),
        (spent(2) | LOCKED_VAL, true),
    ] {
        assert_eq!(steal(val, 0, 4, unqueued, 2), Steal::Queue, "{val:#x}");
    }
    // No queue, no count: the budget is per queue head.
    assert_eq!(steal(2 << STEALS_OFFSET, 0, 4, false, 2), Steal::Take);
    assert_eq!(steal(spent(0), 0, 4, false, 0), Steal::Queue);

    // A steal past a head counts; one with no queue does not; the count
    // saturates; the head's take clears it.
    let shared = shared_with(2, SlowPath::Halt, 0, 2);
    let cpu = Cpu::new(0, &shared);
    let lock = QSpinLock::new();
    lock.val.store(tail, Ordering::Relaxed);
    assert!(Halt::trylock_before_queueing(&cpu, &lock));
    assert_eq!(lock.val.load(Ordering::Relaxed), spent(1) | LOCKED_VAL);
    lock.val.store(spent(1), Ordering::Relaxed);
    assert!(Halt::trylock_before_queueing(&cpu, &lock));
    assert_eq!(lock.val.load(Ordering::Relaxed), spent(2) | LOCKED_VAL);
    lock.val.store(spent(2), Ordering::Relaxed);
    assert!(!Halt::trylock_before_queueing(&cpu, &lock), "budget spent");
    lock.val.store(spent(STEALS_MAX), Ordering::Relaxed);
    assert!(lock.steal_word(spent(STEALS_MAX)));
    assert_eq!(
        lock.val.load(Ordering::Relaxed),
        spent(STEALS_MAX) | LOCKED_VAL
    );
    lock.val.store(0, Ordering::Relaxed);
    assert!(lock.steal_word(0));
    assert_eq!(lock.val.load(Ordering::Relaxed), LOCKED_VAL);
    let head = spent(2) | PENDING_VAL;
    assert_eq!(lock.take_clearing_pending(head), Err(LOCKED_VAL));
    lock.val.store(head, Ordering::Relaxed);
    assert_eq!(lock.take_clearing_pending(head), Ok(tail | LOCKED_VAL));
}

#[test]
fn a_bounded_steal_budget_loses_no_update() {
    for budget in [0, 1, 4] {
        let ids: Vec<usize> = (0..4).collect();
        stress_with(shared_with(4, SlowPath::Halt, 64, budget), &ids, 20_000);
    }
}

#[test]
fn unqueued_spinners_lose_no_update() {
    stress_unqueued(SlowPath::Halt, 4, 20_000, 64);
}

#[test]
fn the_hash_holds_a_halted_head_per_queue_node() {
    // Every CPU halted as the head of one lock per nesting level (a
    // halted head can take an interrupt whose handler halts again).
    let hash = PvHash::<PV_HASH_SLOTS>::new();
    let locks: Vec<QSpinLock> = (0..MAX_NODES * arch::MAX_CPUS)
        .map(|_| QSpinLock::new())
        .collect();
    let node = McsNode::new();
    for lock in &locks {
        hash.hash(lock, &node);
    }
    for lock in &locks {
        assert!(ptr::eq(hash.unhash(lock), &node));
    }
}

#[test]
fn native_stress() {
    stress(SlowPath::Spin, 8, 20_000);
}

#[test]
fn pv_stress() {
    stress(SlowPath::Halt, 8, 20_000);
}

#[test]
fn nesting_uses_the_next_node() {
    let shared = shared(2, SlowPath::Spin);
    let cpu = Cpu::new(0, &shared);
    let (a, b) = (QSpinLock::new(), QSpinLock::new());
    a.lock(&cpu);
    b.lock(&cpu);
    assert!(a.is_locked() && b.is_locked());
    b.unlock(&cpu);
    a.unlock(&cpu);
    assert!(!a.is_locked() && !b.is_locked());
}
