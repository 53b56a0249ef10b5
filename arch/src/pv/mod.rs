//! Paravirtualisation: what the boot switches ask for, what the probes
//! found, and the probe logic itself, kept free of hardware access so it is
//! unit-tested against simulated hosts. The architecture modules supply the
//! real hypercalls and map the records; the kernel's `pv` view reads the
//! result.

use core::fmt::{self, Write as _};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use heapless::{String, Vec};

pub mod arm64;
pub mod loongarch;

/// What the kernel wants of PV help for its locks (`pv.lock=`).
///
/// The kernel itself needs only on or off ([`LockChoice::wanted`]): the
/// halt-and-kick slow path, or native spinning. The host's preempted hints
/// follow it, and each architecture maps "on" to its own ABI: arm64 to PV
/// lock v2, or the generation named ([`arm64::lock_abi`]); LoongArch to the
/// PREEMPT flag in the steal-time record, whatever is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockChoice {
    /// Native spinning; no preempted hint is asked for (`pv.lock=off`).
    Off,
    /// Halt-and-kick, with the hints each architecture probes for by
    /// default (no `pv.lock=`).
    Auto,
    /// Halt-and-kick, with the hint ABI the user named (`pv.lock=v2|v3`).
    /// The names are arm64's ABI generations; an architecture without
    /// generations takes this as [`LockChoice::Auto`].
    Named(arm64::LockAbi),
}

impl LockChoice {
    /// The values `pv.lock=` takes.
    pub const VALUES: &'static str = "off|v2|v3";

    /// Parses a `pv.lock=` value.
    pub fn from_arg(value: &str) -> Option<Self> {
        match value {
            "off" => Some(LockChoice::Off),
            name => arm64::LockAbi::from_name(name).map(LockChoice::Named),
        }
    }

    /// Whether the kernel wants PV help for its locks at all.
    pub const fn wanted(self) -> bool {
        !matches!(self, LockChoice::Off)
    }
}

#[cfg(test)]
mod lock_choice_tests {
    use super::arm64::LockAbi;
    use super::LockChoice;

    #[test]
    fn every_listed_value_parses_and_nothing_else() {
        for value in LockChoice::VALUES.split('|') {
            assert!(LockChoice::from_arg(value).is_some(), "{value}");
        }
        assert_eq!(LockChoice::from_arg("off"), Some(LockChoice::Off));
        assert_eq!(
            LockChoice::from_arg("v3"),
            Some(LockChoice::Named(LockAbi::V3))
        );
        for value in ["on", "auto", "V2", "v4", ""] {
            assert_eq!(LockChoice::from_arg(value), None, "{value}");
        }
    }

    #[test]
    fn only_off_is_unwanted() {
        assert!(!LockChoice::Off.wanted());
        assert!(LockChoice::Auto.wanted());
        assert!(LockChoice::Named(LockAbi::V2).wanted());
    }
}

/// The boot switches (`pv=`, `pv.time=`, `pv.lock=`, `pv.sched=`, `pv.ipi=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PvSwitches {
    /// `pv=off` turns everything off: not even a probe is issued.
    pub enabled: bool,
    pub time: bool,
    pub lock: LockChoice,
    pub sched: bool,
    pub ipi: bool,
}

impl Default for PvSwitches {
    fn default() -> Self {
        Self {
            enabled: true,
            time: true,
            lock: LockChoice::Auto,
            sched: true,
            ipi: true,
        }
    }
}

/// Who the host is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hypervisor {
    /// No hypervisor interface found (bare metal, TCG, or SMCCC 1.0).
    None,
    /// KVM, by its vendor UID or signature.
    Kvm,
    /// A hypervisor that is not KVM (arm64: another vendor UID).
    Unknown,
    /// Not probed (`pv=off`).
    NotProbed,
}

/// What became of one PV feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// In use.
    Used,
    /// Offered, and turned off by a boot switch.
    SwitchedOff,
    /// The host does not offer it.
    NotOffered,
    /// Offered, but what the host returned cannot be used.
    Unusable,
    /// Not asked about: an earlier probing step ruled it out.
    NotProbed,
    /// The ABI does not exist on this architecture.
    NotApplicable,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Used => "used",
            State::SwitchedOff => "off",
            State::NotOffered => "not offered",
            State::Unusable => "unusable",
            State::NotProbed => "not probed",
            State::NotApplicable => "n/a",
        }
    }
}

/// Short free text in a report.
pub type Note = String<96>;

/// One CPU's fallback: up to three features with a [`Note`] each.
pub type FallbackLine = String<320>;

/// Builds a [`Note`], cutting what does not fit.
pub fn note(args: fmt::Arguments<'_>) -> Note {
    let mut n = Note::new();
    let _ = n.write_fmt(args);
    n
}

/// A PV feature the report speaks of (its name in the `pv:` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvFeature {
    /// A steal clock (arm64 PV time, LoongArch STEAL_TIME).
    Time,
    /// arm64 PV lock (v2 or v3 preempted flags).
    Lock,
    /// arm64 PV sched (preempted flags, KICK_CPU).
    Sched,
    /// LoongArch's multicast PV IPI.
    Ipi,
    /// LoongArch's preempted flag in the steal-time record.
    Preempt,
}

impl PvFeature {
    /// The name in the `pv:` line.
    pub const fn name(self) -> &'static str {
        match self {
            PvFeature::Time => "time",
            PvFeature::Lock => "lock",
            PvFeature::Sched => "sched",
            PvFeature::Ipi => "ipi",
            PvFeature::Preempt => "preempt",
        }
    }
}

impl fmt::Display for PvFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One feature's line in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    pub name: PvFeature,
    pub state: State,
    /// Why (for anything but `Used`) or what (for `Used`).
    pub why: Note,
}

/// The most hypercalls a report lists.
pub const CALL_LOG_LEN: usize = 32;

/// The hypercalls the probes issued, in order: (function, first argument).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallLog {
    pub calls: Vec<(u32, u64), CALL_LOG_LEN>,
    /// Calls past [`CALL_LOG_LEN`].
    pub dropped: usize,
}

impl CallLog {
    pub fn record(&mut self, function: u32, arg: u64) {
        if self.calls.push((function, arg)).is_err() {
            self.dropped += 1;
        }
    }
}

/// Everything the probes found, for the boot report and the kernel's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvReport {
    pub hypervisor: Hypervisor,
    /// How the hypervisor was (not) identified, e.g. "SMCCC 1.1, KVM UID".
    pub found: Note,
    pub features: Vec<Feature, 6>,
    pub calls: CallLog,
}

impl PvReport {
    pub fn new(hypervisor: Hypervisor, found: Note) -> Self {
        Self {
            hypervisor,
            found,
            features: Vec::new(),
            calls: CallLog::default(),
        }
    }

    /// Sets (or adds) feature `name`.
    pub fn set(&mut self, name: PvFeature, state: State, why: Note) {
        if let Some(f) = self.features.iter_mut().find(|f| f.name == name) {
            f.state = state;
            f.why = why;
        } else {
            let _ = self.features.push(Feature { name, state, why });
        }
    }

    /// The state of feature `name`.
    pub fn state(&self, name: PvFeature) -> Option<State> {
        self.features
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.state)
    }

    /// Whether feature `name` is in use.
    pub fn uses(&self, name: PvFeature) -> bool {
        self.state(name) == Some(State::Used)
    }
}

impl fmt::Display for PvReport {
    /// One line: hypervisor, then each feature with its state and reason.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hv = match self.hypervisor {
            Hypervisor::None => "none",
            Hypervisor::Kvm => "KVM",
            Hypervisor::Unknown => "unknown",
            Hypervisor::NotProbed => "not probed",
        };
        write!(f, "hypervisor {hv} ({})", self.found)?;
        for feature in &self.features {
            write!(f, "; {}: {}", feature.name, feature.state.name())?;
            if !feature.why.is_empty() {
                write!(f, " ({})", feature.why)?;
            }
        }
        Ok(())
    }
}

/// Why a CPU runs some PV features native: each failed feature with its
/// reason, then what the CPU keeps, as in `time native (PV_TIME_ST = -1);
/// keeps lock, sched`. Empty when nothing failed.
pub fn fallback_note(failed: &[(PvFeature, &str)], kept: &[PvFeature]) -> FallbackLine {
    let mut n = FallbackLine::new();
    for (i, (name, why)) in failed.iter().enumerate() {
        let sep = if i == 0 { "" } else { "; " };
        let _ = write!(n, "{sep}{name} native ({why})");
    }
    if !failed.is_empty() {
        let _ = n.write_str("; keeps ");
        if kept.is_empty() {
            let _ = n.write_str("no PV");
        }
        for (i, name) in kept.iter().enumerate() {
            let _ = write!(n, "{}{name}", if i == 0 { "" } else { ", " });
        }
    }
    n
}

#[cfg(test)]
mod fallback_tests {
    use super::{fallback_note, PvFeature};

    #[test]
    fn one_line_names_each_fallback_and_what_is_kept() {
        assert_eq!(fallback_note(&[], &[PvFeature::Time]).as_str(), "");
        assert_eq!(
            fallback_note(
                &[(PvFeature::Time, "PV_TIME_ST = -1")],
                &[PvFeature::Lock, PvFeature::Sched]
            )
            .as_str(),
            "time native (PV_TIME_ST = -1); keeps lock, sched"
        );
        assert_eq!(
            fallback_note(&[(PvFeature::Time, "a"), (PvFeature::Sched, "b")], &[]).as_str(),
            "time native (a); sched native (b); keeps no PV"
        );
    }
}

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

/// Writes the call log as `0x84000000, 0x8400000a(0x80000000), ...`
/// (the argument shown where the call takes one); LoongArch entries as
/// `cpucfg 0x40000000, hvcl NOTIFY(0x4)` (see [`loongarch::write_call`]).
pub struct CallList<'a>(pub &'a CallLog);

impl fmt::Display for CallList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.calls.is_empty() {
            return f.write_str("none");
        }
        for (i, (function, arg)) in self.0.calls.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if loongarch::is_loongarch_entry(*function) {
                loongarch::write_call(f, *function, *arg)?;
                continue;
            }
            write!(f, "{function:#x}")?;
            if *arg != 0 || arm64::takes_argument(*function) {
                write!(f, "({arg:#x})")?;
            }
        }
        if self.0.dropped > 0 {
            write!(f, " and {} more", self.0.dropped)?;
        }
        Ok(())
    }
}

/// The registers of one raw hypercall ([`crate::Pv::pv_raw_call`]), in the
/// host's convention: arm64 SMCCC x0..x5 (x0 the function ID, in w0; x1..x3
/// its arguments, x4 and x5 not passed; x0..x3 back, the rest 0),
/// LoongArch `hvcl 0x100` a0..a5 (a0 the function; a0..a5 back, the ABI
/// clobbers only a0).
pub type RawRegs = [u64; 6];

/// Which convention [`RawRegs`] follow here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawConvention {
    /// Arm's SMC Calling Convention, on the conduit the FDT names.
    Smccc,
    /// LoongArch KVM's `hvcl 0x100`.
    Hvcl,
}

/// Why [`crate::Pv::pv_raw_call`] issued no call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawCallError {
    /// No conduit here is known to answer any function ID: the probe found
    /// no SMCCC >= 1.1 (on a machine without EL2 an unknown HVC is
    /// UNDEFINED), `pv=off` forbade every call, or the architecture has no
    /// such convention (LoongArch's `hvcl` ABI is not SMCCC).
    Unavailable,
    /// A call that could take a CPU, the machine or memory away from the
    /// kernel; says which.
    Refused(&'static str),
}

/// A set of logical CPUs: one bit per CPU, for every CPU the kernel supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuMask([u64; CPU_MASK_WORDS]);

const CPU_MASK_WORDS: usize = crate::MAX_CPUS.div_ceil(64);

impl CpuMask {
    /// This set and `cpu` (ignored past [`crate::MAX_CPUS`]).
    pub fn with(mut self, cpu: usize) -> Self {
        if let Some(word) = self.0.get_mut(cpu / 64) {
            *word |= 1 << (cpu % 64);
        }
        self
    }
    pub fn contains(self, cpu: usize) -> bool {
        self.0
            .get(cpu / 64)
            .is_some_and(|w| w & 1 << (cpu % 64) != 0)
    }
    /// The CPUs of the set, in increasing order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..crate::MAX_CPUS).filter(move |&c| self.contains(c))
    }
    pub fn is_empty(self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }
    pub fn count(self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
}

impl FromIterator<usize> for CpuMask {
    fn from_iter<I: IntoIterator<Item = usize>>(cpus: I) -> Self {
        cpus.into_iter().fold(Self::default(), Self::with)
    }
}

#[cfg(test)]
mod cpu_mask_tests {
    use super::CpuMask;
    use crate::MAX_CPUS;

    #[test]
    fn holds_every_cpu_the_kernel_supports() {
        assert_eq!(MAX_CPUS, 256);
        let edges = [0, 63, 64, 127, 128, 255];
        let mask: CpuMask = edges.into_iter().collect();
        assert_eq!(mask.iter().collect::<Vec<_>>(), edges);
        assert_eq!(mask.count(), edges.len());
        for cpu in 0..MAX_CPUS {
            assert_eq!(mask.contains(cpu), edges.contains(&cpu), "CPU {cpu}");
        }
    }

    #[test]
    fn ignores_cpus_past_the_maximum() {
        let mask = CpuMask::default().with(MAX_CPUS).with(usize::MAX / 2);
        assert!(mask.is_empty());
        assert!(!mask.contains(MAX_CPUS));
        let all: CpuMask = (0..MAX_CPUS).collect();
        assert_eq!(all.count(), MAX_CPUS);
    }
}
