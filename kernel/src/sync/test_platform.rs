//! Threads as CPUs, for the lock tests: std threads in host stress tests,
//! loom threads in the model checks. Each thread owns a [`Cpu`] view of the
//! [`Shared`] nodes, hash table and preempted flags.

#[cfg(loom)]
use loom::{sync::Arc, thread};
#[cfg(not(loom))]
use std::{sync::Arc, thread};

use super::atomic::{AtomicBool, Ordering};
use super::qspinlock::{McsNode, Platform, PvHash, MAX_NODES, PV_HASH_SLOTS};

pub struct Shared {
    pub nodes: Vec<[McsNode; MAX_NODES]>,
    pub hash: PvHash<PV_HASH_SLOTS>,
    pub pv: bool,
    pub preempted: Vec<AtomicBool>,
}

/// Shared state for `cpus` CPUs; odd CPUs read as preempted (exercises the
/// early-halt path of queued waiters).
pub fn shared(cpus: usize, pv: bool) -> Arc<Shared> {
    Arc::new(Shared {
        nodes: (0..cpus)
            .map(|_| core::array::from_fn(|_| McsNode::new()))
            .collect(),
        hash: PvHash::new(),
        pv,
        preempted: (0..cpus).map(|c| AtomicBool::new(c % 2 == 1)).collect(),
    })
}

pub struct Cpu {
    pub id: usize,
    pub shared: Arc<Shared>,
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
    fn pv(&self) -> bool {
        self.shared.pv
    }
    /// A halt that ends at the next scheduling point: the contract allows
    /// `wait` to return early, and the kernel's tick bounds every halt.
    fn wait(&self, still: &dyn Fn() -> bool) {
        if still() {
            thread::yield_now();
        }
    }
    /// Kicks are implied by `wait` ending on its own.
    fn kick(&self, _: usize) {}
    fn vcpu_is_preempted(&self, cpu: usize) -> bool {
        self.shared.preempted[cpu].load(Ordering::Relaxed)
    }
}
