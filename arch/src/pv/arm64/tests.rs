//! The arm64 probe, registration and raw-call rules against simulated
//! hosts.

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
    assert_eq!(report.state(PvFeature::Time), Some(State::NotProbed));
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
    assert!(report.uses(PvFeature::Time));
    assert_eq!(report.state(PvFeature::Lock), Some(State::NotOffered));
    assert_eq!(report.state(PvFeature::Sched), Some(State::NotOffered));
    // The PTP bit is set, yet PV_LOCK_V3 (0x8600_0001) was never called.
    assert!(!host.called(PV_LOCK_V3));
    assert!(report.to_string().contains("PTP"), "{report}");
}

#[test]
fn ptp_bit_without_v3_switch_never_calls_0x86000001() {
    let host = kvm_patched().answer(SMCCC_ARCH_FEATURES, PV_LOCK_V3.into(), 0);
    for lock in [
        LockChoice::Auto,
        LockChoice::Named(LockAbi::V2),
        LockChoice::Off,
    ] {
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
            lock: LockChoice::Named(LockAbi::V3),
            ..PvSwitches::default()
        },
    );
    assert_eq!(plan.lock, Some(LockAbi::V3));
    assert!(report.uses(PvFeature::Lock));
    // On upstream KVM (PTP answers ARCH_FEATURES NOT_SUPPORTED) v3 is refused.
    let (report, plan, _) = run(
        kvm_upstream(),
        PvSwitches {
            lock: LockChoice::Named(LockAbi::V3),
            ..PvSwitches::default()
        },
    );
    assert_eq!(plan.lock, None);
    assert_eq!(report.state(PvFeature::Lock), Some(State::NotOffered));
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
    assert_eq!(report.state(PvFeature::Lock), Some(State::NotProbed));
    // Standard-service PV time is still probed (ARCH_FEATURES decides).
    assert!(plan.time);
}

#[test]
fn patched_host_offers_everything() {
    let (report, plan, _) = run(kvm_patched(), PvSwitches::default());
    assert!(plan.time && plan.sched && plan.sched_kick && plan.sched_release);
    assert_eq!(plan.lock, Some(LockAbi::V2));
    for f in [PvFeature::Time, PvFeature::Lock, PvFeature::Sched] {
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
    for f in [PvFeature::Time, PvFeature::Lock, PvFeature::Sched] {
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
    assert_eq!(report.state(PvFeature::Time), Some(State::NotOffered));
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
    for f in [PvFeature::Time, PvFeature::Lock, PvFeature::Sched] {
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
    assert_eq!(report.state(PvFeature::Lock), Some(State::NotOffered));
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
        PSCI_VERSION,
        PSCI_FEATURES,
        psci::PSCI_AFFINITY_INFO_64,
        psci::PSCI_MIGRATE_INFO_TYPE,
        psci::PSCI_MEM_PROTECT_CHECK_RANGE_32,
    ] {
        assert!(!refused(query, 0), "{query:#x}");
    }
    for power in [
        psci::PSCI_CPU_SUSPEND_32,
        psci::PSCI_CPU_SUSPEND_64,
        psci::PSCI_CPU_OFF,
        psci::PSCI_CPU_ON_32,
        psci::PSCI_CPU_ON_64,
        psci::PSCI_MIGRATE_32,
        psci::PSCI_SYSTEM_OFF,
        psci::PSCI_SYSTEM_RESET,
        psci::PSCI_CPU_FREEZE,
        psci::PSCI_SYSTEM_SUSPEND_64,
        psci::PSCI_SYSTEM_RESET2_32,
        psci::PSCI_MEM_PROTECT,
        0xC400_0015, // SYSTEM_OFF2 (PSCI 1.3; not in the smccc crate)
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
        let expect_refused = owner(f) == OWNER_STANDARD_SECURE;
        assert_eq!(refused(f, 0x4000_0000), expect_refused, "{f:#x}");
    }
}
