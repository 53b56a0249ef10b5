//! MCS lock (Mellor-Crummey & Scott, 1991): a queue of per-CPU nodes, each
//! waiter spinning on its own node; the holder hands over to its successor.
//!
//! Unlike the qspinlock (whose nodes are only used while waiting), an MCS
//! holder keeps its node until unlock, so the lock records the holder's
//! node, and a CPU's nodes are taken from a small free mask rather than a
//! stack (guards may be dropped in any order).

use core::ptr;

use super::atomic::{lock_new, spin_hint, AtomicPtr, AtomicU32, AtomicU8, Ordering};

/// Nodes per CPU: how many MCS locks one CPU may hold or wait for at once.
pub const MCS_NODES: usize = 4;

#[repr(align(64))]
pub struct McsQNode {
    next: AtomicPtr<McsQNode>,
    locked: AtomicU32,
}

lock_new!(McsQNode, {
    Self {
        next: AtomicPtr::new(ptr::null_mut()),
        locked: AtomicU32::new(0),
    }
});

/// One CPU's nodes and which of them are in use.
pub struct McsCpuNodes {
    nodes: [McsQNode; MCS_NODES],
    used: AtomicU8,
}

impl McsCpuNodes {
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            nodes: [const { McsQNode::new() }; MCS_NODES],
            used: AtomicU8::new(0),
        }
    }

    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            nodes: core::array::from_fn(|_| McsQNode::new()),
            used: AtomicU8::new(0),
        }
    }

    fn take(&self) -> &McsQNode {
        // Interrupts may nest on this CPU: claim a bit atomically.
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let free = (!used).trailing_zeros() as usize;
            assert!(
                free < MCS_NODES,
                "MCS: more than {MCS_NODES} locks held or awaited on one CPU"
            );
            match self.used.compare_exchange_weak(
                used,
                used | 1 << free,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return &self.nodes[free],
                Err(now) => used = now,
            }
        }
    }

    fn give_back(&self, node: &McsQNode) {
        let index = self
            .nodes
            .iter()
            .position(|n| ptr::eq(n, node))
            .expect("MCS node returned to the wrong CPU");
        self.used.fetch_and(!(1 << index), Ordering::Relaxed);
    }
}

impl Default for McsCpuNodes {
    fn default() -> Self {
        Self::new()
    }
}

pub struct McsLock {
    tail: AtomicPtr<McsQNode>,
    /// The holder's node (written by the holder only).
    holder: AtomicPtr<McsQNode>,
}

lock_new!(McsLock, {
    Self {
        tail: AtomicPtr::new(ptr::null_mut()),
        holder: AtomicPtr::new(ptr::null_mut()),
    }
});

impl McsLock {
    /// Acquires the lock with one of `nodes` (the calling CPU's).
    pub fn lock(&self, nodes: &McsCpuNodes) {
        let node = nodes.take();
        node.next.store(ptr::null_mut(), Ordering::Relaxed);
        node.locked.store(0, Ordering::Relaxed);
        let me = node as *const McsQNode as *mut McsQNode;
        // AcqRel: our node's reset before a successor links to it; the
        // predecessor's node before we link to it.
        let prev = self.tail.swap(me, Ordering::AcqRel);
        if !prev.is_null() {
            // SAFETY: a node in the queue stays valid until its owner is
            // handed the lock and releases it, after our link below.
            unsafe { &*prev }.next.store(me, Ordering::Release);
            // Acquire: pairs with the predecessor's Release hand-over.
            while node.locked.load(Ordering::Acquire) == 0 {
                spin_hint();
            }
        }
        self.holder.store(me, Ordering::Relaxed);
    }

    pub fn try_lock(&self, nodes: &McsCpuNodes) -> bool {
        let node = nodes.take();
        node.next.store(ptr::null_mut(), Ordering::Relaxed);
        let me = node as *const McsQNode as *mut McsQNode;
        if self
            .tail
            .compare_exchange(ptr::null_mut(), me, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.holder.store(me, Ordering::Relaxed);
            true
        } else {
            nodes.give_back(node);
            false
        }
    }

    /// # Safety
    /// The caller holds the lock, taken with `nodes` (the same CPU's).
    pub unsafe fn unlock(&self, nodes: &McsCpuNodes) {
        let me = self.holder.load(Ordering::Relaxed);
        // SAFETY: the holder's node, valid while we hold the lock.
        let node = unsafe { &*me };
        let mut next = node.next.load(Ordering::Acquire);
        if next.is_null() {
            // No successor yet: try to empty the queue.
            if self
                .tail
                .compare_exchange(me, ptr::null_mut(), Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                nodes.give_back(node);
                return;
            }
            // A successor swapped the tail; wait for its link.
            loop {
                next = node.next.load(Ordering::Acquire);
                if !next.is_null() {
                    break;
                }
                spin_hint();
            }
        }
        // SAFETY: the successor waits in `lock` until this store.
        unsafe { &*next }.locked.store(1, Ordering::Release);
        nodes.give_back(node);
    }

    pub fn is_locked(&self) -> bool {
        !self.tail.load(Ordering::Relaxed).is_null()
    }
}
