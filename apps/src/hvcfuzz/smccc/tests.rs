//! The SMCCC fuzz's oracle and generator, against the ABI.

use super::*;

const RAM: (u64, u64) = (0x4000_0000, 0x5000_0000);
const NS: Option<Expect> = Some(Expect::X0(NOT_SUPPORTED as u64));
const YES: Option<Expect> = Some(Expect::X0(0));
const INVAL: Option<Expect> = Some(Expect::X0(INVALID_PARAMETER as u64));

fn machine(offer: Offer) -> Machine {
    Machine {
        offer,
        ram: Vec::from([RAM]),
        online_mpidr: Vec::from([0, 1, 2, 3]),
        vcpus: 4,
    }
}

fn ask(offer: Offer, function: u32, a1: u64) -> Option<Expect> {
    expect(
        Call {
            function,
            args: [a1, 0, 0],
        },
        &machine(offer),
    )
}

#[test]
fn the_probe_sequence_as_the_abi_says() {
    let all = Offer::ALL;
    assert_eq!(ask(all, PSCI_VERSION, 0), Some(Expect::X0(0x1_0001)));
    assert_eq!(ask(all, PSCI_FEATURES, SMCCC_VERSION.into()), YES);
    assert_eq!(ask(all, SMCCC_VERSION, 0), Some(Expect::X0(0x1_0001)));
    assert_eq!(ask(all, VENDOR_HYP_CALL_UID, 0), Some(Expect::Uid));
    assert_eq!(ask(all, VENDOR_HYP_KVM_FEATURES, 0), Some(Expect::X0(1)));
    for f in [PV_TIME_FEATURES, PV_LOCK_FEATURES, PV_SCHED_FEATURES] {
        assert_eq!(ask(all, SMCCC_ARCH_FEATURES, f.into()), YES, "{f:#x}");
    }
    assert_eq!(ask(all, PV_TIME_FEATURES, PV_TIME_ST.into()), YES);
    assert_eq!(ask(all, PV_SCHED_FEATURES, PV_SCHED_KICK_CPU.into()), YES);
    assert_eq!(ask(all, PV_TIME_ST, 0), Some(Expect::Record(Record::Time)));
    assert_eq!(
        ask(all, PV_LOCK_PREEMPTED, 7),
        Some(Expect::Record(Record::Lock))
    );
}

#[test]
fn nothing_offered() {
    let none = Offer::NONE;
    // As KVM with steal time off: ARCH_FEATURES still says yes.
    assert_eq!(ask(none, SMCCC_ARCH_FEATURES, PV_TIME_FEATURES.into()), YES);
    assert_eq!(ask(none, SMCCC_ARCH_FEATURES, PV_LOCK_FEATURES.into()), NS);
    for f in [
        PV_TIME_ST,
        PV_LOCK_PREEMPTED,
        PV_SCHED_KICK_CPU,
        PV_SCHED_IPA_INIT,
    ] {
        assert_eq!(ask(none, f, 0x9_0000_0000), NS, "{f:#x}");
    }
    // Never issued, offered or not: the rule does not depend on the offer.
    assert!(ask(none, PV_SCHED_IPA_RELEASE, 0).is_none());
    assert_eq!(ask(none, VENDOR_HYP_CALL_UID, 0), Some(Expect::Uid));
}

#[test]
fn arguments_count_by_convention() {
    let all = Offer::ALL;
    // 32-bit: the upper half is ignored.
    let junk = 0xdead_beef_0000_0000;
    assert_eq!(ask(all, PSCI_FEATURES, junk | u64::from(PSCI_VERSION)), YES);
    assert_eq!(
        ask(all, SMCCC_ARCH_FEATURES, junk | u64::from(PV_TIME_FEATURES)),
        YES
    );
    // 64-bit: it makes another (unknown) function.
    assert_eq!(ask(all, PV_TIME_FEATURES, junk | u64::from(PV_TIME_ST)), NS);
    assert_eq!(ask(all, PV_SCHED_KICK_CPU, 3), YES);
    assert_eq!(ask(all, PV_SCHED_KICK_CPU, 4), INVAL);
    assert_eq!(ask(all, PV_SCHED_KICK_CPU, 1 << 32), INVAL);
    let affinity = |f, args| expect(Call { function: f, args }, &machine(all));
    assert_eq!(
        affinity(psci::PSCI_AFFINITY_INFO_32, [junk | 2, junk, 0]),
        YES
    );
    assert_eq!(
        affinity(psci::PSCI_AFFINITY_INFO_64, [junk | 2, 0, 0]),
        None
    );
    assert_eq!(affinity(psci::PSCI_AFFINITY_INFO_64, [2, 1, 0]), None);
}

#[test]
fn dangerous_calls_are_never_planned() {
    let all = Offer::ALL;
    for f in [
        psci::PSCI_CPU_OFF,
        psci::PSCI_CPU_ON_64,
        psci::PSCI_SYSTEM_OFF,
        psci::PSCI_SYSTEM_RESET,
        psci::PSCI_CPU_SUSPEND_32,
        psci::PSCI_SYSTEM_RESET2_64,
        PV_SCHED_IPA_RELEASE,
    ] {
        assert_eq!(ask(all, f, 0), None, "{f:#x}");
    }
    // A record touching RAM, aligned or not, in either convention.
    for ipa in [0x4000_0000, 0x4fff_ffc0, 0x4000_0001, 0x3fff_fff0] {
        assert_eq!(ask(all, PV_SCHED_IPA_INIT, ipa), None, "{ipa:#x}");
    }
    assert_eq!(ask(all, PV_SCHED_IPA_INIT & !SMC64, 0x1_4000_0000), None);
    // Outside RAM: issued, refused by the host.
    for ipa in [0x3fff_ffc0, 0x5000_0000, 0x5000_0001, 1 << 48, u64::MAX] {
        assert_eq!(ask(all, PV_SCHED_IPA_INIT, ipa), INVAL, "{ipa:#x}");
    }
}

#[test]
fn unknown_ids_are_not_supported() {
    for f in [
        0,
        u32::MAX,
        PV_LOCK_V3,
        0xC500_0022,
        0x8500_0021,
        0xC600_0022,
    ] {
        assert_eq!(ask(Offer::ALL, f, 0), NS, "{f:#x}");
    }
    for f in [
        SMCCC_ARCH_SOC_ID,
        SMCCC_ARCH_WORKAROUND_1,
        psci::PSCI_MIGRATE_INFO_UP_CPU_64,
    ] {
        assert_eq!(ask(Offer::ALL, f, 0), NS, "{f:#x}");
    }
}

#[test]
fn the_generator_mixes_kinds_and_plans_only_safe_calls() {
    let m = machine(Offer::ALL);
    let mut rng = Rng::new(7);
    let mut kinds = [0; 3];
    let mut init_ipas = 0;
    for _ in 0..100_000 {
        let (kind, call, expect) = generate(&mut rng, &m);
        kinds[kind as usize] += 1;
        assert!(
            raw_call_refusal(call.function, call.args, |a| m.in_ram(a)).is_none(),
            "{call:x?}"
        );
        assert_eq!(super::expect(call, &m), Some(expect));
        if call.function == PV_SCHED_IPA_INIT {
            init_ipas += 1;
            assert_eq!(expect, INVAL.unwrap());
        }
    }
    // Near IDs are drawn again most often (near PSCI power calls).
    assert!(kinds.iter().all(|&k| k > 25_000), "{kinds:?}");
    assert!(init_ipas > 100, "{init_ipas}");
}

#[test]
fn the_same_seed_gives_the_same_calls() {
    let m = machine(Offer::ALL);
    let run = |seed| {
        let mut rng = Rng::new(seed);
        (0..50)
            .map(|_| generate(&mut rng, &m).1)
            .collect::<Vec<_>>()
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
}
