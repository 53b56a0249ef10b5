//! The halting slow path (halt-and-kick, with lock stealing).

use super::*;
use crate::atomic::{fence, spin_hint, Ordering};

/// Halt-and-kick, after Linux's `qspinlock_paravirt.h`.
///
/// - The pending bit means "the queue head is spinning for the lock": the
///   head sets it while it spins and clears it before it halts.
/// - A CPU entering the slow path may take the lock past the queue (lock
///   stealing) while the head is not spinning for it (Linux's hybrid
///   unfair trylock): a halted or preempted head's turn goes to a running
///   CPU instead of waiting for the head's wake-up. It also steals when
///   the head is spinning but leaves the lock free for a while
///   ([`STALE_HEAD_SHIFT`]): it is not running, a preempted vCPU that
///   nobody reports; that steal clears the head's pending bit, so the CPUs
///   after it do not each wait for the stale head again.
/// - A CPU that finds the lock held spins for it [`Platform::unqueued_spins`]
///   times before it claims a node and queues, queue or no queue, taking it
///   when free unless a spinning head is about to: in the kernel long where
///   the host reports preempted vCPUs (test-and-set style: a released lock
///   goes to a running CPU, never by FIFO order to a preempted one), briefly
///   elsewhere (the spin native's pending waiter gets).
/// - Bounded unfairness: after [`Platform::steal_budget`] steals past one
///   queue head the lock goes to the head: contenders queue instead, and
///   queued ones halt without spinning out their limit, so a host with
///   fewer cores than vCPUs runs the head sooner. Without the bound, under
///   overcommit the queue barely moves while running CPUs take turns, and
///   a CPU that queued early may wait out a whole run (docs/bench.md).
/// - Queued waiters spin [`Platform::spin_limit`] times, or less behind a
///   halted or preempted predecessor, then halt; the predecessor that makes
///   a halted waiter the head hashes it, and the unlock kicks it.
pub(super) struct Halt;

/// Halting: a stealer lets the lock lie free, with the head's pending bit
/// set, for the spin limit divided by this before it takes the lock anyway.
/// A running head takes a free lock within a cache-line transfer; that is
/// hundreds of spins at the kernel's limits (4,096 and up).
const STALE_HEAD_SHIFT: u32 = 4;

/// Whether the lock goes to the queue head next: a queue, and `budget`
/// steals past its head already.
pub(super) fn handing_off(val: u32, budget: u32) -> bool {
    val & TAIL_MASK != 0 && steals(val) >= budget
}

/// What a CPU entering the halting slow path does, seeing `val`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Steal {
    /// Take the lock (it is free, and no running head is about to).
    Take,
    /// Queue: there is no queue (we will be its spinning head), or its
    /// head is spinning for a held lock (fairness: wait our turn); no
    /// unqueued spins left. Or the steal budget past the head is spent.
    Queue,
    /// Spin: the lock is held, and the head is not spinning for it or we
    /// have unqueued spins left.
    Wait,
    /// Spin: the lock is free but the head, spinning, has not taken it yet.
    WaitForHead,
}

/// The stealing rules: `free_under_head` is how many times this CPU has
/// seen the lock free under a spinning head, `stale` how many make the head
/// count as not running; `unqueued`: unqueued spins are left; `budget`:
/// [`Platform::steal_budget`].
pub(super) fn steal(
    val: u32,
    free_under_head: u32,
    stale: u32,
    unqueued: bool,
    budget: u32,
) -> Steal {
    if handing_off(val, budget) {
        return Steal::Queue;
    }
    let free = val & LOCKED_MASK == 0;
    let head_spinning = val & PENDING_MASK != 0;
    if free && (!head_spinning || free_under_head >= stale) {
        Steal::Take
    } else if free {
        Steal::WaitForHead
    } else if unqueued || (val & TAIL_MASK != 0 && !head_spinning) {
        Steal::Wait
    } else {
        Steal::Queue
    }
}

impl Halt {
    /// The stealing loop ([`steal`]), spinning for a held lock up to
    /// `unqueued` times: true if we took the lock, false to queue.
    fn steal_or_queue<P: Platform>(p: &P, lock: &QSpinLock, mut unqueued: u32) -> bool {
        let stale = (p.spin_limit() >> STALE_HEAD_SHIFT).max(1);
        let budget = p.steal_budget();
        let mut free_under_head = 0;
        loop {
            let val = lock.val.load(Ordering::Relaxed);
            match steal(val, free_under_head, stale, unqueued > 0, budget) {
                Steal::Take => {
                    if lock.steal_word(val) {
                        if val & TAIL_MASK != 0 {
                            p.event(Event::Steal {
                                head_spinning: val & PENDING_MASK != 0,
                            });
                        }
                        return true;
                    }
                    continue;
                }
                Steal::Queue => return false,
                Steal::Wait => unqueued = unqueued.saturating_sub(1),
                Steal::WaitForHead => free_under_head += 1,
            }
            spin_hint();
        }
    }

    /// Whether a queued waiter should stop spinning early (checked rarely):
    /// its predecessor is halted (Linux) or its vCPU is preempted, or the
    /// lock is being handed to the head (a host short of cores should run
    /// the head, not us).
    fn wait_early<P: Platform>(p: &P, lock: &QSpinLock, prev: &McsNode, loop_count: u32) -> bool {
        if loop_count & PREV_CHECK_MASK != 0 {
            return false;
        }
        prev.state.load(Ordering::Relaxed) != VCPU_RUNNING
            || p.vcpu_is_preempted(prev.cpu.load(Ordering::Relaxed) as usize)
            || handing_off(lock.val.load(Ordering::Relaxed), p.steal_budget())
    }
}

impl Mode for Halt {
    const HALTS: bool = true;

    /// Where the platform asks for it, spin for a held lock before
    /// queueing (and steal as below); false once the spins are used up.
    fn spin_unqueued<P: Platform>(p: &P, lock: &QSpinLock) -> bool {
        match p.unqueued_spins() {
            0 => false,
            spins => Self::steal_or_queue(p, lock, spins),
        }
    }

    /// Lock stealing (Linux's hybrid unfair trylock). Without a queue we
    /// queue (and become the head, which spins); with one, we spin for the
    /// lock as long as its head is not spinning for it, or leaves it free
    /// too long.
    fn trylock_before_queueing<P: Platform>(p: &P, lock: &QSpinLock) -> bool {
        Self::steal_or_queue(p, lock, 0)
    }

    /// Spin a while on `node.locked`, then halt until the predecessor kicks.
    ///
    /// ```text
    ///   waiter (us)                          predecessor (kick_node)
    ///   [S] state = HALTED                   [S] next.locked = 1
    ///   fence(SeqCst)                        fence(SeqCst)
    ///   [L] node.locked                      [RmW] state HALTED -> HASHED
    /// ```
    /// Either we see `locked` and skip the halt, or it sees HALTED and makes
    /// its unlock kick us (store buffering: both fences are needed).
    fn wait_node<P: Platform>(p: &P, lock: &QSpinLock, node: &McsNode, prev: &McsNode) {
        loop {
            for spin in (1..=p.spin_limit()).rev() {
                if node.locked.load(Ordering::Acquire) != 0 {
                    return;
                }
                if Self::wait_early(p, lock, prev, spin) {
                    break;
                }
                spin_hint();
            }
            node.state.store(VCPU_HALTED, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if node.locked.load(Ordering::Relaxed) == 0 {
                p.event(Event::Halt);
                p.wait(&|| {
                    node.state.load(Ordering::Acquire) == VCPU_HALTED
                        && node.locked.load(Ordering::Acquire) == 0
                });
            }
            // If kick_node made us HASHED, keep it: the head path must then
            // not hash the lock again.
            let _ = node.state.compare_exchange(
                VCPU_HALTED,
                VCPU_RUNNING,
                Ordering::SeqCst,
                Ordering::Relaxed,
            );
            if node.locked.load(Ordering::Acquire) != 0 {
                return;
            }
            // Spurious wake-up: spin again before halting again.
        }
    }

    /// The predecessor handed us the MCS lock; if we are halted, do not wake
    /// us now (we would only spin on the lock word): mark the lock SLOW and
    /// hash us, so the lock holder's unlock kicks us.
    fn kick_node<P: Platform>(p: &P, lock: &QSpinLock, next: &McsNode) {
        // Pairs with the fence in `wait_node` (see there).
        fence(Ordering::SeqCst);
        let halted = next
            .state
            .compare_exchange(
                VCPU_HALTED,
                VCPU_HASHED,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok();
        p.event(Event::HandOver {
            cpu: next.cpu.load(Ordering::Relaxed) as usize,
            halted,
        });
        if !halted {
            return; // Running: it sees `locked` itself.
        }
        // We hold the lock (1): `*,*,1 -> *,*,3`. Hash first: the only
        // unlocker is ourselves, later.
        p.hash().hash(lock, next);
        // Only our own unlock reads the entry: program order suffices.
        lock.val.fetch_or(SLOW_VAL, Ordering::Relaxed);
    }

    /// As head: spin for the lock with the pending bit set (no stealing
    /// meanwhile), then clear it, hash ourselves, set SLOW_VAL and halt
    /// until the unlocker kicks us. Returns with the lock held.
    fn wait_head_or_lock<P: Platform>(p: &P, lock: &QSpinLock, node: &McsNode) -> u32 {
        // kick_node already hashed us (and unlock has unhashed us, or will).
        let mut hashed = node.state.load(Ordering::Relaxed) == VCPU_HASHED;
        loop {
            node.state.store(VCPU_RUNNING, Ordering::Relaxed);
            lock.val.fetch_or(PENDING_VAL, Ordering::Relaxed);
            for _ in 0..p.spin_limit() {
                let val = lock.val.load(Ordering::Relaxed);
                if let Ok(now) = lock.take_clearing_pending(val) {
                    return now;
                }
                spin_hint();
            }
            lock.val.fetch_and(!PENDING_VAL, Ordering::Relaxed);
            if !hashed {
                hashed = true;
                p.hash().hash(lock, node);
                if lock.set_slow() == 0 {
                    // It was free: ours, with SLOW_VAL; undo the marking,
                    // and clear the steals past us.
                    p.hash().unhash_own(lock);
                    let slow = lock
                        .val
                        .fetch_and(!(LOCKED_MASK | STEALS_MASK) | LOCKED_VAL, Ordering::Relaxed);
                    return (slow & !(LOCKED_MASK | STEALS_MASK)) | LOCKED_VAL;
                }
            }
            node.state.store(VCPU_HASHED, Ordering::SeqCst);
            p.event(Event::Halt);
            p.wait(&|| lock.val.load(Ordering::Acquire) & LOCKED_MASK == SLOW_VAL);
            // Lock stealing may beat us to it after the kick: loop.
        }
    }
}

/// The hand-over to a halting waiter in isolation, where loom explores it
/// fully: either the waiter sees `locked` and does not halt, or the
/// predecessor sees it halted and the unlock kicks it. A lost kick leaves
/// the waiter halted for good: a deadlock to loom.
#[cfg(all(test, loom))]
mod handshake {
    use loom::sync::Arc;
    use loom::thread;

    use super::*;
    use crate::test_platform::{shared, Cpu};

    #[test]
    fn hand_over_to_a_halting_waiter() {
        loom::model(|| {
            let shared = shared(2, SlowPath::Halt);
            // CPU 1 holds the lock and is the queue head; CPU 0's node is
            // queued behind CPU 1's.
            let lock = Arc::new(QSpinLock::new());
            lock.val
                .store(LOCKED_VAL | encode_tail(0, 0), Ordering::Relaxed);
            let waiter = {
                let (shared, lock) = (Arc::clone(&shared), Arc::clone(&lock));
                thread::spawn(move || {
                    let cpu = Cpu::new(0, &shared);
                    let (node, prev) = (cpu.node(0, 0), cpu.node(1, 0));
                    Halt::wait_node(&cpu, &lock, node, prev);
                    assert_eq!(node.locked.load(Ordering::Acquire), 1);
                })
            };
            let cpu = Cpu::new(1, &shared);
            cpu.node(1, 0).cpu.store(1, Ordering::Relaxed);
            let next = cpu.node(0, 0);
            next.locked.store(1, Ordering::Release);
            Halt::kick_node(&cpu, &lock, next);
            lock.unlock(&cpu);
            waiter.join().unwrap();
        });
    }
}
