//! The LoongArch probe and the pure parts of its PV features, as logic over a
//! [`LoongArchHost`], unit-tested against simulated hosts.
//!
//! The order is the one `docs/abi.md` prescribes, and no step is skipped:
//!
//! 1. IOCSR FEATURES bit 11 (hypervisor). Clear: stop. Nothing in the
//!    `cpucfg 0x4000_0000` range is read, and no `hvcl` is issued: without
//!    LVZ (QEMU TCG, bare metal) `hvcl` raises INE.
//! 2. `cpucfg 0x4000_0000` == "KVM\0". Anything else: stop.
//! 3. `cpucfg 0x4000_0004`, the feature word. A call is issued only for a
//!    feature it advertises: FUNC_NOTIFY(STEAL_TIME) needs STEAL_TIME,
//!    FUNC_IPI needs IPI; the preempted flag is read only with PREEMPT.
//!
//! With `pv=off` not even step 1 runs. The probe itself issues no `hvcl`:
//! the calls come from [`register_cpu`] / [`unregister_cpu`] (FUNC_NOTIFY)
//! and [`send_ipi`] (FUNC_IPI), which act only on what [`probe`] put in the
//! [`Plan`].
//!
//! Boot switches: `pv.time` governs the steal clock, `pv.ipi` the PV IPI.
//! The preempted flag is governed by `pv.lock`: LoongArch has no PV lock
//! ABI, and that flag is exactly what a lock's waiters consult (the arm64
//! PV lock ABI is nothing but a preempted flag), so `pv.lock=off` is what a
//! user turning "PV help for locks" off means: the flag is used when
//! [`super::LockChoice::wanted`]. LoongArch has no ABI generations, so one named
//! (`pv.lock=v2` / `v3`, arm64's) is "on" like the default. `pv.sched` has
//! nothing to govern.

use core::fmt;
use core::sync::atomic::{fence, Ordering};

pub mod raw;

use crate::abi::loongarch::*;

use super::{note, CallLog, Hypervisor, Note, PvFeature, PvReport, PvSwitches, State};

/// The guest's view of the host: the three things the probe and the calls
/// touch.
pub trait LoongArchHost {
    /// IOCSR [`IOCSR_FEATURES`].
    fn iocsr_features(&mut self) -> u64;
    /// `cpucfg index`.
    fn cpucfg(&mut self, index: u32) -> u32;
    /// `hvcl 0x100` with a0 = `function`, a1..a3; returns a0.
    fn hvcl(&mut self, function: u32, a1: u64, a2: u64, a3: u64) -> i64;
}

/// What the arch does, decided by [`probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Plan {
    /// Read the steal clock from each CPU's record.
    pub steal_clock: bool,
    /// Read the preempted flag from each CPU's record.
    pub preempt: bool,
    /// Send IPIs with FUNC_IPI.
    pub ipi: bool,
}

impl Plan {
    /// Whether each CPU registers a steal-time record (FUNC_NOTIFY): the
    /// preempted flag lives in it too.
    pub fn needs_record(&self) -> bool {
        self.steal_clock || self.preempt
    }
}

fn has(features: u32, bit: u32) -> bool {
    features & 1 << bit != 0
}

/// Reads a `cpucfg` word and logs it (as its index, argument 0).
fn cpucfg(host: &mut impl LoongArchHost, report: &mut PvReport, index: u32) -> u32 {
    report.calls.record(index, 0);
    host.cpucfg(index)
}

/// Probes the host as `switches` allow. Features are reported in arm64's
/// order (time, lock, sched, ipi), then `preempt`, so both read alike.
pub fn probe(host: &mut impl LoongArchHost, switches: &PvSwitches) -> (PvReport, Plan) {
    let (mut report, plan, [time, ipi, preempt]) = probe_host(host, switches);
    report.set(PvFeature::Time, time.0, time.1);
    report.set(
        PvFeature::Lock,
        State::NotApplicable,
        note(format_args!("no PV lock ABI on LoongArch; see preempt")),
    );
    report.set(
        PvFeature::Sched,
        State::NotApplicable,
        note(format_args!("no PV sched ABI on LoongArch")),
    );
    report.set(PvFeature::Ipi, ipi.0, ipi.1);
    report.set(PvFeature::Preempt, preempt.0, preempt.1);
    (report, plan)
}

type Outcome = (State, Note);

fn all(state: State, why: &str) -> [Outcome; 3] {
    core::array::from_fn(|_| (state, note(format_args!("{why}"))))
}

/// Steps 1-3; returns the outcome of time, ipi and preempt.
fn probe_host(
    host: &mut impl LoongArchHost,
    switches: &PvSwitches,
) -> (PvReport, Plan, [Outcome; 3]) {
    let mut plan = Plan::default();
    if !switches.enabled {
        let report = PvReport::new(
            Hypervisor::NotProbed,
            note(format_args!("pv=off: nothing probed")),
        );
        return (report, plan, all(State::SwitchedOff, "pv=off"));
    }

    // 1. The IOCSR read is no hypercall: it is not logged.
    if host.iocsr_features() & 1 << IOCSR_FEATURE_HYPERVISOR_BIT == 0 {
        let report = PvReport::new(
            Hypervisor::None,
            note(format_args!(
                "IOCSR FEATURES bit {IOCSR_FEATURE_HYPERVISOR_BIT} clear"
            )),
        );
        return (report, plan, all(State::NotProbed, "no hypervisor"));
    }

    // 2.
    let mut report = PvReport::new(Hypervisor::Unknown, Note::new());
    let signature = cpucfg(host, &mut report, CPUCFG_KVM_SIGNATURE);
    if signature != KVM_SIGNATURE {
        report.found = note(format_args!(
            "IOCSR FEATURES bit {IOCSR_FEATURE_HYPERVISOR_BIT} set, \
             cpucfg {CPUCFG_KVM_SIGNATURE:#x} = {signature:#x}: not KVM"
        ));
        return (report, plan, all(State::NotProbed, "not KVM"));
    }

    // 3.
    report.hypervisor = Hypervisor::Kvm;
    let features = cpucfg(host, &mut report, CPUCFG_KVM_FEATURES);
    report.found = note(format_args!(
        "IOCSR FEATURES bit {IOCSR_FEATURE_HYPERVISOR_BIT}, KVM signature, features {features:#x}"
    ));
    let steal_time = has(features, KVM_FEATURE_STEAL_TIME);

    let time = if !steal_time {
        not_in("STEAL_TIME", KVM_FEATURE_STEAL_TIME)
    } else if !switches.time {
        (State::SwitchedOff, note(format_args!("pv.time=off")))
    } else {
        plan.steal_clock = true;
        (State::Used, Note::new())
    };

    let preempt = if !has(features, KVM_FEATURE_PREEMPT) {
        not_in("PREEMPT", KVM_FEATURE_PREEMPT)
    } else if !steal_time {
        (
            State::Unusable,
            note(format_args!(
                "PREEMPT without STEAL_TIME: no record holds the flag"
            )),
        )
    } else if !switches.lock.wanted() {
        (State::SwitchedOff, note(format_args!("pv.lock=off")))
    } else {
        plan.preempt = true;
        (
            State::Used,
            note(format_args!("flag in the steal-time record")),
        )
    };

    let ipi = if !has(features, KVM_FEATURE_IPI) {
        not_in("IPI", KVM_FEATURE_IPI)
    } else if !switches.ipi {
        (State::SwitchedOff, note(format_args!("pv.ipi=off")))
    } else {
        plan.ipi = true;
        (
            State::Used,
            note(format_args!("FUNC_IPI multicast, received as SWI0")),
        )
    };
    (report, plan, [time, ipi, preempt])
}

fn not_in(name: &str, bit: u32) -> Outcome {
    (
        State::NotOffered,
        note(format_args!("{name} (bit {bit}) not in features")),
    )
}

/// Checks the physical address of a steal-time record before it is given to
/// the host.
pub fn check_record_pa(pa: u64) -> Result<u64, Note> {
    if pa & !STEAL_PHYS_MASK != 0 {
        return Err(note(format_args!(
            "steal-time record at PA {pa:#x} is not {STEAL_RECORD_ALIGN}-byte aligned"
        )));
    }
    Ok(pa)
}

/// Registers the calling CPU's steal-time record at physical address
/// `record_pa` with FUNC_NOTIFY, if the plan needs one (`None`: no call).
/// The call is logged in `log`.
pub fn register_cpu(
    host: &mut impl LoongArchHost,
    plan: &Plan,
    record_pa: u64,
    log: &mut CallLog,
) -> Option<Result<(), Note>> {
    if !plan.needs_record() {
        return None;
    }
    let pa = match check_record_pa(record_pa) {
        Ok(pa) => pa,
        Err(why) => return Some(Err(why)),
    };
    log.record(FUNC_NOTIFY, NOTIFY_STEAL_TIME);
    let r = host.hvcl(FUNC_NOTIFY, NOTIFY_STEAL_TIME, pa | STEAL_PHYS_VALID, 0);
    Some(match r {
        SUCCESS => Ok(()),
        NOT_IMPLEMENTED | INVALID_PARAMETER => {
            Err(note(format_args!("FUNC_NOTIFY(STEAL_TIME) = {r}")))
        }
        // Neither success nor an error KVM returns: whether the host took
        // the record is unknown; the CPU runs as if it had not.
        r => Err(note(format_args!(
            "FUNC_NOTIFY(STEAL_TIME) answered nonsense {:#x}",
            r as u64
        ))),
    })
}

/// Unregisters the calling CPU's record (FUNC_NOTIFY with a2 = 0), if the
/// plan registered one (`None`: no call).
pub fn unregister_cpu(host: &mut impl LoongArchHost, plan: &Plan) -> Option<Result<(), Note>> {
    if !plan.needs_record() {
        return None;
    }
    Some(match host.hvcl(FUNC_NOTIFY, NOTIFY_STEAL_TIME, 0, 0) {
        SUCCESS => Ok(()),
        r => Err(note(format_args!("FUNC_NOTIFY(STEAL_TIME, 0) = {r}"))),
    })
}

// --- The steal clock ---------------------------------------------------------

/// How many times [`read_steal_ns`] tries for a consistent read. The host
/// holds the version odd only for the few stores of one update, so a reader
/// that fails this often is facing a host that is stuck mid-update (or a
/// record it does not update): waiting longer would not help.
pub const STEAL_READ_TRIES: u32 = 100;

/// Reads the steal clock of a [`StealTimeRecord`] under its seqlock, through
/// `version` (reads the version field) and `steal_ns` (reads the steal
/// field):
///
/// ```text
///   host (writer)                  guest (this reader)
///   version += 1  (odd)            v1 = version
///   wmb                            rmb (Acquire fence)
///   steal += delta                 s = steal
///   wmb                            rmb (Acquire fence)
///   version += 1  (even)           v2 = version; retry unless v1 even && v1 == v2
/// ```
///
/// Returns `None` after [`STEAL_READ_TRIES`] inconsistent reads. The choice
/// of `None` over "the last value that looked stable": a value read while
/// the version was odd or moving may be one the host never committed. The
/// caller keeps the last consistent value it returned and answers with
/// that (see `loongarch64::pv`), which is never torn and keeps the clock
/// monotonic.
pub fn read_steal_ns(
    mut version: impl FnMut() -> u32,
    mut steal_ns: impl FnMut() -> u64,
) -> Option<u64> {
    for _ in 0..STEAL_READ_TRIES {
        let before = version();
        // Acquire: the version is read before the steal field (the host's
        // first wmb is its partner).
        fence(Ordering::Acquire);
        let steal = steal_ns();
        // Acquire: the steal field is read before the version again (the
        // host's second wmb is its partner).
        fence(Ordering::Acquire);
        let after = version();
        if before.is_multiple_of(2) && before == after {
            return Some(steal);
        }
        core::hint::spin_loop();
    }
    None
}

// --- PV IPI windows ----------------------------------------------------------

/// One FUNC_IPI: the targets `base_id + n` for every bit n of `bitmap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpiWindow {
    pub bitmap: u128,
    /// The lowest physical CPU id of the window (a3).
    pub base_id: u64,
}

impl IpiWindow {
    /// FUNC_IPI's (a1, a2, a3).
    pub fn args(&self) -> (u64, u64, u64) {
        (self.bitmap as u64, (self.bitmap >> 64) as u64, self.base_id)
    }

    /// The physical ids this window targets.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        (0..IPI_WINDOW_CPUS)
            .filter(|&n| self.bitmap & 1 << n != 0)
            .map(|n| self.base_id + n)
    }
}

/// Splits a set of physical CPU ids (any order, duplicates allowed; sorted in
/// place) into the fewest FUNC_IPI windows: each starts at the lowest id not
/// yet covered and takes every id below it + 128. (Greedy from the left is
/// optimal for covering points with fixed-length intervals: any cover needs a
/// window over the lowest id, and the one starting there covers the most
/// beyond it.)
pub fn ipi_windows(ids: &mut [u64]) -> impl Iterator<Item = IpiWindow> + '_ {
    ids.sort_unstable();
    let mut rest: &[u64] = ids;
    core::iter::from_fn(move || {
        let &base_id = rest.first()?;
        let mut bitmap = 0u128;
        while let Some((&id, tail)) = rest.split_first() {
            let n = id - base_id;
            if n >= IPI_WINDOW_CPUS {
                break;
            }
            bitmap |= 1 << n;
            rest = tail;
        }
        Some(IpiWindow { bitmap, base_id })
    })
}

/// Sends the IPI to the physical ids `ids` with FUNC_IPI, one call per
/// window, if the plan uses the PV IPI; returns false (issuing nothing)
/// otherwise. `refused(id)` is called for each id of a window the host
/// answered with an error (upstream KVM never does), so the caller can send
/// those the native way.
pub fn send_ipi(
    host: &mut impl LoongArchHost,
    plan: &Plan,
    ids: &mut [u64],
    mut refused: impl FnMut(u64),
) -> bool {
    if !plan.ipi {
        return false;
    }
    for window in ipi_windows(ids) {
        let (a1, a2, a3) = window.args();
        if host.hvcl(FUNC_IPI, a1, a2, a3) != SUCCESS {
            window.ids().for_each(&mut refused);
        }
    }
    true
}

// --- The boot report's call list -----------------------------------------------

/// Whether a call-log entry is a LoongArch one. SMCCC function IDs (all that
/// arm64 logs) are fast calls with bit 31 set; LoongArch entries are
/// `cpucfg` indexes in `0x4000_00xx` or small `hvcl` function numbers.
pub(super) fn is_loongarch_entry(function: u32) -> bool {
    function & 1 << 31 == 0
}

/// Writes one LoongArch call-log entry: `cpucfg 0x40000000`, `hvcl
/// NOTIFY(0x4)` (the function's name and a1).
pub(super) fn write_call(f: &mut fmt::Formatter<'_>, function: u32, arg: u64) -> fmt::Result {
    if (CPUCFG_KVM_BASE..CPUCFG_KVM_BASE + CPUCFG_KVM_SIZE).contains(&function) {
        return write!(f, "cpucfg {function:#x}");
    }
    match function {
        FUNC_IPI => write!(f, "hvcl IPI({arg:#x})"),
        FUNC_NOTIFY => write!(f, "hvcl NOTIFY({arg:#x})"),
        other => write!(f, "hvcl {other:#x}({arg:#x})"),
    }
}

#[cfg(test)]
mod tests;
