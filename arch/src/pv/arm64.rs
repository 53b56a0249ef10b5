//! The arm64 probe, as pure logic over an [`Smccc`] conduit.
//!
//! The order is the one `docs/abi.md` prescribes, and no step is skipped:
//!
//! 1. PSCI >= 1.0, then `PSCI_FEATURES(SMCCC_VERSION)`; NOT_SUPPORTED means
//!    SMCCC 1.0: stop. (A machine without EL2 treats any non-PSCI HVC as
//!    UNDEFINED, so nothing else may be issued before this says yes.)
//! 2. `SMCCC_VERSION` >= 1.1.
//! 3. `SMCCC_ARCH_FEATURES(f)` before any function `f`.
//! 4. The vendor UID before any vendor (owner 6) call; PV lock needs KVM's.
//!
//! PV lock v3's ID (0x8600_0001) is KVM PTP upstream: it is never issued
//! unless `pv.lock=v3` asks for it.

use crate::abi::arm64::*;

use super::Hypervisor;
use super::{note, LockChoice, Note, PvReport, PvSwitches, State};

/// One SMCCC call on the platform's conduit: x0 = function, x1 = argument;
/// returns x0..x3.
pub trait Smccc {
    fn call(&mut self, function: u32, arg: u64) -> [u64; 4];
}

/// Whether the report should show a call's first argument.
pub fn takes_argument(function: u32) -> bool {
    matches!(
        function,
        PSCI_FEATURES
            | SMCCC_ARCH_FEATURES
            | PV_TIME_FEATURES
            | PV_LOCK_FEATURES
            | PV_LOCK_V3
            | PV_SCHED_FEATURES
    )
}

/// The PV lock ABI in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockAbi {
    V2,
    V3,
}

/// What each CPU must register, decided by [`probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Plan {
    /// Ask PV_TIME_ST for the stolen-time record.
    pub time: bool,
    /// Ask for the PV lock preempted record.
    pub lock: Option<LockAbi>,
    /// Register a PV sched record (IPA_INIT).
    pub sched: bool,
    /// PV_SCHED_IPA_RELEASE is offered.
    pub sched_release: bool,
    /// PV_SCHED_KICK_CPU is offered.
    pub sched_kick: bool,
    /// SMCCC >= 1.1 answered on this conduit: every function ID gets an
    /// answer (NOT_SUPPORTED at worst), so a raw call may be issued.
    pub smccc_1_1: bool,
}

/// Issues a call and logs it in the report.
fn call(hv: &mut impl Smccc, report: &mut PvReport, function: u32, arg: u64) -> i64 {
    report.calls.record(function, arg);
    hv.call(function, arg)[0] as i64
}

fn not_probed(report: &mut PvReport, why: &str) {
    for name in ["time", "lock", "sched"] {
        report.set(name, State::NotProbed, note(format_args!("{why}")));
    }
}

/// Probes the host. `psci` is PSCI_VERSION as (major, minor).
pub fn probe(hv: &mut impl Smccc, psci: (u16, u16), switches: &PvSwitches) -> (PvReport, Plan) {
    let (mut report, plan) = probe_host(hv, psci, switches);
    report.set(
        "ipi",
        State::NotApplicable,
        note(format_args!("no PV IPI on arm64")),
    );
    (report, plan)
}

fn probe_host(hv: &mut impl Smccc, psci: (u16, u16), switches: &PvSwitches) -> (PvReport, Plan) {
    let mut plan = Plan::default();
    if !switches.enabled {
        let mut report = PvReport::new(
            Hypervisor::NotProbed,
            note(format_args!("pv=off: no hypercall issued")),
        );
        for name in ["time", "lock", "sched"] {
            report.set(name, State::SwitchedOff, note(format_args!("pv=off")));
        }
        return (report, plan);
    }
    let mut report = PvReport::new(Hypervisor::None, Note::new());

    // 1. SMCCC 1.1 can only be asked about through PSCI >= 1.0.
    if psci.0 < 1 {
        report.found = note(format_args!(
            "PSCI {}.{}: SMCCC 1.0 assumed",
            psci.0, psci.1
        ));
        not_probed(&mut report, "SMCCC 1.0");
        return (report, plan);
    }
    let r = call(hv, &mut report, PSCI_FEATURES, SMCCC_VERSION.into());
    if r < 0 {
        report.found = note(format_args!(
            "SMCCC 1.0: PSCI_FEATURES(SMCCC_VERSION) = {r}"
        ));
        not_probed(&mut report, "SMCCC 1.0");
        return (report, plan);
    }
    // 2.
    let version = call(hv, &mut report, SMCCC_VERSION, 0);
    if version < SMCCC_VERSION_1_1 as i64 {
        report.found = note(format_args!("SMCCC_VERSION = {version:#x} (< 1.1)"));
        not_probed(&mut report, "SMCCC < 1.1");
        return (report, plan);
    }
    let (major, minor) = (version >> 16, version & 0xffff);
    plan.smccc_1_1 = true;

    // 4. Who is it? The UID call is the one vendor call allowed before the UID.
    let uid = hv.call(VENDOR_HYP_CALL_UID, 0);
    report.calls.record(VENDOR_HYP_CALL_UID, 0);
    let uid32 = uid.map(|w| w as u32);
    let kvm = uid32 == KVM_UID && uid.iter().all(|&w| w >> 32 == 0);
    let mut kvm_features = 0;
    if kvm {
        report.hypervisor = Hypervisor::Kvm;
        kvm_features = call(hv, &mut report, VENDOR_HYP_KVM_FEATURES, 0) as u64;
        report.found = note(format_args!(
            "SMCCC {major}.{minor}, KVM vendor UID, features {kvm_features:#x}"
        ));
    } else {
        report.hypervisor = if uid[0] as i64 == NOT_SUPPORTED {
            Hypervisor::None
        } else {
            Hypervisor::Unknown
        };
        report.found = note(format_args!(
            "SMCCC {major}.{minor}, vendor UID {:08x}-{:08x}-{:08x}-{:08x}",
            uid32[0], uid32[1], uid32[2], uid32[3]
        ));
    }

    probe_time(hv, &mut report, &mut plan, switches);
    probe_lock(hv, &mut report, &mut plan, switches, kvm, kvm_features);
    probe_sched(hv, &mut report, &mut plan, switches);
    (report, plan)
}

/// Judges a feature query's answer `r` to `asked`: 0 is yes; an SMCCC error
/// code is no (not offered); anything else is nonsense, no answer a host
/// that follows SMCCC gives (for these functions no positive answer is
/// defined), so nothing it seems to offer can be trusted (unusable).
pub fn feature_answer(asked: core::fmt::Arguments<'_>, r: i64) -> Result<(), (State, Note)> {
    match r {
        SUCCESS => Ok(()),
        NOT_SUPPORTED | NOT_REQUIRED | INVALID_PARAMETER => {
            Err((State::NotOffered, note(format_args!("{asked} = {r}"))))
        }
        _ => Err((
            State::Unusable,
            note(format_args!("{asked} answered nonsense {:#x}", r as u64)),
        )),
    }
}

/// 3. `ARCH_FEATURES(function)`; `Err` unless it is implemented.
fn arch_features(
    hv: &mut impl Smccc,
    report: &mut PvReport,
    function: u32,
) -> Result<(), (State, Note)> {
    let r = call(hv, report, SMCCC_ARCH_FEATURES, function.into());
    feature_answer(format_args!("ARCH_FEATURES({function:#x})"), r)
}

fn probe_time(hv: &mut impl Smccc, report: &mut PvReport, plan: &mut Plan, switches: &PvSwitches) {
    if let Err((state, why)) = arch_features(hv, report, PV_TIME_FEATURES) {
        return report.set("time", state, why);
    }
    // ARCH_FEATURES says yes even when steal time is off: only this tells.
    let r = call(hv, report, PV_TIME_FEATURES, PV_TIME_ST.into());
    if let Err((state, why)) = feature_answer(format_args!("PV_TIME_FEATURES(PV_TIME_ST)"), r) {
        return report.set("time", state, why);
    }
    if !switches.time {
        return report.set(
            "time",
            State::SwitchedOff,
            note(format_args!("pv.time=off")),
        );
    }
    plan.time = true;
    report.set("time", State::Used, Note::new());
}

fn probe_lock(
    hv: &mut impl Smccc,
    report: &mut PvReport,
    plan: &mut Plan,
    switches: &PvSwitches,
    kvm: bool,
    kvm_features: u64,
) {
    if switches.lock == LockChoice::Off {
        return report.set(
            "lock",
            State::SwitchedOff,
            note(format_args!("pv.lock=off")),
        );
    }
    if !kvm {
        return report.set(
            "lock",
            State::NotProbed,
            note(format_args!("vendor calls need the KVM UID")),
        );
    }
    let ptp_hint = kvm_features & 1 << KVM_FEATURE_PTP != 0;
    if switches.lock == LockChoice::V3 {
        if let Err((state, why)) = arch_features(hv, report, PV_LOCK_V3) {
            return report.set("lock", state, why);
        }
        let r = call(hv, report, PV_LOCK_V3, PV_LOCK_V3_FEATURES);
        if let Err((state, why)) = feature_answer(format_args!("v3 FEATURES"), r) {
            return report.set("lock", state, why);
        }
        plan.lock = Some(LockAbi::V3);
        return report.set("lock", State::Used, note(format_args!("v3, pv.lock=v3")));
    }
    let v2 = arch_features(hv, report, PV_LOCK_FEATURES).and_then(|()| {
        let r = call(hv, report, PV_LOCK_FEATURES, PV_LOCK_PREEMPTED.into());
        feature_answer(format_args!("PV_LOCK_FEATURES(PREEMPTED)"), r)
    });
    match v2 {
        Ok(()) => {
            plan.lock = Some(LockAbi::V2);
            report.set("lock", State::Used, note(format_args!("v2")));
        }
        Err((State::NotOffered, mut why)) if ptp_hint => {
            use core::fmt::Write as _;
            let _ = write!(why, "; 0x86000001 is PTP here, v3 only with pv.lock=v3");
            report.set("lock", State::NotOffered, why);
        }
        Err((state, why)) => report.set("lock", state, why),
    }
}

fn probe_sched(hv: &mut impl Smccc, report: &mut PvReport, plan: &mut Plan, switches: &PvSwitches) {
    if let Err((state, why)) = arch_features(hv, report, PV_SCHED_FEATURES) {
        return report.set("sched", state, why);
    }
    // Each of the three asked; a nonsense answer to any of them makes the
    // whole ABI unusable (the first one is reported).
    let mut nonsense = None;
    let mut offered = |function: u32| {
        let r = call(hv, report, PV_SCHED_FEATURES, function.into());
        match feature_answer(format_args!("PV_SCHED_FEATURES({function:#x})"), r) {
            Ok(()) => true,
            Err((State::Unusable, why)) => {
                nonsense.get_or_insert(why);
                false
            }
            Err(_) => false,
        }
    };
    let init = offered(PV_SCHED_IPA_INIT);
    let release = offered(PV_SCHED_IPA_RELEASE);
    let kick = offered(PV_SCHED_KICK_CPU);
    if let Some(why) = nonsense {
        return report.set("sched", State::Unusable, why);
    }
    if !init {
        return report.set(
            "sched",
            State::NotOffered,
            note(format_args!("PV_SCHED_FEATURES(IPA_INIT) != 0")),
        );
    }
    if !switches.sched {
        return report.set(
            "sched",
            State::SwitchedOff,
            note(format_args!("pv.sched=off")),
        );
    }
    plan.sched = true;
    plan.sched_release = release;
    plan.sched_kick = kick;
    let kick_note = if kick { "with KICK_CPU" } else { "no KICK_CPU" };
    report.set("sched", State::Used, note(format_args!("{kick_note}")));
}

/// What one CPU's registration returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuRecords {
    /// IPA of the stolen-time record.
    pub time: Option<Result<u64, Note>>,
    /// IPA of the PV lock record.
    pub lock: Option<Result<u64, Note>>,
    /// PV_SCHED_IPA_INIT's outcome.
    pub sched: Option<Result<(), Note>>,
}

/// Checks an IPA a host returned for a 64-byte record. The record is host
/// memory the guest maps and reads, so the IPA must be 64-byte aligned,
/// inside what the kernel can map (`reach`: its identity map, which is
/// below [`IPA_LIMIT`]), and not memory the kernel already uses
/// (`kernel_memory`: its RAM): a record there would be host writes into
/// memory the kernel hands out. An aligned IPA inside `reach` where nothing
/// is cannot be told from a host region no FDT describes (KVM's `pvtime`)
/// without reading it, and is not caught here.
pub fn check_record_ipa(
    what: &str,
    r: u64,
    reach: u64,
    kernel_memory: impl Fn(u64) -> bool,
) -> Result<u64, Note> {
    let reach = reach.min(IPA_LIMIT);
    if (r as i64) < 0 {
        Err(note(format_args!("{what} = {}", r as i64)))
    } else if !r.is_multiple_of(RECORD_ALIGN) {
        Err(note(format_args!(
            "{what} = {r:#x}: misaligned (records are {RECORD_ALIGN}-byte aligned)"
        )))
    } else if r.saturating_add(RECORD_ALIGN) > reach {
        Err(note(format_args!(
            "{what} = {r:#x}: outside RAM, past what the kernel maps ({reach:#x})"
        )))
    } else if kernel_memory(r) || kernel_memory(r + RECORD_ALIGN - 1) {
        Err(note(format_args!(
            "{what} = {r:#x}: inside the guest's own RAM"
        )))
    } else {
        Ok(r)
    }
}

/// Registers the calling CPU with every feature of `plan`; `sched_record`
/// is the IPA of this CPU's guest-owned PV sched record.
/// `reach` and `kernel_memory` judge the host's record IPAs
/// ([`check_record_ipa`]).
pub fn register_cpu(
    hv: &mut impl Smccc,
    plan: &Plan,
    sched_record: u64,
    log: &mut PvReport,
    reach: u64,
    kernel_memory: impl Fn(u64) -> bool,
) -> CpuRecords {
    let mut out = CpuRecords::default();
    if plan.time {
        let r = hv.call(PV_TIME_ST, 0)[0];
        log.calls.record(PV_TIME_ST, 0);
        out.time = Some(check_record_ipa("PV_TIME_ST", r, reach, &kernel_memory));
    }
    if let Some(abi) = plan.lock {
        let r = match abi {
            LockAbi::V2 => {
                log.calls.record(PV_LOCK_PREEMPTED, 0);
                hv.call(PV_LOCK_PREEMPTED, 0)[0]
            }
            LockAbi::V3 => {
                log.calls.record(PV_LOCK_V3, PV_LOCK_V3_PREEMPTED);
                hv.call(PV_LOCK_V3, PV_LOCK_V3_PREEMPTED)[0]
            }
        };
        out.lock = Some(check_record_ipa(
            "PV_LOCK_PREEMPTED",
            r,
            reach,
            &kernel_memory,
        ));
    }
    if plan.sched {
        let r = call(hv, log, PV_SCHED_IPA_INIT, sched_record);
        out.sched = Some(match r {
            SUCCESS => Ok(()),
            r => Err(note(format_args!("PV_SCHED_IPA_INIT = {r}"))),
        });
    }
    out
}

/// Checks a stolen-time record before use.
pub fn check_time_record(record: &PvTimeRecord) -> Result<(), Note> {
    if record.revision != 0 || record.attributes != 0 {
        return Err(note(format_args!(
            "record revision {} attributes {:#x}, only 0/0 is known",
            record.revision, record.attributes
        )));
    }
    Ok(())
}

/// PSCI functions that only answer a question, by number (the low 16 bits,
/// the same in both calling conventions; PSCI 1.3, DEN0022). Every other
/// PSCI function changes the power state of a CPU or of the machine.
const PSCI_QUERIES: [u32; 9] = [
    psci::PSCI_VERSION & 0xffff,
    psci::PSCI_AFFINITY_INFO_32 & 0xffff,
    psci::PSCI_MIGRATE_INFO_TYPE & 0xffff,
    psci::PSCI_MIGRATE_INFO_UP_CPU_32 & 0xffff,
    psci::PSCI_FEATURES & 0xffff,
    psci::PSCI_NODE_HW_STATE_32 & 0xffff,
    psci::PSCI_STAT_RESIDENCY_32 & 0xffff,
    psci::PSCI_STAT_COUNT_32 & 0xffff,
    psci::PSCI_MEM_PROTECT_CHECK_RANGE_32 & 0xffff,
];

/// Why a raw call (`Arch::pv_raw_call`, for the hypercall fuzz app) must not
/// be issued, or `None` if it may. `kernel_memory(addr)`: whether `addr` is
/// memory the kernel uses. Refused, because a host that implements them
/// would act on them behind the kernel's back:
///
/// - every standard secure service (owner 4) but the PSCI queries: PSCI's
///   power calls (CPU_ON/OFF/SUSPEND, SYSTEM_OFF/RESET/SUSPEND, ...) start,
///   stop or suspend CPUs or the machine the kernel runs; SDEI registers
///   entry points; FF-A shares or donates memory;
/// - PV_SCHED_IPA_RELEASE: the kernel's PV sched registration would be gone
///   while the kernel still reads the record;
/// - PV_SCHED_IPA_INIT with a record that touches the kernel's memory: the
///   host would write its flag there (and the live registration would move).
///
/// The PV sched calls are matched in both conventions, in case a host takes
/// the SMC32 twin for the call. PV_TIME_ST and PV_LOCK_PREEMPTED are safe:
/// they return the host's records and register nothing; KICK_CPU at worst
/// ends a halt early, which every halt allows.
pub fn raw_call_refusal(
    function: u32,
    args: [u64; 3],
    kernel_memory: impl Fn(u64) -> bool,
) -> Option<&'static str> {
    let owner = (function >> 24) & 0x3f;
    if owner == 4 && !(is_psci_call(function) && PSCI_QUERIES.contains(&(function & 0xffff))) {
        return Some(
            "a standard secure service call (PSCI power, SDEI, FF-A) other than a PSCI query",
        );
    }
    match function | SMC64 {
        PV_SCHED_IPA_RELEASE => Some("PV_SCHED_IPA_RELEASE would drop the kernel's registration"),
        PV_SCHED_IPA_INIT => {
            let touches = |ipa: u64| {
                kernel_memory(ipa) || kernel_memory(ipa.saturating_add(RECORD_ALIGN - 1))
            };
            (touches(args[0]) || touches(args[0] & 0xffff_ffff))
                .then_some("PV_SCHED_IPA_INIT with a record in the kernel's memory")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::vec::Vec;

    const NS: u64 = NOT_SUPPORTED as u64;

    /// A simulated host: answers from a table keyed by (function, x1); any
    /// other call is NOT_SUPPORTED. Every call is logged.
    #[derive(Default)]
    struct FakeHost {
        answers: HashMap<(u32, u64), [u64; 4]>,
        log: Vec<(u32, u64)>,
    }

    impl FakeHost {
        fn answer(mut self, function: u32, arg: u64, x0: u64) -> Self {
            self.answers.insert((function, arg), [x0, 0, 0, 0]);
            self
        }
        fn uid(mut self, uid: [u32; 4]) -> Self {
            self.answers
                .insert((VENDOR_HYP_CALL_UID, 0), uid.map(u64::from));
            self
        }
        fn called(&self, function: u32) -> bool {
            self.log.iter().any(|&(f, _)| f == function)
        }
    }

    impl Smccc for FakeHost {
        fn call(&mut self, function: u32, arg: u64) -> [u64; 4] {
            self.log.push((function, arg));
            *self.answers.get(&(function, arg)).unwrap_or(&[NS, 0, 0, 0])
        }
    }

    /// Upstream KVM with steal time on, as measured under real KVM here.
    fn kvm_upstream() -> FakeHost {
        FakeHost::default()
            .answer(PSCI_FEATURES, SMCCC_VERSION.into(), 0)
            .answer(SMCCC_VERSION, 0, SMCCC_VERSION_1_1.into())
            .uid(KVM_UID)
            .answer(VENDOR_HYP_KVM_FEATURES, 0, 0b11) // features + PTP
            .answer(SMCCC_ARCH_FEATURES, PV_TIME_FEATURES.into(), 0)
            .answer(PV_TIME_FEATURES, PV_TIME_ST.into(), 0)
            .answer(PV_TIME_ST, 0, 0x090a_0000)
    }

    /// A patched host offering everything.
    fn kvm_patched() -> FakeHost {
        kvm_upstream()
            .answer(SMCCC_ARCH_FEATURES, PV_LOCK_FEATURES.into(), 0)
            .answer(PV_LOCK_FEATURES, PV_LOCK_PREEMPTED.into(), 0)
            .answer(PV_LOCK_PREEMPTED, 0, 0x090b_0000)
            .answer(SMCCC_ARCH_FEATURES, PV_SCHED_FEATURES.into(), 0)
            .answer(PV_SCHED_FEATURES, PV_SCHED_IPA_INIT.into(), 0)
            .answer(PV_SCHED_FEATURES, PV_SCHED_IPA_RELEASE.into(), 0)
            .answer(PV_SCHED_FEATURES, PV_SCHED_KICK_CPU.into(), 0)
            .answer(PV_SCHED_IPA_INIT, 0x4100_0040, 0)
    }

    /// Every rule of the probing order, checked on a call log.
    fn assert_probing_rules(log: &[(u32, u64)]) {
        let smccc_ok = log
            .iter()
            .position(|&(f, _)| f == SMCCC_VERSION)
            .unwrap_or(usize::MAX);
        let uid_at = log
            .iter()
            .position(|&(f, _)| f == VENDOR_HYP_CALL_UID)
            .unwrap_or(usize::MAX);
        for (i, &(f, arg)) in log.iter().enumerate() {
            if i < smccc_ok && f != SMCCC_VERSION {
                assert!(is_psci_call(f), "call {f:#x} before SMCCC_VERSION");
            }
            if is_vendor_hyp_call(f) && f != VENDOR_HYP_CALL_UID {
                assert!(i > uid_at, "vendor call {f:#x} before the UID");
            }
            // Every non-PSCI, non-SMCCC-arch function was asked about first.
            let arch = f == SMCCC_VERSION || f == SMCCC_ARCH_FEATURES || f == VENDOR_HYP_CALL_UID;
            if !is_psci_call(f) && !arch && f != VENDOR_HYP_KVM_FEATURES {
                let family = match f {
                    PV_TIME_FEATURES | PV_TIME_ST => PV_TIME_FEATURES,
                    PV_LOCK_FEATURES | PV_LOCK_PREEMPTED => PV_LOCK_FEATURES,
                    PV_SCHED_FEATURES..=PV_SCHED_KICK_CPU => PV_SCHED_FEATURES,
                    other => other,
                };
                assert!(
                    log[..i].contains(&(SMCCC_ARCH_FEATURES, family.into())),
                    "{f:#x}({arg:#x}) without ARCH_FEATURES({family:#x}) first"
                );
            }
        }
    }

    fn run(mut host: FakeHost, switches: PvSwitches) -> (PvReport, Plan, FakeHost) {
        let (report, plan) = probe(&mut host, (1, 1), &switches);
        assert_eq!(
            report.calls.calls.as_slice(),
            host.log.as_slice(),
            "the report lists every call"
        );
        assert_probing_rules(&host.log);
        (report, plan, host)
    }

    #[test]
    fn tcg_without_el2_stops_after_psci_features() {
        let host = FakeHost::default();
        let (report, plan, host) = run(host, PvSwitches::default());
        assert_eq!(report.hypervisor, Hypervisor::None);
        assert_eq!(host.log, [(PSCI_FEATURES, SMCCC_VERSION.into())]);
        assert_eq!(plan, Plan::default());
        assert_eq!(report.state("time"), Some(State::NotProbed));
        assert!(report.to_string().contains("SMCCC 1.0"), "{report}");
    }

    #[test]
    fn psci_0_2_never_asks_for_smccc() {
        let mut host = kvm_upstream();
        let (report, _) = probe(&mut host, (0, 2), &PvSwitches::default());
        assert!(host.log.is_empty());
        assert_eq!(report.hypervisor, Hypervisor::None);
    }

    #[test]
    fn smccc_1_0_stops_before_any_other_call() {
        let host = FakeHost::default()
            .answer(PSCI_FEATURES, SMCCC_VERSION.into(), 0)
            .answer(SMCCC_VERSION, 0, 0x1_0000);
        let (report, plan, host) = run(host, PvSwitches::default());
        assert_eq!(host.log.len(), 2);
        assert_eq!(plan, Plan::default());
        assert!(report.found.contains("< 1.1"), "{report}");
    }

    #[test]
    fn upstream_kvm_uses_pv_time_only() {
        let (report, plan, host) = run(kvm_upstream(), PvSwitches::default());
        assert_eq!(report.hypervisor, Hypervisor::Kvm);
        assert!(plan.time && plan.lock.is_none() && !plan.sched);
        assert!(report.uses("time"));
        assert_eq!(report.state("lock"), Some(State::NotOffered));
        assert_eq!(report.state("sched"), Some(State::NotOffered));
        // The PTP bit is set, yet 0x86000001 was never called.
        assert!(!host.called(PV_LOCK_V3));
        assert!(report.to_string().contains("PTP"), "{report}");
    }

    #[test]
    fn ptp_bit_without_v3_switch_never_calls_0x86000001() {
        let host = kvm_patched().answer(SMCCC_ARCH_FEATURES, PV_LOCK_V3.into(), 0);
        for lock in [LockChoice::Default, LockChoice::V2, LockChoice::Off] {
            let (_, _, host) = run(
                FakeHost {
                    answers: host.answers.clone(),
                    log: Vec::new(),
                },
                PvSwitches {
                    lock,
                    ..PvSwitches::default()
                },
            );
            assert!(!host.called(PV_LOCK_V3), "{lock:?}");
            assert!(
                !host.log.contains(&(SMCCC_ARCH_FEATURES, PV_LOCK_V3.into())),
                "{lock:?}"
            );
        }
    }

    #[test]
    fn v3_only_on_request() {
        let host = kvm_upstream()
            .answer(SMCCC_ARCH_FEATURES, PV_LOCK_V3.into(), 0)
            .answer(PV_LOCK_V3, PV_LOCK_V3_FEATURES, 0);
        let (report, plan, _) = run(
            host,
            PvSwitches {
                lock: LockChoice::V3,
                ..PvSwitches::default()
            },
        );
        assert_eq!(plan.lock, Some(LockAbi::V3));
        assert!(report.uses("lock"));
        // On upstream KVM (PTP answers ARCH_FEATURES NOT_SUPPORTED) v3 is refused.
        let (report, plan, _) = run(
            kvm_upstream(),
            PvSwitches {
                lock: LockChoice::V3,
                ..PvSwitches::default()
            },
        );
        assert_eq!(plan.lock, None);
        assert_eq!(report.state("lock"), Some(State::NotOffered));
    }

    #[test]
    fn unknown_vendor_uid_gets_no_vendor_call() {
        let host = kvm_patched().uid([1, 2, 3, 4]);
        let (report, plan, host) = run(host, PvSwitches::default());
        assert_eq!(report.hypervisor, Hypervisor::Unknown);
        assert!(!host.called(VENDOR_HYP_KVM_FEATURES));
        assert!(!host
            .log
            .iter()
            .any(|&(f, _)| is_vendor_hyp_call(f) && f != VENDOR_HYP_CALL_UID));
        assert_eq!(plan.lock, None);
        assert_eq!(report.state("lock"), Some(State::NotProbed));
        // Standard-service PV time is still probed (ARCH_FEATURES decides).
        assert!(plan.time);
    }

    #[test]
    fn patched_host_offers_everything() {
        let (report, plan, _) = run(kvm_patched(), PvSwitches::default());
        assert!(plan.time && plan.sched && plan.sched_kick && plan.sched_release);
        assert_eq!(plan.lock, Some(LockAbi::V2));
        for f in ["time", "lock", "sched"] {
            assert!(report.uses(f), "{f}: {report}");
        }
    }

    #[test]
    fn switches_turn_features_off() {
        let switches = PvSwitches {
            time: false,
            lock: LockChoice::Off,
            sched: false,
            ..PvSwitches::default()
        };
        let (report, plan, host) = run(kvm_patched(), switches);
        assert_eq!(
            plan,
            Plan {
                smccc_1_1: true,
                ..Plan::default()
            }
        );
        for f in ["time", "lock", "sched"] {
            assert_eq!(report.state(f), Some(State::SwitchedOff), "{f}");
        }
        assert!(!host.called(PV_LOCK_FEATURES));
    }

    #[test]
    fn pv_off_issues_no_call_at_all() {
        let mut host = kvm_patched();
        let (report, plan) = probe(
            &mut host,
            (1, 1),
            &PvSwitches {
                enabled: false,
                ..PvSwitches::default()
            },
        );
        assert!(host.log.is_empty() && report.calls.calls.is_empty());
        assert_eq!(plan, Plan::default());
        assert_eq!(report.hypervisor, Hypervisor::NotProbed);
    }

    #[test]
    fn steal_time_off_in_the_host() {
        // QEMU kvm-steal-time=off: ARCH_FEATURES still says yes.
        let host = kvm_upstream().answer(PV_TIME_FEATURES, PV_TIME_ST.into(), NS);
        let (report, plan, _) = run(host, PvSwitches::default());
        assert!(!plan.time);
        assert_eq!(report.state("time"), Some(State::NotOffered));
        assert!(
            report
                .to_string()
                .contains("PV_TIME_FEATURES(PV_TIME_ST) = -1"),
            "{report}"
        );
    }

    #[test]
    fn registration_checks_what_the_host_returns() {
        let (mut report, plan, mut host) = run(kvm_patched(), PvSwitches::default());
        let regs = register_cpu(&mut host, &plan, 0x4100_0040, &mut report, REACH, ram);
        assert_eq!(regs.time, Some(Ok(0x090a_0000)));
        assert_eq!(regs.lock, Some(Ok(0x090b_0000)));
        assert_eq!(regs.sched, Some(Ok(())));

        // PV_TIME_ST = -1 and an unaligned lock IPA are refused.
        let mut host =
            kvm_patched()
                .answer(PV_TIME_ST, 0, NS)
                .answer(PV_LOCK_PREEMPTED, 0, 0x090b_0008);
        let regs = register_cpu(&mut host, &plan, 0x4100_0040, &mut report, REACH, ram);
        assert!(regs.time.unwrap().unwrap_err().contains("= -1"));
        assert!(regs
            .lock
            .unwrap()
            .unwrap_err()
            .contains("= 0x90b0008: misaligned"));
    }

    const REACH: u64 = 1 << 39;
    fn ram(ipa: u64) -> bool {
        (0x4000_0000..0x5000_0000).contains(&ipa)
    }

    #[test]
    fn record_ipas_outside_reach_or_in_the_guests_ram_are_refused() {
        let check = |r| check_record_ipa("PV_TIME_ST", r, REACH, ram);
        assert_eq!(check(0x090a_0000), Ok(0x090a_0000));
        assert_eq!(check(0x5010_0040), Ok(0x5010_0040));
        assert_eq!(check(REACH - 64), Ok(REACH - 64));
        for (bad, why) in [
            (
                1 << 44,
                "PV_TIME_ST = 0x100000000000: outside RAM, past what the kernel maps (0x8000000000)",
            ),
            (REACH, "outside RAM"),
            (IPA_LIMIT, "outside RAM"),
            (0x4800_0000, "inside the guest's own RAM"),
            (0x3fff_ffc0 + 64, "inside the guest's own RAM"),
            (0x4fff_ffc0, "inside the guest's own RAM"),
            (0x5010_0048, "= 0x50100048: misaligned"),
            (NS, "PV_TIME_ST = -1"),
            (INVALID_PARAMETER as u64, "PV_TIME_ST = -3"),
        ] {
            let e = check(bad).unwrap_err();
            assert!(e.contains(why), "{bad:#x}: {e}");
        }
        // The reach never goes past the ABI's limit.
        assert!(check_record_ipa("x", IPA_LIMIT, u64::MAX, ram).is_err());
    }

    #[test]
    fn nonsense_feature_answers_make_the_abi_unusable() {
        let garbage = 0x7f3a_0000_1234_u64;
        let host = kvm_patched()
            .answer(SMCCC_ARCH_FEATURES, PV_TIME_FEATURES.into(), garbage)
            .answer(PV_LOCK_FEATURES, PV_LOCK_PREEMPTED.into(), -77i64 as u64)
            .answer(PV_SCHED_FEATURES, PV_SCHED_KICK_CPU.into(), 1);
        let (report, plan, host) = run(host, PvSwitches::default());
        assert!(!plan.time && plan.lock.is_none() && !plan.sched, "{plan:?}");
        for f in ["time", "lock", "sched"] {
            assert_eq!(report.state(f), Some(State::Unusable), "{f}: {report}");
        }
        let line = report.to_string();
        for part in [
            "time: unusable (ARCH_FEATURES(0xc5000020) answered nonsense 0x7f3a00001234)",
            "lock: unusable (PV_LOCK_FEATURES(PREEMPTED) answered nonsense 0xffffffffffffffb3)",
            "sched: unusable (PV_SCHED_FEATURES(0xc5000093) answered nonsense 0x1)",
        ] {
            assert!(line.contains(part), "{line}");
        }
        // Nothing was registered on the strength of a nonsense answer.
        assert!(!host.called(PV_TIME_ST) && !host.called(PV_LOCK_PREEMPTED));
        // Error codes are still "not offered", with the code.
        let host = kvm_patched().answer(PV_LOCK_FEATURES, PV_LOCK_PREEMPTED.into(), NS);
        let (report, _, _) = run(host, PvSwitches::default());
        assert_eq!(report.state("lock"), Some(State::NotOffered));
        assert!(report
            .to_string()
            .contains("PV_LOCK_FEATURES(PREEMPTED) = -1"));
    }

    #[test]
    fn time_record_revision_and_attributes_must_be_zero() {
        assert!(check_time_record(&PvTimeRecord::default()).is_ok());
        let bad = PvTimeRecord {
            revision: 1,
            ..PvTimeRecord::default()
        };
        assert!(check_time_record(&bad).unwrap_err().contains("revision 1"));
        let bad = PvTimeRecord {
            attributes: 2,
            ..PvTimeRecord::default()
        };
        assert!(check_time_record(&bad).is_err());
    }

    #[test]
    fn raw_calls_only_after_smccc_1_1() {
        let (_, plan, _) = run(kvm_upstream(), PvSwitches::default());
        assert!(plan.smccc_1_1);
        let unknown_vendor = kvm_patched().uid([1, 2, 3, 4]);
        assert!(run(unknown_vendor, PvSwitches::default()).1.smccc_1_1);
        let smccc_1_0 = FakeHost::default().answer(PSCI_FEATURES, SMCCC_VERSION.into(), 0);
        assert!(!run(smccc_1_0, PvSwitches::default()).1.smccc_1_1);
        assert!(!run(FakeHost::default(), PvSwitches::default()).1.smccc_1_1);
    }

    #[test]
    fn raw_calls_that_would_pull_the_rug_are_refused() {
        let ram = |a: u64| (0x4000_0000..0x5000_0000).contains(&a);
        let refused = |f: u32, x1: u64| raw_call_refusal(f, [x1, 0, 0], ram).is_some();
        // PSCI: queries pass, power calls (both conventions) do not.
        for query in [
            0x8400_0000,
            PSCI_FEATURES,
            0xC400_0004,
            0x8400_0006,
            0x8400_0014,
        ] {
            assert!(!refused(query, 0), "{query:#x}");
        }
        for power in [
            0x8400_0001u32, // CPU_SUSPEND
            0xC400_0001,
            0x8400_0002, // CPU_OFF
            0x8400_0003, // CPU_ON
            0xC400_0003,
            0x8400_0005, // MIGRATE
            0x8400_0008, // SYSTEM_OFF
            0x8400_0009, // SYSTEM_RESET
            0x8400_000B, // CPU_FREEZE
            0xC400_000E, // SYSTEM_SUSPEND
            0x8400_0012, // SYSTEM_RESET2
            0x8400_0013, // MEM_PROTECT
            0xC400_0015, // SYSTEM_OFF2
            0x0400_0008, // yielding form
            0xC400_0021, // SDEI_EVENT_REGISTER
            0x8400_0063, // FF-A
        ] {
            assert!(refused(power, 0), "{power:#x}");
        }
        // PV sched: a record in the kernel's memory or a release, in either
        // convention; a record elsewhere, or a record straddling into RAM.
        assert!(refused(PV_SCHED_IPA_INIT, 0x4000_0040));
        assert!(refused(PV_SCHED_IPA_INIT, 0x4fff_fff3));
        assert!(refused(PV_SCHED_IPA_INIT, 0x3fff_ffe1), "ends in RAM");
        assert!(refused(PV_SCHED_IPA_INIT & !SMC64, 0xdead_0000_4000_0040));
        assert!(
            refused(PV_SCHED_IPA_INIT, 0xdead_0000_4000_0040),
            "its low half"
        );
        assert!(!refused(PV_SCHED_IPA_INIT, 0x5000_0000));
        assert!(!refused(PV_SCHED_IPA_INIT, 0x3fff_ff80));
        assert!(!refused(PV_SCHED_IPA_INIT, u64::MAX));
        assert!(refused(PV_SCHED_IPA_RELEASE, 0));
        assert!(refused(PV_SCHED_IPA_RELEASE & !SMC64, 0));
        // The rest goes through, unknown IDs included.
        for f in [
            PV_TIME_ST,
            PV_LOCK_PREEMPTED,
            PV_SCHED_KICK_CPU,
            VENDOR_HYP_CALL_UID,
            SMCCC_ARCH_FEATURES,
            PV_LOCK_V3,
            0,
            u32::MAX,
            0xC400_0050, // TRNG
        ] {
            let expect_refused = (f >> 24) & 0x3f == 4;
            assert_eq!(refused(f, 0x4000_0000), expect_refused, "{f:#x}");
        }
    }
}
