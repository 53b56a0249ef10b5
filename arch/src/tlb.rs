//! TLB shootdown by IPI: the protocol, free of hardware access so that its
//! rules are unit-tested on the host. LoongArch uses it (it has no broadcast
//! TLB invalidation); aarch64 broadcasts `tlbi ...is` and needs none of it.
//!
//! # Who is a target
//! Only a CPU that *joined* ([`Shootdowns::join`]) may cache entries of the
//! tables; CPUs that never came up are never asked. Of the joined ones:
//!
//! | target state | may it use stale entries? | what the requester does |
//! |---|---|---|
//! | running (or preempted by the host) | yes, at any instruction | flag it, ring it, wait for its answer |
//! | halted in [`Shootdowns::halt`] (idle, parked, PV wait) | no: it flushes on wake, before returning | flag it (whole TLB), no IPI, no wait |
//!
//! # The flag
//! `PENDING[t]` says what `t` must invalidate: `NONE`, `RANGE` (the range of
//! the request in flight, [`Shootdowns::range`]) or `FULL`. Requests are
//! serialised by the caller (the arch's table lock), so at most one range is
//! in flight, and `RANGE` is only ever set while its requester waits for the
//! answer. A halted target is left `FULL` (its flag may outlive the request).
//!
//! ```text
//!   requester (tables lock held)              target t
//!   [S] PTEs; local invalidation              halt:   [S] HALTED[t] = true
//!   [S] prev = PENDING[t].swap(FULL)                  idle
//!   [L] HALTED[t]?  yes -> done with t        wake:   [S] HALTED[t] = false
//!       no, prev NONE: CAS FULL -> RANGE              [L] PENDING[t] -> flush, NONE
//!       ring t -----------------------------> IPI:    [L] PENDING[t] -> flush, NONE
//!   [L] wait PENDING[t] == NONE <------------
//! ```
//! The halt/wake side and the requester are a store-buffering (Dekker) pair,
//! all SeqCst: either the requester sees `t` running (and waits for it), or
//! `t`'s wake-up load sees the flag.
//!
//! # Waiting
//! The requester answers its own flag while it waits (two CPUs mapping at
//! once cannot deadlock).

use core::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::pv::CpuMask;
use crate::{IrqState, ShootdownStats, MAX_CPUS};

const NONE: u8 = 0;
const RANGE: u8 = 1;
const FULL: u8 = 2;

/// How long a requester waits for a target that shows no sign of being held
/// off by the host (as long as the kernel waits for a CPU to come online)
/// before the wait counts as a long one ([`ShootdownStats`]'s
/// `preempted_waits`) and, with [`SILENT_SEC`] passed too, the target as
/// [`Stuck`].
pub const TIMEOUT_SEC: u64 = 2;

/// How long a target must have been silent (no answer, and no sign of a
/// hold-off) before it is called [`Stuck`]. The signs are only ever
/// hints: a preempted flag of 0 means "not known to be preempted", not
/// "running" (KVM sets it only when it takes a vCPU off involuntarily, and
/// a woken vCPU waiting for a host CPU reads 0), a host may not offer the
/// flag at all (QEMU 10 under KVM does not), and steal grows only when the
/// vCPU runs again. So the absence of a sign is no proof that a target
/// runs, and a hold-off longer than [`TIMEOUT_SEC`] that shows none must
/// not be taken for a stuck CPU: this bound is far above any hold-off the
/// hosts here inflict, and still ends a wait for a CPU spinning with
/// interrupts masked.
pub const SILENT_SEC: u64 = 10;

/// What ringing the doorbells cost, as the guest counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// IOCSR (native) IPIs written.
    pub ipis: u32,
    /// Multicast hypercalls made.
    pub hypercalls: u32,
}

/// What the protocol needs from the CPU it runs on.
pub trait TlbCpu {
    fn cpu_id(&self) -> usize;
    fn irq_save(&self) -> IrqState;
    fn irq_restore(&self, state: IrqState);
    /// Invalidates this CPU's whole TLB.
    fn invalidate_all(&self);
    /// Invalidates this CPU's entries for `[start, end)`.
    fn invalidate_range(&self, start: usize, end: usize);
    /// Rings the TLB-flush doorbell of every CPU in `targets`.
    fn ring(&self, targets: CpuMask) -> Sent;
    fn ticks(&self) -> u64;
    fn ticks_per_sec(&self) -> u64;
    /// Whether the host reports `cpu`'s vCPU preempted (`None`: it does not say).
    fn preempted(&self, cpu: usize) -> Option<bool>;
    /// `cpu`'s steal clock, if one is in use.
    fn steal_ns(&self, cpu: usize) -> Option<u64>;
    fn spin_hint(&self);
}

/// A target that did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stuck {
    pub cpu: usize,
    /// Guest ticks the requester waited for it.
    pub waited_ticks: u64,
    /// Whether the host reported it preempted at any time meanwhile.
    pub seen_preempted: bool,
}

/// Event counters (all since boot).
struct Counters {
    shootdowns: AtomicU64,
    targets: AtomicU64,
    lazy: AtomicU64,
    ipis: AtomicU64,
    hypercalls: AtomicU64,
    preempted_waits: AtomicU64,
}

/// The shared state of one address space's shootdowns.
pub struct Shootdowns {
    joined: [AtomicBool; MAX_CPUS],
    halted: [AtomicBool; MAX_CPUS],
    pending: [AtomicU8; MAX_CPUS],
    range: [AtomicUsize; 2],
    counters: Counters,
}

impl Default for Shootdowns {
    fn default() -> Self {
        Self::new()
    }
}

impl Shootdowns {
    pub const fn new() -> Self {
        Self {
            joined: [const { AtomicBool::new(false) }; MAX_CPUS],
            halted: [const { AtomicBool::new(false) }; MAX_CPUS],
            pending: [const { AtomicU8::new(NONE) }; MAX_CPUS],
            range: [const { AtomicUsize::new(0) }; 2],
            counters: Counters {
                shootdowns: AtomicU64::new(0),
                targets: AtomicU64::new(0),
                lazy: AtomicU64::new(0),
                ipis: AtomicU64::new(0),
                hypercalls: AtomicU64::new(0),
                preempted_waits: AtomicU64::new(0),
            },
        }
    }

    /// Makes `cpu` a target, then empties its TLB: from here on every change
    /// reaches it.
    pub fn join(&self, tlb: &impl TlbCpu, cpu: usize) {
        // SeqCst (with the fence in `shoot_down`): a requester either sees
        // this flag, or its table stores precede the invalidation below.
        self.joined[cpu].store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        tlb.invalidate_all();
    }

    /// The range of the request in flight.
    fn range(&self) -> (usize, usize) {
        (
            self.range[0].load(Ordering::Relaxed),
            self.range[1].load(Ordering::Relaxed),
        )
    }

    /// Does what the calling CPU's flag asks, if anything: the IPI handler,
    /// and what waiting CPUs poll (in thread context, preemptible).
    pub fn on_flush_ipi(&self, tlb: &impl TlbCpu) {
        // Masked from reading the id to clearing the flag: a thread that
        // migrated in between would clear the old CPU's flag after flushing
        // the new CPU's TLB (the tick preempts only at an interrupt's exit).
        let irq = tlb.irq_save();
        let me = tlb.cpu_id();
        self.flush_pending(tlb, me);
        tlb.irq_restore(irq);
    }

    /// Flushes as `me`'s flag asks and clears it.
    fn flush_pending(&self, tlb: &impl TlbCpu, me: usize) {
        // Acquire: pairs with the requester's swap / CAS (Release): the
        // table stores and the range before the flag.
        match self.pending[me].load(Ordering::Acquire) {
            NONE => return,
            RANGE => {
                let (start, end) = self.range();
                tlb.invalidate_range(start, end);
            }
            _ => tlb.invalidate_all(),
        }
        // Release: the invalidation is done before the requester goes on.
        self.pending[me].store(NONE, Ordering::Release);
    }

    /// Invalidates `[start, end)` on this CPU and every joined CPU that may
    /// cache it, and waits until each did (see the module docs for who is
    /// asked). The caller serialises requests and has stored the new table
    /// entries. `cpus` bounds the logical ids to look at.
    pub fn shoot_down(
        &self,
        tlb: &impl TlbCpu,
        cpus: usize,
        start: usize,
        end: usize,
    ) -> Result<Sent, Stuck> {
        // Masked: the local invalidation and `me` must be the same CPU
        // (`me` is left out of the targets).
        let irq = tlb.irq_save();
        fence(Ordering::SeqCst);
        let me = tlb.cpu_id();
        tlb.invalidate_range(start, end);
        self.range[0].store(start, Ordering::Relaxed);
        self.range[1].store(end, Ordering::Relaxed);
        let mut ring = CpuMask::default();
        let (mut targets, mut lazy) = (0, 0);
        for cpu in (0..cpus.min(MAX_CPUS)).filter(|&c| c != me) {
            if !self.joined[cpu].load(Ordering::SeqCst) {
                continue;
            }
            // FULL first, the one value that is right whatever comes next.
            // SeqCst: [S] of the store-buffering pair with `halt`'s wake-up;
            // Release for the table stores (pairs with `flush_pending`).
            let owed = self.pending[cpu].swap(FULL, Ordering::SeqCst);
            // [L] of the pair.
            if self.halted[cpu].load(Ordering::SeqCst) {
                lazy += 1; // It flushes the whole TLB on waking.
                continue;
            }
            // Narrow to the range unless a whole flush was owed already.
            // A failed CAS: it flushed everything meanwhile; done with it.
            if owed == NONE
                && self.pending[cpu]
                    .compare_exchange(FULL, RANGE, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
            {
                continue;
            }
            ring = ring.with(cpu);
            targets += 1;
        }
        tlb.irq_restore(irq);
        let sent = tlb.ring(ring);
        self.count(targets, lazy, sent);
        for cpu in ring.iter() {
            self.wait_for(tlb, cpu)?;
        }
        Ok(sent)
    }

    /// Waits until `cpu` answered, serving this CPU's own flag meanwhile.
    /// Time the host is seen holding `cpu` off does not count against the
    /// timeout: a descheduled vCPU is normal on an overcommitted host; nor
    /// does time it holds this CPU off (the flag is read again after the
    /// clock). A target that does not answer for [`TIMEOUT_SEC`] after the
    /// last sign of a hold-off, and for [`SILENT_SEC`] in all, is
    /// [`Stuck`].
    fn wait_for(&self, tlb: &impl TlbCpu, cpu: usize) -> Result<(), Stuck> {
        let timeout = TIMEOUT_SEC * tlb.ticks_per_sec();
        let begin = tlb.ticks();
        let silent_until = begin + SILENT_SEC * tlb.ticks_per_sec();
        let mut deadline = begin + timeout;
        let mut steal = tlb.steal_ns(cpu);
        let mut seen_preempted = false;
        let mut counted = false;
        // Acquire: pairs with the Release in the target's `flush_pending`.
        while self.pending[cpu].load(Ordering::Acquire) != NONE {
            self.on_flush_ipi(tlb);
            let now = tlb.ticks();
            let stolen = tlb.steal_ns(cpu);
            let held_off = tlb.preempted(cpu) == Some(true) || stolen > steal;
            steal = stolen;
            if held_off {
                seen_preempted = true;
                deadline = now + timeout;
            } else if now > deadline.max(silent_until)
                && self.pending[cpu].load(Ordering::Acquire) != NONE
            {
                // The flag read again after the clock: had this CPU been
                // held off itself since the loop's read, the target may
                // have answered meanwhile (seen under pvhost).
                return Err(Stuck {
                    cpu,
                    waited_ticks: now - begin,
                    seen_preempted,
                });
            }
            if seen_preempted && !counted && now > begin + timeout {
                counted = true;
                self.counters
                    .preempted_waits
                    .fetch_add(1, Ordering::Relaxed);
            }
            tlb.spin_hint();
        }
        Ok(())
    }

    fn count(&self, targets: u64, lazy: u64, sent: Sent) {
        let c = &self.counters;
        c.shootdowns.fetch_add(1, Ordering::Relaxed);
        c.targets.fetch_add(targets, Ordering::Relaxed);
        c.lazy.fetch_add(lazy, Ordering::Relaxed);
        c.ipis.fetch_add(u64::from(sent.ipis), Ordering::Relaxed);
        c.hypercalls
            .fetch_add(u64::from(sent.hypercalls), Ordering::Relaxed);
    }

    /// Halts the calling CPU in `idle` (which returns when an interrupt is
    /// pending): while halted it is no target; on waking it flushes what
    /// was asked of it meanwhile, before anything else runs.
    pub fn halt<R>(&self, tlb: &impl TlbCpu, idle: impl FnOnce() -> R) -> R {
        let irq = tlb.irq_save();
        let me = tlb.cpu_id();
        // Before the idle: a flag set from here on is the wake-up's to
        // serve (requesters that see this skip the IPI).
        self.halted[me].store(true, Ordering::SeqCst);
        let r = idle();
        // [S] then [L] of the store-buffering pair with `shoot_down`.
        self.halted[me].store(false, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.flush_pending(tlb, me);
        tlb.irq_restore(irq);
        r
    }

    /// The counters since boot.
    pub fn stats(&self) -> ShootdownStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ShootdownStats {
            shootdowns: get(&c.shootdowns),
            targets: get(&c.targets),
            lazy: get(&c.lazy),
            ipis: get(&c.ipis),
            hypercalls: get(&c.hypercalls),
            preempted_waits: get(&c.preempted_waits),
            broadcasts: 0,
        }
    }
}

#[cfg(test)]
mod tests;
