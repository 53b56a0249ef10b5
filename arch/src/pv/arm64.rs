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
use super::{note, LockChoice, Note, PvFeature, PvReport, PvSwitches, State};

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

/// An arm64 PV lock ABI generation: the one in use, or the one a user
/// names (`pv.lock=v2|v3`, [`LockChoice::Named`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockAbi {
    /// 0xC600_0020 (PV_LOCK_FEATURES) and 0xC600_0021 (PV_LOCK_PREEMPTED).
    V2,
    /// 0x8600_0001 only: PTP on upstream KVM, so used only when named.
    V3,
}

impl LockAbi {
    /// Its name in `pv.lock=`.
    pub const fn name(self) -> &'static str {
        match self {
            LockAbi::V2 => "v2",
            LockAbi::V3 => "v3",
        }
    }

    /// The generation `name` names.
    pub fn from_name(name: &str) -> Option<Self> {
        [LockAbi::V2, LockAbi::V3]
            .into_iter()
            .find(|abi| abi.name() == name)
    }
}

/// The PV lock ABI [`probe`] asks for under `choice`: none when off; v3
/// only when named (its ID is PTP upstream, so never probed), else v2.
pub fn lock_abi(choice: LockChoice) -> Option<LockAbi> {
    match choice {
        LockChoice::Off => None,
        LockChoice::Auto | LockChoice::Named(LockAbi::V2) => Some(LockAbi::V2),
        LockChoice::Named(LockAbi::V3) => Some(LockAbi::V3),
    }
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
    for name in [PvFeature::Time, PvFeature::Lock, PvFeature::Sched] {
        report.set(name, State::NotProbed, note(format_args!("{why}")));
    }
}

/// Probes the host. `psci` is PSCI_VERSION as (major, minor).
pub fn probe(hv: &mut impl Smccc, psci: (u16, u16), switches: &PvSwitches) -> (PvReport, Plan) {
    let (mut report, plan) = probe_host(hv, psci, switches);
    report.set(
        PvFeature::Ipi,
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
        for name in [PvFeature::Time, PvFeature::Lock, PvFeature::Sched] {
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
        return report.set(PvFeature::Time, state, why);
    }
    // ARCH_FEATURES says yes even when steal time is off: only this tells.
    let r = call(hv, report, PV_TIME_FEATURES, PV_TIME_ST.into());
    if let Err((state, why)) = feature_answer(format_args!("PV_TIME_FEATURES(PV_TIME_ST)"), r) {
        return report.set(PvFeature::Time, state, why);
    }
    if !switches.time {
        return report.set(
            PvFeature::Time,
            State::SwitchedOff,
            note(format_args!("pv.time=off")),
        );
    }
    plan.time = true;
    report.set(PvFeature::Time, State::Used, Note::new());
}

fn probe_lock(
    hv: &mut impl Smccc,
    report: &mut PvReport,
    plan: &mut Plan,
    switches: &PvSwitches,
    kvm: bool,
    kvm_features: u64,
) {
    let Some(abi) = lock_abi(switches.lock) else {
        return report.set(
            PvFeature::Lock,
            State::SwitchedOff,
            note(format_args!("pv.lock=off")),
        );
    };
    if !kvm {
        return report.set(
            PvFeature::Lock,
            State::NotProbed,
            note(format_args!("vendor calls need the KVM UID")),
        );
    }
    let ptp_hint = kvm_features & 1 << KVM_FEATURE_PTP != 0;
    if abi == LockAbi::V3 {
        if let Err((state, why)) = arch_features(hv, report, PV_LOCK_V3) {
            return report.set(PvFeature::Lock, state, why);
        }
        let r = call(hv, report, PV_LOCK_V3, PV_LOCK_V3_FEATURES);
        if let Err((state, why)) = feature_answer(format_args!("v3 FEATURES"), r) {
            return report.set(PvFeature::Lock, state, why);
        }
        plan.lock = Some(LockAbi::V3);
        return report.set(
            PvFeature::Lock,
            State::Used,
            note(format_args!("v3, pv.lock=v3")),
        );
    }
    let v2 = arch_features(hv, report, PV_LOCK_FEATURES).and_then(|()| {
        let r = call(hv, report, PV_LOCK_FEATURES, PV_LOCK_PREEMPTED.into());
        feature_answer(format_args!("PV_LOCK_FEATURES(PREEMPTED)"), r)
    });
    match v2 {
        Ok(()) => {
            plan.lock = Some(LockAbi::V2);
            report.set(PvFeature::Lock, State::Used, note(format_args!("v2")));
        }
        Err((State::NotOffered, mut why)) if ptp_hint => {
            use core::fmt::Write as _;
            let _ = write!(
                why,
                "; {PV_LOCK_V3:#x} is PTP here, v3 only with pv.lock=v3"
            );
            report.set(PvFeature::Lock, State::NotOffered, why);
        }
        Err((state, why)) => report.set(PvFeature::Lock, state, why),
    }
}

fn probe_sched(hv: &mut impl Smccc, report: &mut PvReport, plan: &mut Plan, switches: &PvSwitches) {
    if let Err((state, why)) = arch_features(hv, report, PV_SCHED_FEATURES) {
        return report.set(PvFeature::Sched, state, why);
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
        return report.set(PvFeature::Sched, State::Unusable, why);
    }
    if !init {
        return report.set(
            PvFeature::Sched,
            State::NotOffered,
            note(format_args!("PV_SCHED_FEATURES(IPA_INIT) != 0")),
        );
    }
    if !switches.sched {
        return report.set(
            PvFeature::Sched,
            State::SwitchedOff,
            note(format_args!("pv.sched=off")),
        );
    }
    plan.sched = true;
    plan.sched_release = release;
    plan.sched_kick = kick;
    let kick_note = if kick { "with KICK_CPU" } else { "no KICK_CPU" };
    report.set(
        PvFeature::Sched,
        State::Used,
        note(format_args!("{kick_note}")),
    );
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

/// Why a raw call (`Pv::pv_raw_call`, for the hypercall fuzz app) must not
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
    if owner(function) == OWNER_STANDARD_SECURE
        && !(is_psci_call(function) && PSCI_QUERIES.contains(&(function & 0xffff)))
    {
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
mod tests;
