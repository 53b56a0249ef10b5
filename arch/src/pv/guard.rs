//! Guards on what the host writes into shared records, read at run time:
//! a steal clock that cannot be true, and a preempted flag that reads set
//! for the running vCPU itself. Each turns a host fault into one report
//! line and a native fallback for that CPU.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// How far a steal clock may run ahead of the guest time that passed since
/// its CPU registered: the host's and the guest's clocks may disagree by a
/// rounding or two; a clock further ahead counts time that never passed.
pub const STEAL_SLACK_NS: u64 = 5_000_000;

/// A CPU's steal clock when the CPU registered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StealOrigin {
    /// The clock's reading then.
    pub clock_ns: u64,
    /// Guest time, read before that reading.
    pub at_ns: u64,
}

/// Why a steal clock reading cannot be true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StealFault {
    /// It is below a reading already used: stolen time never shrinks.
    Backwards { last_ns: u64, clock_ns: u64 },
    /// It counts more steal since registration than the time that passed.
    Ahead { stolen_ns: u64, elapsed_ns: u64 },
}

impl fmt::Display for StealFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            StealFault::Backwards { last_ns, clock_ns } => write!(
                f,
                "steal clock went backwards, from {last_ns} to {clock_ns} ns"
            ),
            StealFault::Ahead {
                stolen_ns,
                elapsed_ns,
            } => write!(
                f,
                "steal clock jumped ahead: {stolen_ns} ns stolen in the {elapsed_ns} ns since it registered"
            ),
        }
    }
}

/// Judges `clock_ns`, a reading of a CPU's steal clock taken after the
/// reading `last_ns` was used and before guest time `now_ns` was read:
/// the reading to use, or why none can be trusted again (the CPU then runs
/// without a steal clock, held at `last_ns`, so that it stays monotonic).
pub fn judge_steal(
    origin: StealOrigin,
    last_ns: u64,
    clock_ns: u64,
    now_ns: u64,
) -> Result<u64, StealFault> {
    if clock_ns < last_ns {
        return Err(StealFault::Backwards { last_ns, clock_ns });
    }
    // Below the origin is backwards too (`last_ns` starts there).
    let stolen_ns = clock_ns - origin.clock_ns.min(clock_ns);
    let elapsed_ns = now_ns.saturating_sub(origin.at_ns);
    if stolen_ns > elapsed_ns.saturating_add(STEAL_SLACK_NS) {
        return Err(StealFault::Ahead {
            stolen_ns,
            elapsed_ns,
        });
    }
    Ok(clock_ns)
}

/// One CPU's steal clock as the kernel sees it, readable from any CPU:
/// the host's readings while they can be true ([`judge_steal`]); after the
/// first that cannot, the last good one, for good, reported once in a line
/// naming the CPU. So it never goes backwards and never counts more steal
/// than time passed, whatever the host writes.
pub struct StealGuard {
    origin_clock_ns: AtomicU64,
    origin_at_ns: AtomicU64,
    /// The highest reading used.
    last_ns: AtomicU64,
    /// The clock proved false: it stays at `last_ns`.
    held: AtomicBool,
}

impl Default for StealGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl StealGuard {
    pub const fn new() -> Self {
        Self {
            origin_clock_ns: AtomicU64::new(0),
            origin_at_ns: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            held: AtomicBool::new(false),
        }
    }

    /// The CPU registered its clock: guest time `at_ns`, read before the
    /// clock's first reading `clock_ns`. Call before the record is
    /// published (with Release) to readers.
    pub fn start(&self, at_ns: u64, clock_ns: u64) {
        self.origin_at_ns.store(at_ns, Ordering::Relaxed);
        self.origin_clock_ns.store(clock_ns, Ordering::Relaxed);
        self.last_ns.store(clock_ns, Ordering::Relaxed);
    }

    /// The steal clock of `cpu` now: `read` reads the host's record (`None`:
    /// no consistent reading this time), then `now` the guest time.
    pub fn read(
        &self,
        cpu: usize,
        read: impl FnOnce() -> Option<u64>,
        now: impl FnOnce() -> u64,
    ) -> u64 {
        if self.held.load(Ordering::Acquire) {
            return self.last_ns.load(Ordering::Acquire);
        }
        // Acquire, before the record is read: a reading another CPU
        // published was read from the record before this read is (a true
        // clock only grows), so a true clock never looks backwards.
        let last_ns = self.last_ns.load(Ordering::Acquire);
        let Some(clock_ns) = read() else {
            return last_ns;
        };
        let origin = StealOrigin {
            clock_ns: self.origin_clock_ns.load(Ordering::Relaxed),
            at_ns: self.origin_at_ns.load(Ordering::Relaxed),
        };
        match judge_steal(origin, last_ns, clock_ns, now()) {
            Ok(clock_ns) => self
                .last_ns
                .fetch_max(clock_ns, Ordering::AcqRel)
                .max(clock_ns),
            Err(fault) => {
                if !self.held.swap(true, Ordering::AcqRel) {
                    log::warn!(
                        "pv: CPU {cpu}'s {fault}: CPU {cpu} runs without a steal clock from now on (held at {} ns); other CPUs keep theirs",
                        self.last_ns.load(Ordering::Acquire)
                    );
                }
                self.last_ns.load(Ordering::Acquire)
            }
        }
    }
}

/// Ticks in a row on which a running vCPU must read its own preempted flag
/// set before [`PreemptedGuard`] stops believing the host's flag.
pub const PREEMPTED_STUCK_TICKS: u32 = 2;

/// One CPU's preempted flag as the kernel sees it. The host sets the flag
/// only while the vCPU is off its CPU and clears it before the vCPU runs
/// again (KVM at its next steal-time update), so it is a hint about other
/// CPUs that may be stale by the time it is read, and a running vCPU
/// reading its own flag set is a host fault. [`PreemptedGuard::check_own`],
/// at each tick of the CPU, catches that: after
/// [`PREEMPTED_STUCK_TICKS`] ticks in a row the CPU's flag is "the host
/// does not say" for good, reported once in a line naming the CPU.
pub struct PreemptedGuard {
    set_ticks: AtomicU32,
    ignored: AtomicBool,
}

impl Default for PreemptedGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl PreemptedGuard {
    pub const fn new() -> Self {
        Self {
            set_ticks: AtomicU32::new(0),
            ignored: AtomicBool::new(false),
        }
    }

    /// The flag of this guard's CPU, from any CPU: `read` reads the host's
    /// record (`None`: the host does not say), unless it proved false.
    pub fn read(&self, read: impl FnOnce() -> Option<bool>) -> Option<bool> {
        if self.ignored.load(Ordering::Relaxed) {
            return None;
        }
        read()
    }

    /// At a tick of `cpu` itself, which is running: `own` is its flag as
    /// the host wrote it. True once the flag is ignored from now on.
    pub fn check_own(&self, cpu: usize, own: Option<bool>) -> bool {
        if self.ignored.load(Ordering::Relaxed) {
            return true;
        }
        if own != Some(true) {
            self.set_ticks.store(0, Ordering::Relaxed);
            return false;
        }
        let ticks = self.set_ticks.fetch_add(1, Ordering::Relaxed) + 1;
        if ticks < PREEMPTED_STUCK_TICKS {
            return false;
        }
        if !self.ignored.swap(true, Ordering::Relaxed) {
            log::warn!(
                "pv: CPU {cpu}'s preempted flag reads 1 while CPU {cpu} runs ({ticks} ticks in a row): the host's flag for CPU {cpu} is ignored from now on (native: never preempted); other CPUs keep theirs"
            );
        }
        true
    }
}

#[cfg(test)]
mod steal_tests {
    use super::*;

    const ORIGIN: StealOrigin = StealOrigin {
        clock_ns: 1_000,
        at_ns: 50_000_000,
    };

    #[test]
    fn a_true_clock_passes() {
        assert_eq!(judge_steal(ORIGIN, 1_000, 1_000, 50_000_000), Ok(1_000));
        // All of the time since registration stolen, and the slack.
        let now = 150_000_000;
        let all = 1_000 + 100_000_000 + STEAL_SLACK_NS;
        assert_eq!(judge_steal(ORIGIN, 1_000, all, now), Ok(all));
        assert_eq!(judge_steal(ORIGIN, all, all, now), Ok(all), "unchanged");
    }

    #[test]
    fn backwards_is_refused() {
        assert_eq!(
            judge_steal(ORIGIN, 2_000_000, 1_000_000, 90_000_000),
            Err(StealFault::Backwards {
                last_ns: 2_000_000,
                clock_ns: 1_000_000
            })
        );
        let e = judge_steal(ORIGIN, 2_000, 1_999, 90_000_000).unwrap_err();
        assert!(matches!(e, StealFault::Backwards { .. }));
    }

    #[test]
    fn the_guard_holds_a_false_clock_for_good() {
        let g = StealGuard::new();
        g.start(50_000_000, 1_000);
        let at = |ns: u64| move || ns;
        assert_eq!(g.read(1, || Some(2_000), at(60_000_000)), 2_000);
        assert_eq!(g.read(1, || None, at(60_000_000)), 2_000, "no reading");
        // Backwards: held at the last good reading, even when the clock
        // recovers.
        assert_eq!(g.read(1, || Some(1_500), at(61_000_000)), 2_000);
        assert_eq!(g.read(1, || Some(9_000), at(62_000_000)), 2_000);
        let g = StealGuard::new();
        g.start(0, 0);
        assert_eq!(g.read(2, || Some(u64::MAX / 2), at(1_000)), 0, "ahead");
        assert_eq!(g.read(2, || Some(10), at(1_000_000_000)), 0);
    }

    #[test]
    fn a_preempted_flag_set_while_its_cpu_runs_is_ignored_for_good() {
        let g = PreemptedGuard::new();
        assert_eq!(g.read(|| Some(true)), Some(true), "another CPU's hint");
        // One tick with the own flag set (a host between its writes), then
        // clear: believed still.
        assert!(!g.check_own(3, Some(true)));
        assert!(!g.check_own(3, Some(false)));
        assert!(!g.check_own(3, Some(true)));
        assert!(!g.check_own(3, None));
        assert_eq!(g.read(|| Some(true)), Some(true));
        // Set on PREEMPTED_STUCK_TICKS ticks in a row: ignored from then on.
        for tick in 1..=PREEMPTED_STUCK_TICKS {
            assert_eq!(g.check_own(3, Some(true)), tick == PREEMPTED_STUCK_TICKS);
        }
        assert_eq!(g.read(|| Some(true)), None);
        assert!(g.check_own(3, Some(false)), "for good");
        assert_eq!(g.read(|| Some(false)), None);
    }

    #[test]
    fn more_steal_than_time_is_refused() {
        const HOURS: u64 = 3 * 3_600_000_000_000;
        let e = judge_steal(ORIGIN, 1_000, 1_000 + HOURS, 1_050_000_000).unwrap_err();
        assert_eq!(
            e,
            StealFault::Ahead {
                stolen_ns: HOURS,
                elapsed_ns: 1_000_000_000
            }
        );
        let just_over = 1_000 + 100_000_000 + STEAL_SLACK_NS + 1;
        assert!(judge_steal(ORIGIN, 1_000, just_over, 150_000_000).is_err());
        // A `now` before the origin (another CPU's clock read early) gives
        // no time at all, only the slack.
        assert!(judge_steal(ORIGIN, 1_000, 1_000 + STEAL_SLACK_NS, 0).is_ok());
    }
}
