//! Queued spinlock: Linux's qspinlock, with its paravirtual slow path.
//!
//! A test-and-set lock word for the uncontended case, a pending bit for the
//! first contender, and an MCS queue (Mellor-Crummey & Scott, "Algorithms for
//! scalable synchronization on shared-memory multiprocessors", 1991) for the
//! rest, so each waiter spins on its own cache line. Read alongside Linux's
//! `kernel/locking/qspinlock.c` and `qspinlock_paravirt.h`; this is a
//! re-derivation, not a copy.
//!
//! # The lock word
//!
//! | bits  | field   | meaning |
//! |-------|---------|---------|
//! | 0-7   | locked  | 0 free; 1 held; 3 held, a halted waiter is hashed ([`SLOW_VAL`]); 2 held, the unlocker is waking it |
//! | 8     | pending | native: one waiter spins on the word itself; halting: the queue head is spinning for the lock (no stealing) |
//! | 9     | -       | unused |
//! | 10-15 | steals  | halting: steals past the current queue head, up to [`Platform::steal_budget`] |
//! | 16-17 | tail index | nesting level of the tail's MCS node |
//! | 18-31 | tail cpu   | tail CPU + 1 (0: no queue) |
//!
//! States are written `(tail, pending, locked)`; `*` is any value.
//!
//! Linux touches the locked byte and the pending+locked half-word with
//! byte and half-word atomics. Rust forbids mixed-size atomic accesses to one
//! location, so every access here is 32-bit: unlock is an atomic subtract,
//! and the tail exchange is a compare-and-swap loop (Linux's variant for
//! `NR_CPUS >= 16K` does the same).
//!
//! # Native and halting slow paths
//!
//! The slow path is generic over [`Mode`], chosen per platform
//! ([`Platform::slow_path`]; in the kernel once at boot, so every user of a
//! lock waits the same way): [`Native`] is Linux's native qspinlock; [`Halt`]
//! is Linux's pvqspinlock — bounded spinning, then a halt until kicked, and
//! lock stealing while the queue head is not spinning for the lock (read
//! its doc). The fast paths are the same for both: `lock` is one
//! compare-and-swap, `unlock` one atomic subtract whose result is checked
//! for [`SLOW_VAL`] — a branch never taken in native mode.
//!
//! `wait(cond)` / `kick(cpu)` contract: `wait` halts the calling CPU while
//! `cond()` holds, re-checking it with interrupts masked, and may return early
//! (every halt is bounded: by the CPU's tick, which the kernel arms if it was
//! silenced); `kick(cpu)` ends a `wait` on `cpu` (an IPI or the host's kick
//! call), and is harmless if `cpu` is not waiting. Halting needs no
//! cooperation from the lock word's cache line, so it never hangs on a store
//! that a WFE would miss (no WFE is used).
//!
//! `vcpu_is_preempted` is consulted only by a queued waiter about its
//! predecessor, every [`PREV_CHECK_MASK`]+1 spins, in addition to Linux's
//! check of the predecessor's halted state: a waiter behind a preempted
//! predecessor halts early instead of burning its time slice. It is never
//! used to make the *head* waiter yield (the 2019 revert: that cascaded).
//!
//! [`Platform::event`] counts what the slow path did (halts, kicks,
//! hand-overs to halted waiters, steals) for `lockstorm`'s reports.

use core::ptr;

mod halt;
mod hash;

use halt::Halt;
pub use hash::{PvHash, PV_HASH_SLOTS};

use crate::atomic::{fence, lock_new, spin_hint, AtomicPtr, AtomicU32, AtomicU8, Ordering};

// --- The word ------------------------------------------------------------

pub const LOCKED_OFFSET: u32 = 0;
pub const LOCKED_BITS: u32 = 8;
pub const LOCKED_MASK: u32 = ((1 << LOCKED_BITS) - 1) << LOCKED_OFFSET;
pub const LOCKED_VAL: u32 = 1 << LOCKED_OFFSET;
/// Locked, and a halted waiter is in the hash table: unlock must kick it.
pub const SLOW_VAL: u32 = 3 << LOCKED_OFFSET;

pub const PENDING_OFFSET: u32 = 8;
pub const PENDING_BITS: u32 = 1;
pub const PENDING_MASK: u32 = ((1 << PENDING_BITS) - 1) << PENDING_OFFSET;
pub const PENDING_VAL: u32 = 1 << PENDING_OFFSET;

/// Halting: how many CPUs took the lock past the current queue head; at
/// [`Platform::steal_budget`] the lock goes to the head next (bounded
/// unfairness). Cleared when a head takes the lock; saturates.
pub const STEALS_OFFSET: u32 = 10;
pub const STEALS_BITS: u32 = 6;
pub const STEALS_MASK: u32 = ((1 << STEALS_BITS) - 1) << STEALS_OFFSET;
pub const STEAL_ONE: u32 = 1 << STEALS_OFFSET;
/// The largest count the field holds: a budget above it never runs out.
pub const STEALS_MAX: u32 = (1 << STEALS_BITS) - 1;
/// A [`Platform::steal_budget`] that never runs out (Linux's behaviour).
pub const UNBOUNDED_STEALS: u32 = u32::MAX;

pub const TAIL_IDX_OFFSET: u32 = 16;
pub const TAIL_IDX_BITS: u32 = 2;
pub const TAIL_IDX_MASK: u32 = ((1 << TAIL_IDX_BITS) - 1) << TAIL_IDX_OFFSET;
pub const TAIL_CPU_OFFSET: u32 = TAIL_IDX_OFFSET + TAIL_IDX_BITS;
pub const TAIL_CPU_BITS: u32 = 32 - TAIL_CPU_OFFSET;
pub const TAIL_CPU_MASK: u32 = ((1 << TAIL_CPU_BITS) - 1) << TAIL_CPU_OFFSET;
pub const TAIL_MASK: u32 = TAIL_IDX_MASK | TAIL_CPU_MASK;

/// Nesting levels: task, softirq-like, IRQ, NMI-like.
pub const MAX_NODES: usize = 1 << TAIL_IDX_BITS;

/// How long a native pending waiter waits for a pending->locked hand-over.
const PENDING_LOOPS: u32 = 1;
/// Halting: spins before a waiter halts, until the kernel has measured its own
/// (`Platform::spin_limit`; Linux uses a constant 1 << 15).
pub const DEFAULT_SPIN_LIMIT: u32 = 1 << 12;
/// Halting: a queued waiter looks at its predecessor every this+1 spins.
pub const PREV_CHECK_MASK: u32 = 0xff;

const _: () = assert!(TAIL_CPU_BITS >= 14 && arch::MAX_CPUS < 1 << TAIL_CPU_BITS);

fn encode_tail(cpu: usize, idx: usize) -> u32 {
    debug_assert!(idx < MAX_NODES);
    ((cpu as u32 + 1) << TAIL_CPU_OFFSET) | ((idx as u32) << TAIL_IDX_OFFSET)
}

/// The steals counted past the current queue head.
fn steals(val: u32) -> u32 {
    (val & STEALS_MASK) >> STEALS_OFFSET
}

fn decode_tail(tail: u32) -> (usize, usize) {
    let cpu = ((tail & TAIL_CPU_MASK) >> TAIL_CPU_OFFSET) as usize - 1;
    let idx = ((tail & TAIL_IDX_MASK) >> TAIL_IDX_OFFSET) as usize;
    (cpu, idx)
}

// --- MCS nodes ---------------------------------------------------------------

/// PV state of a queued waiter.
pub const VCPU_RUNNING: u8 = 0;
/// Halted in [`Platform::wait`] until its predecessor (or unlock) kicks it.
pub const VCPU_HALTED: u8 = 1;
/// Halted, and the lock holder put it in the hash table: unlock kicks it.
pub const VCPU_HASHED: u8 = 2;

/// One queue entry; each CPU owns [`MAX_NODES`], one per nesting level.
#[repr(align(64))] // One cache line each: waiters spin on their own.
pub struct McsNode {
    next: AtomicPtr<McsNode>,
    /// Set by the predecessor when this node becomes the queue head.
    locked: AtomicU32,
    /// Node 0 of each CPU only: how many of its nodes are in use.
    count: AtomicU32,
    /// The owning CPU and (halting) its [`VCPU_RUNNING`]/... state.
    cpu: AtomicU32,
    state: AtomicU8,
}

lock_new!(McsNode, {
    Self {
        next: AtomicPtr::new(ptr::null_mut()),
        locked: AtomicU32::new(0),
        count: AtomicU32::new(0),
        cpu: AtomicU32::new(0),
        state: AtomicU8::new(VCPU_RUNNING),
    }
});

// --- What the lock needs from its surroundings ------------------------------

/// The CPU, its nodes, and the PV primitives. The kernel implements it over
/// per-CPU statics and the PV view; the model checks over loom threads.
pub trait Platform {
    /// The calling CPU.
    fn cpu(&self) -> usize;
    /// Node `idx` of CPU `cpu`.
    fn node(&self, cpu: usize, idx: usize) -> &McsNode;
    /// The PV hash table.
    fn hash(&self) -> &PvHash<{ PV_HASH_SLOTS }>;
    /// How waiters wait: chosen once at boot (the kernel), or per test
    /// platform; never changed while a lock is held or waited on.
    fn slow_path(&self) -> SlowPath;
    /// Halts while `still()` (bounded; may return early).
    fn wait(&self, still: &dyn Fn() -> bool);
    /// Ends `cpu`'s [`Platform::wait`].
    fn kick(&self, cpu: usize);
    /// Whether `cpu`'s vCPU is preempted by the host.
    fn vcpu_is_preempted(&self, cpu: usize) -> bool;
    /// Halting: how many times a waiter spins before it halts.
    fn spin_limit(&self) -> u32 {
        DEFAULT_SPIN_LIMIT
    }
    /// Halting: how many times a CPU that finds the lock held spins for it
    /// before it claims a node and queues (0: queue at once, as Linux does).
    fn unqueued_spins(&self) -> u32 {
        0
    }
    /// Halting: how many CPUs may take the lock past one queue head before
    /// it goes to the head ([`UNBOUNDED_STEALS`]: no limit, as Linux).
    fn steal_budget(&self) -> u32 {
        UNBOUNDED_STEALS
    }
    /// Counts a slow-path event (statistics; the default counts nothing).
    #[inline(always)]
    fn event(&self, _event: Event) {}
}

/// How a contended qspinlock is waited for. Every user of one lock must
/// use the same: a native pending waiter's blind add and a halting head's
/// compare-and-swap would both own the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowPath {
    /// Linux's native qspinlock: the pending bit, then the MCS queue; every
    /// waiter spins until its turn.
    Spin,
    /// Halt-and-kick (Linux's pvqspinlock, [`Halt`]): waiters spin for a
    /// bounded time, then halt until kicked; running CPUs may take the lock
    /// while the queue head is not actively spinning for it.
    Halt,
}

/// What [`Platform::event`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A waiter halted (queued waiter or head; [`Platform::wait`] called).
    Halt,
    /// The unlocker kicked the halted head it had to wake.
    Kick(usize),
    /// The MCS queue was handed to a waiter; `halted` if it was halted
    /// (so the hand-over waits for its wake-up), with its CPU.
    HandOver { cpu: usize, halted: bool },
    /// A CPU took the lock past a non-empty queue; `head_spinning` if the
    /// queue head was actively spinning for it (it had left the lock free
    /// too long: not running).
    Steal { head_spinning: bool },
}

// --- The lock ---------------------------------------------------------------

/// The queued spinlock word.
pub struct QSpinLock {
    val: AtomicU32,
}

lock_new!(QSpinLock, {
    Self {
        val: AtomicU32::new(0),
    }
});

impl QSpinLock {
    /// `0,0,0 -> 0,0,1` or nothing.
    #[inline(always)] // The fast path.
    pub fn try_lock(&self) -> bool {
        // Acquire: pairs with the Release in `unlock`.
        self.val
            .compare_exchange(0, LOCKED_VAL, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Whether the lock is held (for assertions and statistics).
    pub fn is_locked(&self) -> bool {
        self.val.load(Ordering::Relaxed) & LOCKED_MASK != 0
    }

    /// Acquires the lock: `0,0,0 -> 0,0,1` on the fast path.
    #[inline(always)] // The fast path; the slow path is out of line.
    pub fn lock<P: Platform>(&self, p: &P) {
        if let Err(val) =
            self.val
                .compare_exchange(0, LOCKED_VAL, Ordering::Acquire, Ordering::Relaxed)
        {
            match p.slow_path() {
                SlowPath::Halt => self.slow_path::<Halt, P>(p, val),
                SlowPath::Spin => self.slow_path::<Native, P>(p, val),
            }
        }
    }

    /// Releases the lock: `*,*,1 -> *,*,0`.
    ///
    /// In PV mode the locked byte may be [`SLOW_VAL`] (3): a halted waiter is
    /// hashed. Subtracting 1 leaves 2 — still held — while this CPU takes the
    /// waiter out of the table; only then is the byte cleared and the waiter
    /// kicked, so the table never holds a stale entry for a free lock.
    #[inline(always)]
    pub fn unlock<P: Platform>(&self, p: &P) {
        // Release: pairs with the Acquire of the next owner.
        let prev = self.val.fetch_sub(LOCKED_VAL, Ordering::Release);
        debug_assert!(prev & LOCKED_MASK != 0, "unlock of a free qspinlock");
        if prev & LOCKED_MASK != LOCKED_VAL {
            self.unlock_slow(p, prev);
        }
    }

    #[cold]
    fn unlock_slow<P: Platform>(&self, p: &P, prev: u32) {
        debug_assert_eq!(prev & LOCKED_MASK, SLOW_VAL);
        // Acquire: the hasher published SLOW_VAL with Release after filling
        // its hash entry; our fetch_sub read that value.
        fence(Ordering::Acquire);
        let node = p.hash().unhash(self);
        // `*,*,2 -> *,*,0`. Release: the critical section before the free lock.
        self.val.fetch_and(!LOCKED_MASK, Ordering::Release);
        let cpu = node.cpu.load(Ordering::Relaxed) as usize;
        p.event(Event::Kick(cpu));
        p.kick(cpu);
    }

    /// The contended path. `val` is the word the fast path saw.
    #[inline(never)]
    fn slow_path<M: Mode, P: Platform>(&self, p: &P, mut val: u32) {
        if !M::HALTS {
            // A pending->locked hand-over in progress (0,1,0 -> 0,0,1): give
            // it a moment rather than queueing behind it.
            if val == PENDING_VAL {
                let mut loops = PENDING_LOOPS;
                while val == PENDING_VAL && loops > 0 {
                    spin_hint();
                    val = self.val.load(Ordering::Relaxed);
                    loops -= 1;
                }
            }
            // Anything but a bare holder (tail or pending set): queue.
            if val & !LOCKED_MASK == 0 && self.pending() {
                return;
            }
        }
        self.queue::<M, P>(p);
    }

    /// Tries the pending bit: `0,0,* -> 0,1,*`, waits for the holder to go,
    /// then `0,1,0 -> 0,0,1`. False (having undone its change) if a queue or
    /// another pending waiter appeared.
    fn pending(&self) -> bool {
        // Acquire: if the lock is free, this claims it (pairs with unlock).
        let val = self.val.fetch_or(PENDING_VAL, Ordering::Acquire);
        if val & !LOCKED_MASK != 0 {
            // Someone else is pending or queued. Undo ours unless the
            // pending bit was theirs already.
            if val & PENDING_MASK == 0 {
                self.val.fetch_and(!PENDING_VAL, Ordering::Relaxed);
            }
            return false;
        }
        // We are pending: `0,1,*`. Wait for the owner: `*,1,1 -> *,1,0`.
        if val & LOCKED_MASK != 0 {
            // Acquire: pairs with the owner's Release in `unlock`.
            while self.val.load(Ordering::Acquire) & LOCKED_MASK != 0 {
                spin_hint();
            }
        }
        // `*,1,0 -> *,0,1`: one add turns pending into locked.
        self.val
            .fetch_add(LOCKED_VAL.wrapping_sub(PENDING_VAL), Ordering::Relaxed);
        true
    }

    /// The MCS queue.
    fn queue<M: Mode, P: Platform>(&self, p: &P) {
        // Halting: spin for a held lock before claiming a node
        // (`Platform::unqueued_spins`; a steal then costs no node bookkeeping).
        if M::spin_unqueued(p, self) {
            return;
        }
        let cpu = p.cpu();
        let first = p.node(cpu, 0);
        let idx = first.count.fetch_add(1, Ordering::Relaxed) as usize;
        if idx >= MAX_NODES {
            // Nested deeper than the nodes allow: spin on the word. Rare
            // (an NMI-like path interrupting three nested lock holders).
            while !self.try_lock() {
                spin_hint();
            }
            first.count.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let node = p.node(cpu, idx);
        node.locked.store(0, Ordering::Relaxed);
        node.next.store(ptr::null_mut(), Ordering::Relaxed);
        node.cpu.store(cpu as u32, Ordering::Relaxed);
        node.state.store(VCPU_RUNNING, Ordering::Relaxed);

        // The lock may have come free while we set up (halting: or be free
        // to take past a queue whose head is not spinning for it).
        if M::trylock_before_queueing(p, self) {
            first.count.fetch_sub(1, Ordering::Relaxed);
            return;
        }

        // Publish our node as the tail: `p,*,* -> n,*,*`. Release: the
        // node's initialisation before a successor can see it.
        let tail = encode_tail(cpu, idx);
        let old = self.xchg_tail(tail);
        let mut next: *mut McsNode = ptr::null_mut();

        if old & TAIL_MASK != 0 {
            let (prev_cpu, prev_idx) = decode_tail(old);
            let prev = p.node(prev_cpu, prev_idx);
            // Link behind the predecessor.
            //   [S] prev.next = node              [L] node.locked (Acquire)
            //   (Release: pairs with the Acquire  [S] by the predecessor
            //    load of `next` in the hand-over)     node.locked = 1 (Release)
            prev.next
                .store(node as *const McsNode as *mut McsNode, Ordering::Release);
            M::wait_node(p, self, node, prev);
            // Acquire: pairs with the predecessor's Release of `locked`.
            while node.locked.load(Ordering::Acquire) == 0 {
                spin_hint();
            }
            next = node.next.load(Ordering::Relaxed);
        }

        // We are the head: wait for the owner and the pending waiter to go:
        // `*,*,* -> *,0,0` (native), or take the lock (halting).
        let val = M::wait_head_or_lock(p, self, node);

        // Claim the lock. If we are the only one queued, clear the tail too:
        // `n,0,0 -> 0,0,1` (halting: `n,*,L -> 0,*,L`, the lock already ours).
        if val & TAIL_MASK == tail {
            let new = if M::HALTS {
                val & !TAIL_MASK
            } else {
                LOCKED_VAL
            };
            // Acquire: the lock (native: pairs with unlock's Release).
            if self
                .val
                .compare_exchange(val, new, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                first.count.fetch_sub(1, Ordering::Relaxed);
                return;
            }
        }
        // Someone queued behind us: `*,*,0 -> *,*,1` (halting: already held).
        if !M::HALTS {
            self.val.fetch_or(LOCKED_VAL, Ordering::Acquire);
        }

        // Wait for the successor to link itself, then make it the head.
        while next.is_null() {
            spin_hint();
            next = node.next.load(Ordering::Acquire);
        }
        // SAFETY: a node reachable through `next` belongs to a CPU that waits
        // in this function until we set its `locked`; nodes are 'static.
        let next = unsafe { &*next };
        next.locked.store(1, Ordering::Release);
        M::kick_node(p, self, next);
        first.count.fetch_sub(1, Ordering::Relaxed);
    }

    /// Swaps the tail field, keeping locked and pending: returns the old word.
    fn xchg_tail(&self, tail: u32) -> u32 {
        let mut old = self.val.load(Ordering::Relaxed);
        loop {
            let new = (old & !TAIL_MASK) | tail;
            // Release: our node's initialisation is visible to whoever
            // reads this tail; Acquire: the predecessor's node likewise.
            match self
                .val
                .compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return old,
                Err(now) => old = now,
            }
        }
    }

    /// Halting stealer: `t,p,0 -> t,0,1` from exactly `val`, one more
    /// steal counted past a queue's head. A pending bit there is a stale
    /// head's (one that left the lock free too long): it goes with the
    /// steal, so the CPUs after us do not wait for that head again; if it
    /// runs after all, it takes the lock as a stealer would.
    fn steal_word(&self, val: u32) -> bool {
        debug_assert_eq!(val & LOCKED_MASK, 0);
        let counted = val & TAIL_MASK != 0 && steals(val) < STEALS_MAX;
        self.val
            .compare_exchange(
                val,
                (val & !PENDING_VAL) + LOCKED_VAL + if counted { STEAL_ONE } else { 0 },
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Halting head: `*,1,0 -> *,0,1` (the lock taken, our pending bit
    /// and the steals past us cleared with it); the new word on success.
    fn take_clearing_pending(&self, mut val: u32) -> Result<u32, u32> {
        while val & LOCKED_MASK == 0 {
            let new = (val & !(PENDING_VAL | STEALS_MASK)) | LOCKED_VAL;
            match self
                .val
                .compare_exchange_weak(val, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return Ok(new),
                Err(now) => val = now,
            }
        }
        Err(val)
    }

    /// Halting head: set the locked byte to [`SLOW_VAL`]; returns the old byte.
    fn set_slow(&self) -> u32 {
        let mut val = self.val.load(Ordering::Relaxed);
        loop {
            // Acquire: if the lock was free, this takes it. Release: our
            // hash entry before the unlocker that sees SLOW_VAL looks it up.
            match self.val.compare_exchange_weak(
                val,
                (val & !LOCKED_MASK) | SLOW_VAL,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return val & LOCKED_MASK,
                Err(now) => val = now,
            }
        }
    }
}

// --- Native and halting slow-path hooks ---------------------------------------
//
// The halting mode is in `halt.rs`.

/// The slow-path variant (STYLE: PV layered over native, never mixed in).
trait Mode {
    const HALTS: bool;
    /// Before claiming a node: true if we took the lock.
    fn spin_unqueued<P: Platform>(p: &P, lock: &QSpinLock) -> bool;
    /// With our node set up, before publishing it: true if we took the lock.
    fn trylock_before_queueing<P: Platform>(p: &P, lock: &QSpinLock) -> bool;
    /// Before waiting for our MCS `locked` flag.
    fn wait_node<P: Platform>(p: &P, lock: &QSpinLock, node: &McsNode, prev: &McsNode);
    /// As queue head: wait until we may take the lock; returns the word.
    /// Native: returns once `*,0,0` (lock not yet taken). Halting: returns
    /// with the lock taken.
    fn wait_head_or_lock<P: Platform>(p: &P, lock: &QSpinLock, node: &McsNode) -> u32;
    /// After handing the MCS lock to `next`.
    fn kick_node<P: Platform>(p: &P, lock: &QSpinLock, next: &McsNode);
}

struct Native;

impl Mode for Native {
    const HALTS: bool = false;

    #[inline(always)] // No-op.
    fn spin_unqueued<P: Platform>(_: &P, _: &QSpinLock) -> bool {
        false
    }

    #[inline(always)]
    fn trylock_before_queueing<P: Platform>(_: &P, lock: &QSpinLock) -> bool {
        lock.try_lock()
    }

    #[inline(always)] // No-op.
    fn wait_node<P: Platform>(_: &P, _: &QSpinLock, _: &McsNode, _: &McsNode) {}

    #[inline(always)]
    fn wait_head_or_lock<P: Platform>(_: &P, lock: &QSpinLock, _: &McsNode) -> u32 {
        loop {
            // Acquire: pairs with the owner's Release in `unlock`.
            let val = lock.val.load(Ordering::Acquire);
            if val & (LOCKED_MASK | PENDING_MASK) == 0 {
                return val;
            }
            spin_hint();
        }
    }

    #[inline(always)]
    fn kick_node<P: Platform>(p: &P, _: &QSpinLock, next: &McsNode) {
        p.event(Event::HandOver {
            cpu: next.cpu.load(Ordering::Relaxed) as usize,
            halted: false,
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
