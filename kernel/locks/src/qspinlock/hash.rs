//! The PV hash table: from a lock to its halted queue head.

use core::ptr;

use super::{McsNode, QSpinLock, MAX_NODES};
use crate::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Hash table from a lock to the node of its halted queue head, so unlock
/// kicks exactly that CPU. At most one entry per lock, and one per queue
/// node: a CPU halted as a head can take an interrupt (the halt ends, its
/// entry stays) whose handler halts as the head of another lock, once per
/// nesting level. Twice that many slots never fill.
pub struct PvHash<const N: usize> {
    locks: [AtomicUsize; N],
    nodes: [AtomicPtr<McsNode>; N],
}

impl<const N: usize> PvHash<N> {
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            locks: [const { AtomicUsize::new(0) }; N],
            nodes: [const { AtomicPtr::new(ptr::null_mut()) }; N],
        }
    }

    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            locks: core::array::from_fn(|_| AtomicUsize::new(0)),
            nodes: core::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
        }
    }

    fn start(lock: &QSpinLock) -> usize {
        let addr = lock as *const QSpinLock as usize;
        // Fibonacci hashing of the address, minus its alignment bits.
        ((addr >> 2).wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize) >> 7) % N
    }

    /// Records `node` as `lock`'s halted head.
    pub(super) fn hash(&self, lock: &QSpinLock, node: &McsNode) {
        let addr = lock as *const QSpinLock as usize;
        let start = Self::start(lock);
        for i in (0..N).map(|i| (start + i) % N) {
            if self.locks[i]
                .compare_exchange(0, addr, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                // Release: pairs with the Acquire in `unhash`, which may run
                // as soon as the caller publishes SLOW_VAL.
                self.nodes[i].store(node as *const McsNode as *mut McsNode, Ordering::Release);
                return;
            }
        }
        panic!("qspinlock: PV hash table full ({N} entries)");
    }

    /// Removes and returns `lock`'s halted head. The caller saw SLOW_VAL, so
    /// the entry exists (its writer finished before publishing SLOW_VAL).
    pub(super) fn unhash(&self, lock: &QSpinLock) -> &McsNode {
        let addr = lock as *const QSpinLock as usize;
        let start = Self::start(lock);
        for i in (0..N).map(|i| (start + i) % N) {
            if self.locks[i].load(Ordering::Relaxed) == addr {
                let node = self.nodes[i].swap(ptr::null_mut(), Ordering::Acquire);
                assert!(!node.is_null(), "qspinlock: hash entry without its node");
                self.locks[i].store(0, Ordering::Release);
                // SAFETY: nodes are per-CPU and live as long as the platform.
                return unsafe { &*node };
            }
        }
        panic!("qspinlock: SLOW_VAL set but no hashed waiter");
    }

    /// Drops `lock`'s entry if present (the head took the lock itself).
    pub(super) fn unhash_own(&self, lock: &QSpinLock) {
        let addr = lock as *const QSpinLock as usize;
        let start = Self::start(lock);
        for i in (0..N).map(|i| (start + i) % N) {
            if self.locks[i].load(Ordering::Relaxed) == addr {
                self.nodes[i].store(ptr::null_mut(), Ordering::Relaxed);
                self.locks[i].store(0, Ordering::Release);
                return;
            }
        }
    }
}

impl<const N: usize> Default for PvHash<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Hash slots the kernel uses: two per queue node of every CPU.
pub const PV_HASH_SLOTS: usize = 2 * MAX_NODES * HASH_CPUS;

/// The CPUs the table is sized for: all the kernel supports, or, in the
/// loom models (at most 4 CPUs), 4: a table for 256 CPUs of loom's atomics
/// overflows the stack of the model's thread.
const HASH_CPUS: usize = if cfg!(loom) { 4 } else { arch::MAX_CPUS };
