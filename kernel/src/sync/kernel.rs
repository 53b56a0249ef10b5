//! The kernel's side of the lock algorithms: per-CPU queue nodes, the PV
//! hash table, the PV primitives from the PV view, the qspinlock's slow-path
//! counters ([`qspin_stats`]), and its spin limit, measured at boot
//! ([`set_spin_limit`]).

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use core::time::Duration;

use arch::Cpu;

use super::mcs::McsCpuNodes;
use super::qspinlock::{
    Event, McsNode, Platform, PvHash, SlowPath, DEFAULT_SPIN_LIMIT, MAX_NODES, PV_HASH_SLOTS,
    UNBOUNDED_STEALS,
};
use crate::percpu::PerCpu;
use crate::{per_cpu, pv, smp, time, A};

static QSPIN_NODES: PerCpu<[McsNode; MAX_NODES]> = per_cpu!([const { McsNode::new() }; MAX_NODES]);
static PV_HASH: PvHash<PV_HASH_SLOTS> = PvHash::new();
/// Each CPU's MCS-lock nodes.
pub(super) static MCS_NODES_PER_CPU: PerCpu<McsCpuNodes> = per_cpu!(McsCpuNodes::new());
/// PV: spins before a queued qspinlock waiter halts.
static SPIN_LIMIT: AtomicU32 = AtomicU32::new(DEFAULT_SPIN_LIMIT);
/// Halting: spins for a held qspinlock before claiming a node and queueing.
static UNQUEUED_SPINS: AtomicU32 = AtomicU32::new(0);
static STEAL_BUDGET: AtomicU32 = AtomicU32::new(UNBOUNDED_STEALS);

/// Whether each CPU is halted in [`Platform::wait`] (for `kicks_unhalted`).
static HALTED: PerCpu<AtomicBool> = per_cpu!(AtomicBool::new(false));
/// Each CPU's qspinlock slow-path counters.
static EVENTS: PerCpu<[AtomicU64; COUNTERS]> = per_cpu!([const { AtomicU64::new(0) }; COUNTERS]);

/// The qspinlock's platform in the kernel: all state is static; `forced`
/// fixes the slow path for locks that must not follow the boot choice
/// (benchmarks comparing both, [`super::QSpinWith`]).
pub(super) struct KernelCpu {
    pub(super) forced: Option<SlowPath>,
}

impl KernelCpu {
    /// The kernel's locks: the slow path chosen at boot.
    pub(super) const BOOT: Self = Self { forced: None };
}

impl Platform for KernelCpu {
    #[inline(always)]
    fn cpu(&self) -> usize {
        A::cpu_id()
    }
    fn node(&self, cpu: usize, idx: usize) -> &McsNode {
        &QSPIN_NODES.of(cpu)[idx]
    }
    fn hash(&self) -> &PvHash<PV_HASH_SLOTS> {
        &PV_HASH
    }
    #[inline(always)] // Read once per slow-path entry.
    fn slow_path(&self) -> SlowPath {
        self.forced.unwrap_or_else(pv::lock_slow_path)
    }
    fn wait(&self, still: &dyn Fn() -> bool) {
        let halted = HALTED.current();
        halted.store(true, Ordering::Relaxed);
        pv::wait(still);
        halted.store(false, Ordering::Relaxed);
    }
    fn kick(&self, cpu: usize) {
        pv::kick(cpu);
    }
    fn vcpu_is_preempted(&self, cpu: usize) -> bool {
        pv::vcpu_is_preempted(cpu)
    }
    #[inline(always)] // Read once per wait.
    fn spin_limit(&self) -> u32 {
        SPIN_LIMIT.load(Ordering::Relaxed)
    }
    #[inline(always)]
    fn unqueued_spins(&self) -> u32 {
        UNQUEUED_SPINS.load(Ordering::Relaxed)
    }
    #[inline(always)]
    fn steal_budget(&self) -> u32 {
        STEAL_BUDGET.load(Ordering::Relaxed)
    }
    fn event(&self, event: Event) {
        let c = EVENTS.current();
        let bump = |slot: usize| {
            c[slot].fetch_add(1, Ordering::Relaxed);
        };
        match event {
            Event::Halt => bump(HALTS),
            Event::Kick(cpu) => {
                bump(KICKS);
                if !HALTED.of(cpu).load(Ordering::Relaxed) {
                    bump(KICKS_UNHALTED);
                }
            }
            Event::HandOver { cpu, halted } => {
                if halted {
                    bump(HANDOVER_HALTED);
                }
                if pv::vcpu_is_preempted(cpu) {
                    bump(HANDOVER_PREEMPTED);
                }
            }
            Event::Steal { head_spinning } => {
                bump(STEALS);
                if !head_spinning {
                    bump(STEALS_HEAD_HALTED);
                }
            }
        }
    }
}

// One CPU's counters: a slot per field of [`QSpinStats`], in its order.
const HALTS: usize = 0;
const KICKS: usize = 1;
const KICKS_UNHALTED: usize = 2;
const HANDOVER_HALTED: usize = 3;
const HANDOVER_PREEMPTED: usize = 4;
const STEALS: usize = 5;
const STEALS_HEAD_HALTED: usize = 6;
const COUNTERS: usize = 7;

/// What the qspinlock slow paths of all CPUs did since boot, over every
/// qspinlock (take two and subtract for one stretch of time).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QSpinStats {
    /// Waiters that halted (queued or at the head).
    pub halts: u64,
    /// Kicks an unlock sent to a halted head.
    pub kicks: u64,
    /// Of those, kicks that found the CPU not (yet, or no longer) halted.
    pub kicks_unhalted: u64,
    /// MCS hand-overs to a waiter that was halted.
    pub handover_halted: u64,
    /// MCS hand-overs to a waiter whose vCPU the host reported preempted.
    pub handover_preempted: u64,
    /// Acquisitions that took the lock past a non-empty queue.
    pub steals: u64,
    /// Of those, steals while the queue head was not spinning (halted,
    /// preempted or between heads).
    pub steals_head_halted: u64,
}

impl QSpinStats {
    fn from_slots(c: [u64; COUNTERS]) -> Self {
        Self {
            halts: c[HALTS],
            kicks: c[KICKS],
            kicks_unhalted: c[KICKS_UNHALTED],
            handover_halted: c[HANDOVER_HALTED],
            handover_preempted: c[HANDOVER_PREEMPTED],
            steals: c[STEALS],
            steals_head_halted: c[STEALS_HEAD_HALTED],
        }
    }

    fn slots(self) -> [u64; COUNTERS] {
        [
            self.halts,
            self.kicks,
            self.kicks_unhalted,
            self.handover_halted,
            self.handover_preempted,
            self.steals,
            self.steals_head_halted,
        ]
    }

    /// `self - earlier`, field by field.
    pub fn since(self, earlier: Self) -> Self {
        let (now, then) = (self.slots(), earlier.slots());
        Self::from_slots(core::array::from_fn(|i| now[i] - then[i]))
    }
}

impl fmt::Display for QSpinStats {
    /// `halts=N kicks=N ...`, as `lockstorm` prints them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "halts={} kicks={} kicks_unhalted={} handover_halted={} handover_preempted={} steals={} steals_head_halted={}",
            self.halts,
            self.kicks,
            self.kicks_unhalted,
            self.handover_halted,
            self.handover_preempted,
            self.steals,
            self.steals_head_halted
        )
    }
}

/// The counters summed over every CPU.
pub fn qspin_stats() -> QSpinStats {
    QSpinStats::from_slots(core::array::from_fn(|slot| {
        (0..crate::percpu::cpus())
            .map(|cpu| EVENTS.of(cpu)[slot].load(Ordering::Relaxed))
            .sum()
    }))
}

/// The least spins calibration may choose. The halt it measures at boot is
/// a best case: idle CPUs, an idle host. Under load a kicked vCPU also
/// waits for the host to run it, so a limit below the fixed default made
/// overcommitted guests halt far too early and run several times slower
/// (the figures: `docs/ARCHITECTURE.md`, "Locks").
const MIN_SPIN_LIMIT: u32 = DEFAULT_SPIN_LIMIT;
/// The most: every halt ends at the next tick anyway.
const MAX_SPIN_LIMIT: u32 = 1 << 16;
/// Halt-and-kick rounds measured (the median counts).
const CALIBRATION_ROUNDS: usize = 3;
/// Spins timed to learn the cost of one.
const TIMED_SPINS: u32 = 1 << 12;
/// How long the kicker lets the waiter settle into its halt.
const SETTLE: Duration = Duration::from_micros(20);
/// Give up on a waiter that does not answer within this.
const PATIENCE: Duration = Duration::from_millis(200);

/// What [`set_spin_limit`] measured.
#[derive(Clone, Copy, Debug)]
pub struct SpinCalibration {
    /// From a kick to the halted waiter running again (median).
    pub halt_kick: Duration,
    /// One spin of the wait loop, in picoseconds.
    pub spin_ps: u64,
}

/// How the spin limit was chosen, for the boot report.
#[derive(Clone, Copy, Debug)]
pub enum SpinLimit {
    /// Calibrated to this host.
    Measured(u32, SpinCalibration),
    /// Set by `lock.spin=N`.
    Fixed(u32),
    /// The default: calibration was not possible, for this reason.
    Default(&'static str),
}

impl fmt::Display for SpinLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpinLimit::Measured(limit, c) => write!(
                f,
                "spin limit {limit} (a kicked halt took {} us, a spin {}.{:03} ns)",
                c.halt_kick.as_micros(),
                c.spin_ps / 1000,
                c.spin_ps % 1000
            ),
            SpinLimit::Fixed(limit) => write!(f, "spin limit {limit} (lock.spin={limit})"),
            SpinLimit::Default(why) => write!(f, "spin limit {DEFAULT_SPIN_LIMIT} ({why})"),
        }
    }
}

/// Sets the qspinlock's spin limit: `fixed` (`lock.spin=N`) or, if `None`,
/// about as many spins as a halted waiter takes to run again once kicked,
/// but no fewer than [`MIN_SPIN_LIMIT`]. Spinning longer than that costs
/// more than halting would; halting sooner risks paying the kick for a
/// lock that was about to come (the classic rule: spin for as long as
/// blocking costs, then block, never worse than twice the best choice).
/// That cost differs a hundredfold between hosts (TCG ~50 us, nested KVM
/// under TCG 0.25-1.2 ms, real KVM microseconds), so no constant fits all:
/// under nested KVM 4,096 spins halted far too early.
///
/// Measured with the lock's own primitives ([`pv::wait`], [`pv::kick`])
/// between the calling CPU and another one, with interrupts enabled. With
/// no hypervisor, one CPU, or if the other does not answer, the default
/// stays.
pub fn set_spin_limit(fixed: Option<u32>) -> SpinLimit {
    if let Some(limit) = fixed {
        SPIN_LIMIT.store(limit, Ordering::Relaxed);
        return SpinLimit::Fixed(limit);
    }
    if pv::no_hypervisor() {
        // The probe found no hypervisor: a halt costs what the hardware's
        // (or TCG's) wake-up costs, which calibrates below the floor (TCG:
        // 1-2.6k spins) and only slows the boot down (cross-CPU round trips
        // take milliseconds under TCG).
        return SpinLimit::Default("not measured: no hypervisor");
    }
    let me = A::cpu_id();
    let Some(waiter) = smp::online_cpus().find(|&c| c != me) else {
        return SpinLimit::Default("one CPU: nothing to measure");
    };
    let spin_ps = time_one_spin();
    let Some(halt_kick) = halt_kick_latency(me, waiter) else {
        return SpinLimit::Default("not measured: the other CPU did not answer");
    };
    let spins = halt_kick.as_nanos() as u64 * 1000 / spin_ps.max(1);
    let limit = spins.clamp(MIN_SPIN_LIMIT as u64, MAX_SPIN_LIMIT as u64) as u32;
    SPIN_LIMIT.store(limit, Ordering::Relaxed);
    SpinLimit::Measured(limit, SpinCalibration { halt_kick, spin_ps })
}

/// Unqueued spins where the host preempts vCPUs: longer than a host's
/// scheduling slice at tens of nanoseconds a spin, so a lock whose holder
/// runs is taken by a running CPU, as test-and-set does; the queue (and its
/// halts) only behind a holder held off for longer (docs/ARCHITECTURE.md,
/// "Locks", has the spin costs this was sized by).
pub const PREEMPTED_HOST_UNQUEUED_SPINS: u32 = 1 << 20;

/// Unqueued spins elsewhere: about the stale-head wait at the spin limit's
/// floor (4,096 / 16), the first contender's spin on the word that native's
/// pending bit gives and the halting queue otherwise lacks: without it a
/// second CPU pays a queue node's set-up for every short critical section
/// (docs/bench.md has the measurement).
pub const SHORT_UNQUEUED_SPINS: u32 = 256;

/// How [`set_unqueued_spins`] chose, for the boot report.
#[derive(Clone, Copy, Debug)]
pub enum Unqueued {
    /// The host reports preempted vCPUs: [`PREEMPTED_HOST_UNQUEUED_SPINS`].
    PreemptingHost,
    /// No host report of preemption: [`SHORT_UNQUEUED_SPINS`].
    Short,
    /// Set by `lock.unqueued=N`.
    Fixed(u32),
}

impl fmt::Display for Unqueued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unqueued::PreemptingHost => write!(
                f,
                "unqueued spins {PREEMPTED_HOST_UNQUEUED_SPINS} (the host preempts vCPUs: a FIFO \
                 hand-over could go to a preempted one; test-and-set style first)"
            ),
            Unqueued::Short => write!(
                f,
                "unqueued spins {SHORT_UNQUEUED_SPINS} (no preempted vCPUs reported: a short \
                 spin, as native's pending waiter)"
            ),
            Unqueued::Fixed(n) => write!(f, "unqueued spins {n} (lock.unqueued={n})"),
        }
    }
}

/// Sets how long a halting qspinlock contender spins for a held lock
/// before it queues, queue or no queue: `fixed` (`lock.unqueued=N`)
/// or, where the host reports preempted vCPUs, long (test-and-set's unfair
/// but preemption-proof hand-over: a released lock goes to whichever CPU
/// runs, never to a queued waiter the host has descheduled — LoongArch
/// Linux uses test-and-set under any hypervisor for this); elsewhere
/// briefly ([`SHORT_UNQUEUED_SPINS`]).
/// A spinning queue head still gets the first look at a free lock.
pub fn set_unqueued_spins(fixed: Option<u32>) -> Unqueued {
    let (spins, why) = match fixed {
        Some(n) => (n, Unqueued::Fixed(n)),
        None if pv::reports_preemption() => {
            (PREEMPTED_HOST_UNQUEUED_SPINS, Unqueued::PreemptingHost)
        }
        None => (SHORT_UNQUEUED_SPINS, Unqueued::Short),
    };
    UNQUEUED_SPINS.store(spins, Ordering::Relaxed);
    why
}

/// How [`set_steal_budget`] chose, for the boot report.
#[derive(Clone, Copy, Debug)]
pub enum StealBudget {
    /// No bound, as Linux: the default on every host.
    Default,
    /// Set by `lock.steals=N|unbounded` (`None`: unbounded).
    Fixed(Option<u32>),
}

impl fmt::Display for StealBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StealBudget::Default => f.write_str(
                "steals past a queue head unbounded (the default: a bound made IRQs-off locks \
                 crawl under TCG overcommit; lock.steals=N sets one)",
            ),
            StealBudget::Fixed(Some(n)) => {
                write!(f, "steals past a queue head {n} (lock.steals={n})")
            }
            StealBudget::Fixed(None) => {
                f.write_str("steals past a queue head unbounded (lock.steals=unbounded)")
            }
        }
    }
}

/// Sets how many CPUs may take a halting qspinlock past one queue head
/// before the head gets it: `fixed` (`lock.steals=`), else no bound.
/// A bound makes the lock fair where vCPUs outnumber cores, but each
/// hand-over it forces waits until the host runs the head's vCPU; with
/// interrupts off on every waiter that wait is paid by all of them, and
/// under a hypervisor it costs throughput. So it is opt-in (docs/bench.md,
/// "Figures", has the measurements).
pub fn set_steal_budget(fixed: Option<Option<u32>>) -> StealBudget {
    let (budget, why) = match fixed {
        Some(n) => (n.unwrap_or(UNBOUNDED_STEALS), StealBudget::Fixed(n)),
        None => (UNBOUNDED_STEALS, StealBudget::Default),
    };
    STEAL_BUDGET.store(budget, Ordering::Relaxed);
    why
}

/// Picoseconds per iteration of a loop like a queued waiter's: the best of
/// three timings (the first one under TCG includes translating the loop).
fn time_one_spin() -> u64 {
    let flag = AtomicU32::new(0);
    let time = || {
        let start = time::now_ns();
        for _ in 0..TIMED_SPINS {
            if core::hint::black_box(&flag).load(Ordering::Acquire) != 0 {
                break;
            }
            A::spin_hint();
        }
        (time::now_ns() - start) * 1000 / TIMED_SPINS as u64
    };
    (0..3).map(|_| time()).min().unwrap_or(0)
}

/// The median time from kicking `waiter`, halted in [`pv::wait`], to it
/// running again; `None` if it does not take part.
fn halt_kick_latency(me: usize, waiter: usize) -> Option<Duration> {
    // Round r: the waiter announces `ready = r` and halts until `go >= r`,
    // then stamps `woken_at[r - 1]` (the counter is the same on every CPU);
    // the kicker lets it settle, stamps the time, sets `go` and kicks.
    let ready = AtomicU32::new(0);
    let go = AtomicU32::new(0);
    let woken_at: [AtomicU64; CALIBRATION_ROUNDS] =
        [const { AtomicU64::new(0) }; CALIBRATION_ROUNDS];
    let latency_ns: [AtomicU64; CALIBRATION_ROUNDS] =
        [const { AtomicU64::new(u64::MAX) }; CALIBRATION_ROUNDS];
    smp::run_on_cpus([me, waiter].into_iter(), &|cpu| {
        if cpu == waiter {
            for (r, woken) in (1..).zip(&woken_at) {
                ready.store(r, Ordering::Release);
                // A halt ends at the kick, or at the tick: halt again.
                while go.load(Ordering::Acquire) < r {
                    pv::wait(&|| go.load(Ordering::Acquire) < r);
                }
                woken.store(time::now_ns(), Ordering::Release);
            }
            return;
        }
        for ((r, woken), latency) in (1..).zip(&woken_at).zip(&latency_ns) {
            if !time::spin_until(PATIENCE, || ready.load(Ordering::Acquire) >= r) {
                break;
            }
            time::spin_for(SETTLE);
            let kicked = time::now_ns();
            go.store(r, Ordering::Release);
            pv::kick(waiter);
            if !time::spin_until(PATIENCE, || woken.load(Ordering::Acquire) != 0) {
                break;
            }
            let at = woken.load(Ordering::Acquire);
            latency.store(at.saturating_sub(kicked), Ordering::Relaxed);
        }
        // Release a waiter left halting (it would otherwise wait for ever).
        go.store(u32::MAX, Ordering::Release);
    });
    let mut latency = latency_ns.map(|l| l.load(Ordering::Relaxed));
    if latency.contains(&u64::MAX) {
        return None;
    }
    latency.sort_unstable();
    Some(Duration::from_nanos(latency[CALIBRATION_ROUNDS / 2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_subtract_field_by_field_and_print_every_field() {
        let later = QSpinStats::from_slots([10, 9, 8, 7, 6, 5, 4]);
        let earlier = QSpinStats::from_slots([1, 2, 3, 4, 5, 5, 0]);
        assert_eq!(later.since(earlier).slots(), [9, 7, 5, 3, 1, 0, 4]);
        assert_eq!(
            later.since(earlier).to_string(),
            "halts=9 kicks=7 kicks_unhalted=5 handover_halted=3 handover_preempted=1 steals=0 steals_head_halted=4"
        );
    }
}
