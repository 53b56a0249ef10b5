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
//! | 9-15  | -       | unused |
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

use super::atomic::{
    fence, lock_new, spin_hint, AtomicPtr, AtomicU32, AtomicU8, AtomicUsize, Ordering,
};

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
/// PV: spins before a waiter halts, until the kernel has measured its own
/// (`Platform::spin_limit`; Linux uses a constant 1 << 15).
pub const DEFAULT_SPIN_LIMIT: u32 = 1 << 12;
/// PV: a queued waiter looks at its predecessor every this+1 spins.
pub const PREV_CHECK_MASK: u32 = 0xff;

const _: () = assert!(TAIL_CPU_BITS >= 14 && crate::MAX_CPUS < 1 << TAIL_CPU_BITS);

fn encode_tail(cpu: usize, idx: usize) -> u32 {
    debug_assert!(idx < MAX_NODES);
    ((cpu as u32 + 1) << TAIL_CPU_OFFSET) | ((idx as u32) << TAIL_IDX_OFFSET)
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
    /// PV: the owning CPU and its [`VCPU_RUNNING`]/... state.
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

// --- The PV hash table -------------------------------------------------------

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
    fn hash(&self, lock: &QSpinLock, node: &McsNode) {
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
    fn unhash(&self, lock: &QSpinLock) -> &McsNode {
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
    fn unhash_own(&self, lock: &QSpinLock) {
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

/// Hash slots the kernel uses: two per queue node.
pub const PV_HASH_SLOTS: usize = 2 * MAX_NODES * crate::MAX_CPUS;

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
    /// PV: how many times a waiter spins before it halts.
    fn spin_limit(&self) -> u32 {
        DEFAULT_SPIN_LIMIT
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
            M::wait_node(p, node, prev);
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

    /// Halting: `*,*,0 -> *,*,1` if the locked byte is clear (whatever the
    /// tail and pending bit say); returns the old word on success.
    fn take_if_free(&self, mut val: u32) -> Result<u32, u32> {
        while val & LOCKED_MASK == 0 {
            match self.val.compare_exchange_weak(
                val,
                val | LOCKED_VAL,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(val),
                Err(now) => val = now,
            }
        }
        Err(val)
    }

    /// Halting head: `*,1,0 -> *,0,1` (the lock taken, our pending bit
    /// cleared with it); the new word on success.
    fn take_clearing_pending(&self, mut val: u32) -> Result<u32, u32> {
        while val & LOCKED_MASK == 0 {
            let new = (val & !PENDING_VAL) | LOCKED_VAL;
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

/// The slow-path variant (STYLE: PV layered over native, never mixed in).
trait Mode {
    const HALTS: bool;
    /// With our node set up, before publishing it: true if we took the lock.
    fn trylock_before_queueing<P: Platform>(p: &P, lock: &QSpinLock) -> bool;
    /// Before waiting for our MCS `locked` flag.
    fn wait_node<P: Platform>(p: &P, node: &McsNode, prev: &McsNode);
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

    #[inline(always)]
    fn trylock_before_queueing<P: Platform>(_: &P, lock: &QSpinLock) -> bool {
        lock.try_lock()
    }

    #[inline(always)] // No-op.
    fn wait_node<P: Platform>(_: &P, _: &McsNode, _: &McsNode) {}

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

/// Halt-and-kick, after Linux's `qspinlock_paravirt.h`.
///
/// - The pending bit means "the queue head is spinning for the lock": the
///   head sets it while it spins and clears it before it halts.
/// - A CPU entering the slow path may take the lock past the queue (lock
///   stealing) while the head is not spinning for it (Linux's hybrid
///   unfair trylock): a halted or preempted head's turn goes to a running
///   CPU instead of waiting for the head's wake-up. It also steals when
///   the head is spinning but leaves the lock free for a while
///   ([`STALE_HEAD_SHIFT`])
///   (it is not running: a preempted vCPU that nobody reports).
/// - Queued waiters spin [`Platform::spin_limit`] times, or less behind a
///   halted or preempted predecessor, then halt; the predecessor that makes
///   a halted waiter the head hashes it, and the unlock kicks it.
struct Halt;

/// Halting: a stealer lets the lock lie free, with the head's pending bit
/// set, for the spin limit divided by this before it takes the lock anyway.
/// A running head takes a free lock within a cache-line transfer; that is
/// hundreds of spins at the kernel's limits (4,096 and up).
pub const STALE_HEAD_SHIFT: u32 = 4;

/// What a CPU entering the halting slow path does, seeing `val`.
#[derive(Debug, PartialEq, Eq)]
enum Steal {
    /// Take the lock (it is free, and no running head is about to).
    Take,
    /// Queue: there is no queue (we will be its spinning head), or its
    /// head is spinning for a held lock (fairness: wait our turn).
    Queue,
    /// Spin: the lock is held and the head is not spinning for it.
    Wait,
    /// Spin: the lock is free but the head, spinning, has not taken it yet.
    WaitForHead,
}

/// The stealing rules: `free_under_head` is how many times this CPU has
/// seen the lock free under a spinning head, `stale` how many make the head
/// count as not running.
fn steal(val: u32, free_under_head: u32, stale: u32) -> Steal {
    let free = val & LOCKED_MASK == 0;
    let head_spinning = val & PENDING_MASK != 0;
    if free && (!head_spinning || free_under_head >= stale) {
        Steal::Take
    } else if val & TAIL_MASK == 0 || (head_spinning && !free) {
        Steal::Queue
    } else if head_spinning {
        Steal::WaitForHead
    } else {
        Steal::Wait
    }
}

impl Halt {
    /// Whether a queued waiter should stop spinning early: its predecessor
    /// is halted (Linux) or its vCPU is preempted (checked rarely).
    fn wait_early<P: Platform>(p: &P, prev: &McsNode, loop_count: u32) -> bool {
        if loop_count & PREV_CHECK_MASK != 0 {
            return false;
        }
        prev.state.load(Ordering::Relaxed) != VCPU_RUNNING
            || p.vcpu_is_preempted(prev.cpu.load(Ordering::Relaxed) as usize)
    }
}

impl Mode for Halt {
    const HALTS: bool = true;

    /// Lock stealing. Without a queue we queue (and become the head, which
    /// spins); with one, we spin for the lock as long as its head is not
    /// spinning for it, or leaves it free too long.
    fn trylock_before_queueing<P: Platform>(p: &P, lock: &QSpinLock) -> bool {
        let stale = (p.spin_limit() >> STALE_HEAD_SHIFT).max(1);
        let mut free_under_head = 0;
        loop {
            let val = lock.val.load(Ordering::Relaxed);
            match steal(val, free_under_head, stale) {
                Steal::Take => {
                    if let Ok(old) = lock.take_if_free(val) {
                        if old & TAIL_MASK != 0 {
                            p.event(Event::Steal {
                                head_spinning: old & PENDING_MASK != 0,
                            });
                        }
                        return true;
                    }
                    continue;
                }
                Steal::Queue => return false,
                Steal::Wait => {}
                Steal::WaitForHead => free_under_head += 1,
            }
            spin_hint();
        }
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
    fn wait_node<P: Platform>(p: &P, node: &McsNode, prev: &McsNode) {
        loop {
            for spin in (1..=p.spin_limit()).rev() {
                if node.locked.load(Ordering::Acquire) != 0 {
                    return;
                }
                if Self::wait_early(p, prev, spin) {
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
                    // It was free: ours, with SLOW_VAL; undo the marking.
                    p.hash().unhash_own(lock);
                    let slow = lock
                        .val
                        .fetch_and(!LOCKED_MASK | LOCKED_VAL, Ordering::Relaxed);
                    return (slow & !LOCKED_MASK) | LOCKED_VAL;
                }
            }
            node.state.store(VCPU_HASHED, Ordering::SeqCst);
            p.event(Event::Halt);
            p.wait(&|| lock.val.load(Ordering::Acquire) & LOCKED_MASK == SLOW_VAL);
            // Lock stealing may beat us to it after the kick: loop.
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::super::test_platform::{shared, Cpu};
    use super::*;
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

    fn stress(slow_path: SlowPath, cpus: usize, per_cpu: u64) {
        let shared = shared(cpus, slow_path);
        let lock = Arc::new(QSpinLock::new());
        let counter = Arc::new(AtomicU32::new(0));
        let inside = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..cpus)
            .map(|id| {
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

    #[test]
    fn stealing_rules() {
        let tail = encode_tail(1, 0);
        // No queue: free, take it (the fast path's case); held, queue and
        // become the head.
        assert_eq!(steal(0, 0, 4), Steal::Take);
        assert_eq!(steal(LOCKED_VAL, 0, 4), Steal::Queue);
        // A queue whose head is not spinning (halted, preempted, between
        // heads): take a free lock, spin for a held one.
        assert_eq!(steal(tail, 0, 4), Steal::Take);
        assert_eq!(steal(tail | LOCKED_VAL, 0, 4), Steal::Wait);
        assert_eq!(steal(tail | SLOW_VAL, 0, 4), Steal::Wait);
        // A spinning head waiting for a holder: queue behind it.
        assert_eq!(steal(tail | PENDING_VAL | LOCKED_VAL, 0, 4), Steal::Queue);
        // A spinning head that leaves the lock free: give it `stale` looks.
        assert_eq!(steal(tail | PENDING_VAL, 0, 4), Steal::WaitForHead);
        assert_eq!(steal(tail | PENDING_VAL, 3, 4), Steal::WaitForHead);
        assert_eq!(steal(tail | PENDING_VAL, 4, 4), Steal::Take);
    }

    #[test]
    fn the_hash_holds_a_halted_head_per_queue_node() {
        // Every CPU halted as the head of one lock per nesting level (a
        // halted head can take an interrupt whose handler halts again).
        let hash = PvHash::<PV_HASH_SLOTS>::new();
        let locks: Vec<QSpinLock> = (0..MAX_NODES * crate::MAX_CPUS)
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
}

/// The hand-over to a halting waiter in isolation, where loom explores it
/// fully: either the waiter sees `locked` and does not halt, or the
/// predecessor sees it halted and the unlock kicks it. A lost kick leaves
/// the waiter halted for good: a deadlock to loom.
#[cfg(all(test, loom))]
mod handshake {
    use loom::sync::Arc;
    use loom::thread;

    use super::super::test_platform::{shared, Cpu};
    use super::*;

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
                let shared = Arc::clone(&shared);
                thread::spawn(move || {
                    let cpu = Cpu::new(0, &shared);
                    let (node, prev) = (cpu.node(0, 0), cpu.node(1, 0));
                    Halt::wait_node(&cpu, node, prev);
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
