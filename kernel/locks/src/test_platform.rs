//! Threads as CPUs, for the lock tests: std threads in host stress tests,
//! loom threads in the model checks. Each thread owns a [`Cpu`] view of the
//! [`Shared`] nodes, hash table and preempted flags.
//!
//! Halting is blocking on a condition variable: [`Platform::wait`] blocks
//! the thread until a [`Platform::kick`] notifies it, and nothing else ends
//! a halt (the kernel's
//! tick is not modelled), so a lost kick leaves a thread parked for good —
//! a hang in a stress test, a deadlock loom reports in a model. A kick is
//! kept until the CPU's next `wait` takes it, as a pending IPI is while the
//! waiter checks its condition with interrupts masked.

#[cfg(loom)]
use loom::sync::{Arc, Condvar, Mutex};
#[cfg(not(loom))]
use std::sync::{Arc, Condvar, Mutex};

use super::atomic::{AtomicBool, Ordering};
use super::qspinlock::{
    McsNode, Platform, PvHash, SlowPath, MAX_NODES, PV_HASH_SLOTS, UNBOUNDED_STEALS,
};

pub struct Shared {
    pub nodes: Vec<[McsNode; MAX_NODES]>,
    pub hash: PvHash<PV_HASH_SLOTS>,
    pub slow_path: SlowPath,
    pub preempted: Vec<AtomicBool>,
    /// [`Platform::unqueued_spins`] (0: queue at once).
    pub unqueued_spins: u32,
    /// [`Platform::steal_budget`].
    pub steal_budget: u32,
    /// Per CPU: a kick sent and not yet taken by a `wait`, and the halt.
    kicks: Vec<(Mutex<bool>, Condvar)>,
}

/// Shared state for `cpus` CPUs; odd CPUs read as preempted (exercises the
/// early-halt path of queued waiters).
pub fn shared(cpus: usize, slow_path: SlowPath) -> Arc<Shared> {
    shared_unqueued(cpus, slow_path, 0)
}

/// [`shared`], with contenders spinning `unqueued_spins` times for a held
/// lock before they queue.
pub fn shared_unqueued(cpus: usize, slow_path: SlowPath, unqueued_spins: u32) -> Arc<Shared> {
    shared_with(cpus, slow_path, unqueued_spins, UNBOUNDED_STEALS)
}

/// [`shared_unqueued`], with at most `steal_budget` steals past a queue head.
pub fn shared_with(
    cpus: usize,
    slow_path: SlowPath,
    unqueued_spins: u32,
    steal_budget: u32,
) -> Arc<Shared> {
    Arc::new(Shared {
        nodes: (0..cpus)
            .map(|_| core::array::from_fn(|_| McsNode::new()))
            .collect(),
        hash: PvHash::new(),
        slow_path,
        preempted: (0..cpus).map(|c| AtomicBool::new(c % 2 == 1)).collect(),
        unqueued_spins,
        steal_budget,
        kicks: (0..cpus)
            .map(|_| (Mutex::new(false), Condvar::new()))
            .collect(),
    })
}

pub struct Cpu {
    pub id: usize,
    pub shared: Arc<Shared>,
}

impl Cpu {
    /// CPU `id`, to be run by one thread.
    pub fn new(id: usize, shared: &Arc<Shared>) -> Self {
        Self {
            id,
            shared: Arc::clone(shared),
        }
    }
}

impl Platform for Cpu {
    fn cpu(&self) -> usize {
        self.id
    }
    fn node(&self, cpu: usize, idx: usize) -> &McsNode {
        &self.shared.nodes[cpu][idx]
    }
    fn hash(&self) -> &PvHash<PV_HASH_SLOTS> {
        &self.shared.hash
    }
    fn slow_path(&self) -> SlowPath {
        self.shared.slow_path
    }
    /// `still` is checked under the kick's lock, as the kernel checks it
    /// with interrupts masked: a kick comes either before (and its sender's
    /// change is visible to `still`) or after, and ends the halt.
    fn wait(&self, still: &dyn Fn() -> bool) {
        let (kicked, halt) = &self.shared.kicks[self.id];
        let mut kicked = kicked.lock().unwrap();
        // An earlier kick is taken here, as an IPI taken with interrupts
        // enabled would be: it cannot end this halt.
        *kicked = false;
        if still() {
            while !*kicked {
                kicked = halt.wait(kicked).unwrap();
            }
            *kicked = false;
        }
    }
    fn kick(&self, cpu: usize) {
        let (kicked, halt) = &self.shared.kicks[cpu];
        *kicked.lock().unwrap() = true;
        halt.notify_one();
    }
    fn vcpu_is_preempted(&self, cpu: usize) -> bool {
        self.shared.preempted[cpu].load(Ordering::Relaxed)
    }
    /// A few spins: every spin is a scheduling point to loom, and the
    /// halting paths are what the models are for.
    fn spin_limit(&self) -> u32 {
        SPIN_LIMIT
    }
    fn unqueued_spins(&self) -> u32 {
        self.shared.unqueued_spins
    }
    fn steal_budget(&self) -> u32 {
        self.shared.steal_budget
    }
}

/// Spins before a waiter halts, in tests.
pub const SPIN_LIMIT: u32 = 4;
