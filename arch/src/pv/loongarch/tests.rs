//! The LoongArch probe, registration, steal-time reads and PV IPI windows
//! against simulated hosts.

use super::*;
use crate::pv::arm64::LockAbi;
use crate::pv::{CallList, LockChoice};
use std::cell::Cell;
use std::collections::HashMap;
use std::vec::Vec;

const HV_BIT: u64 = 1 << IOCSR_FEATURE_HYPERVISOR_BIT;
/// QEMU 10.0 under KVM: IPI, STEAL_TIME, VIRT_EXTIOI (never PREEMPT).
const QEMU_KVM_FEATURES: u32 =
    1 << KVM_FEATURE_IPI | 1 << KVM_FEATURE_STEAL_TIME | 1 << KVM_FEATURE_VIRT_EXTIOI;
const ALL_FEATURES: u32 =
    QEMU_KVM_FEATURES | 1 << KVM_FEATURE_PREEMPT | 1 << KVM_FEATURE_USER_HCALL;
/// Where the fake guest's records live.
const RECORD_PA: u64 = 0x0123_4540;

/// What the guest did to the host, with the host's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Iocsr(u64),
    Cpucfg(u32, u32),
    Hvcl {
        function: u32,
        a: [u64; 3],
        ret: i64,
    },
}

/// A simulated host: IOCSR FEATURES and `cpucfg` from fields (any other
/// index reads 0, as on hardware), `hvcl` from a table keyed by function
/// (NOT_IMPLEMENTED otherwise). Every access is logged.
#[derive(Default, Clone)]
struct FakeHost {
    iocsr_features: u64,
    signature: u32,
    features: u32,
    hvcl: HashMap<u32, i64>,
    log: Vec<Event>,
}

impl FakeHost {
    /// QEMU TCG: hypervisor bit clear, every cpucfg of the range 0.
    fn tcg() -> Self {
        Self {
            iocsr_features: 0x0000_001c, // MSI, EXTIOI, CSRIPI (bits 2-4): the rest of QEMU's word
            ..Self::default()
        }
    }
    fn kvm(features: u32) -> Self {
        Self {
            iocsr_features: 0x0000_001c | HV_BIT,
            signature: KVM_SIGNATURE,
            features,
            hvcl: HashMap::from([(FUNC_IPI, SUCCESS), (FUNC_NOTIFY, SUCCESS)]),
            log: Vec::new(),
        }
    }
    fn hvcls(&self) -> Vec<(u32, [u64; 3])> {
        self.log
            .iter()
            .filter_map(|e| match *e {
                Event::Hvcl { function, a, .. } => Some((function, a)),
                _ => None,
            })
            .collect()
    }
    fn called(&self, function: u32) -> bool {
        self.hvcls().iter().any(|&(f, _)| f == function)
    }
}

impl LoongArchHost for FakeHost {
    fn iocsr_features(&mut self) -> u64 {
        self.log.push(Event::Iocsr(self.iocsr_features));
        self.iocsr_features
    }
    fn cpucfg(&mut self, index: u32) -> u32 {
        let value = match index {
            CPUCFG_KVM_SIGNATURE => self.signature,
            CPUCFG_KVM_FEATURES => self.features,
            _ => 0,
        };
        self.log.push(Event::Cpucfg(index, value));
        value
    }
    fn hvcl(&mut self, function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
        let ret = *self.hvcl.get(&function).unwrap_or(&NOT_IMPLEMENTED);
        self.log.push(Event::Hvcl {
            function,
            a: [a1, a2, a3],
            ret,
        });
        ret
    }
}

/// Every probing rule of `docs/abi.md`, checked on a host's event log.
fn assert_probing_rules(log: &[Event]) {
    let mut hv_bit = None;
    let mut kvm = false;
    let mut features = None;
    for (i, event) in log.iter().enumerate() {
        match *event {
            Event::Iocsr(v) => hv_bit = Some(v & HV_BIT != 0),
            Event::Cpucfg(index, value) => {
                let in_range =
                    (CPUCFG_KVM_BASE..CPUCFG_KVM_BASE + CPUCFG_KVM_SIZE).contains(&index);
                assert!(in_range, "#{i}: cpucfg {index:#x} is no probe step");
                assert_eq!(
                    hv_bit,
                    Some(true),
                    "#{i}: cpucfg {index:#x} before the hypervisor bit said yes"
                );
                match index {
                    CPUCFG_KVM_SIGNATURE => kvm = value == KVM_SIGNATURE,
                    CPUCFG_KVM_FEATURES => {
                        assert!(kvm, "#{i}: feature word read without the KVM signature");
                        features = Some(value);
                    }
                    other => panic!("#{i}: cpucfg {other:#x} is no probe step"),
                }
            }
            Event::Hvcl { function, a, .. } => {
                assert!(kvm, "#{i}: hvcl {function} without the KVM signature");
                let features =
                    features.unwrap_or_else(|| panic!("#{i}: hvcl before the feature word"));
                match function {
                    FUNC_NOTIFY => {
                        assert!(
                            has(features, KVM_FEATURE_STEAL_TIME),
                            "#{i}: NOTIFY without STEAL_TIME"
                        );
                        assert_eq!(a[0], 4, "#{i}: NOTIFY a1 is the mask BIT(STEAL_TIME)");
                        let valid = a[1] & STEAL_PHYS_VALID != 0;
                        assert!(
                            a[1] == 0 || (valid && a[1] & !STEAL_PHYS_MASK == STEAL_PHYS_VALID),
                            "#{i}: NOTIFY a2 {:#x} is neither 0 nor PA | 1",
                            a[1]
                        );
                    }
                    FUNC_IPI => {
                        assert!(has(features, KVM_FEATURE_IPI), "#{i}: FUNC_IPI without IPI");
                        assert!(a[0] | a[1] != 0, "#{i}: FUNC_IPI with an empty bitmap");
                    }
                    other => panic!("#{i}: hvcl {other} is not a call lodger makes"),
                }
            }
        }
    }
}

/// The boot path on a host: probe, register the boot CPU (logged in the
/// report, as the arch does), an IPI to `ipi_to`, unregister. Checks the
/// rules and that the report lists every cpucfg and hvcl of the boot.
fn boot(mut host: FakeHost, switches: PvSwitches, ipi_to: &[u64]) -> Boot {
    let (mut report, plan) = probe(&mut host, &switches);
    let registered = register_cpu(&mut host, &plan, RECORD_PA, &mut report.calls);
    let boot_log: Vec<(u32, u64)> = host
        .log
        .iter()
        .filter_map(|e| match *e {
            Event::Iocsr(_) => None,
            Event::Cpucfg(index, _) => Some((index, 0)),
            Event::Hvcl { function, a, .. } => Some((function, a[0])),
        })
        .collect();
    assert_eq!(
        report.calls.calls.as_slice(),
        boot_log.as_slice(),
        "the report lists every call of the boot"
    );
    let mut ids = ipi_to.to_vec();
    let mut refused = Vec::new();
    let pv_ipi = send_ipi(&mut host, &plan, &mut ids, |id| refused.push(id));
    let unregistered = unregister_cpu(&mut host, &plan);
    assert_probing_rules(&host.log);
    Boot {
        report,
        plan,
        registered,
        pv_ipi,
        refused,
        unregistered,
        host,
    }
}

struct Boot {
    report: PvReport,
    plan: Plan,
    registered: Option<Result<(), Note>>,
    pv_ipi: bool,
    refused: Vec<u64>,
    unregistered: Option<Result<(), Note>>,
    host: FakeHost,
}

#[test]
fn tcg_reads_the_hypervisor_bit_and_nothing_else() {
    let b = boot(FakeHost::tcg(), PvSwitches::default(), &[1, 2]);
    assert_eq!(b.host.log, [Event::Iocsr(0x1c)], "no cpucfg, no hvcl");
    assert_eq!(b.report.hypervisor, Hypervisor::None);
    assert_eq!(b.plan, Plan::default());
    assert!(b.registered.is_none() && b.unregistered.is_none() && !b.pv_ipi);
    for f in [PvFeature::Time, PvFeature::Preempt, PvFeature::Ipi] {
        assert_eq!(b.report.state(f), Some(State::NotProbed), "{f}");
    }
    assert_eq!(
        b.report.to_string(),
        "hypervisor none (IOCSR FEATURES bit 11 clear); \
         time: not probed (no hypervisor); \
         lock: n/a (no PV lock ABI on LoongArch; see preempt); \
         sched: n/a (no PV sched ABI on LoongArch); \
         ipi: not probed (no hypervisor); preempt: not probed (no hypervisor)"
    );
    assert_eq!(CallList(&b.report.calls).to_string(), "none");
}

#[test]
fn other_hypervisor_gets_no_feature_read_and_no_hvcl() {
    let host = FakeHost {
        signature: u32::from_le_bytes(*b"XEN\0"),
        ..FakeHost::kvm(ALL_FEATURES)
    };
    let b = boot(host, PvSwitches::default(), &[1]);
    assert_eq!(b.report.hypervisor, Hypervisor::Unknown);
    assert_eq!(
        b.host.log,
        [
            Event::Iocsr(0x1c | HV_BIT),
            Event::Cpucfg(CPUCFG_KVM_SIGNATURE, u32::from_le_bytes(*b"XEN\0"))
        ]
    );
    assert_eq!(b.plan, Plan::default());
    assert!(b.report.found.contains("not KVM"), "{}", b.report);
    // A hypervisor bit with a zero signature (no signature at all) too.
    let b = boot(
        FakeHost {
            signature: 0,
            ..FakeHost::kvm(ALL_FEATURES)
        },
        PvSwitches::default(),
        &[1],
    );
    assert!(b.host.hvcls().is_empty());
    assert_eq!(b.report.state(PvFeature::Ipi), Some(State::NotProbed));
}

#[test]
fn kvm_with_steal_time_only() {
    let b = boot(
        FakeHost::kvm(1 << KVM_FEATURE_STEAL_TIME),
        PvSwitches::default(),
        &[0, 1, 2, 3],
    );
    assert_eq!(b.report.hypervisor, Hypervisor::Kvm);
    assert_eq!(
        b.plan,
        Plan {
            steal_clock: true,
            preempt: false,
            ipi: false
        }
    );
    assert!(b.report.uses(PvFeature::Time));
    assert_eq!(b.report.state(PvFeature::Preempt), Some(State::NotOffered));
    assert_eq!(b.report.state(PvFeature::Ipi), Some(State::NotOffered));
    assert_eq!(b.registered, Some(Ok(())));
    assert_eq!(b.unregistered, Some(Ok(())));
    assert!(!b.pv_ipi && !b.host.called(FUNC_IPI));
    assert_eq!(
        b.host.hvcls(),
        [
            (FUNC_NOTIFY, [4, RECORD_PA | 1, 0]),
            (FUNC_NOTIFY, [4, 0, 0])
        ]
    );
    assert_eq!(
        CallList(&b.report.calls).to_string(),
        "cpucfg 0x40000000, cpucfg 0x40000004, hvcl NOTIFY(0x4)"
    );
}

#[test]
fn kvm_with_everything() {
    let b = boot(
        FakeHost::kvm(ALL_FEATURES),
        PvSwitches::default(),
        &[3, 0, 2],
    );
    assert_eq!(
        b.plan,
        Plan {
            steal_clock: true,
            preempt: true,
            ipi: true
        }
    );
    for f in [PvFeature::Time, PvFeature::Preempt, PvFeature::Ipi] {
        assert!(b.report.uses(f), "{f}: {}", b.report);
    }
    for f in [PvFeature::Lock, PvFeature::Sched] {
        assert_eq!(b.report.state(f), Some(State::NotApplicable), "{f}");
    }
    assert!(b.pv_ipi && b.refused.is_empty());
    // One multicast for CPUs 0, 2, 3.
    assert_eq!(
        b.host.hvcls()[1],
        (FUNC_IPI, [0b1101, 0, 0]),
        "{:?}",
        b.host.log
    );
    assert!(
        b.report.found.contains("features 0x300000e"),
        "{}",
        b.report
    );
}

#[test]
fn qemu_10_never_gets_preempt() {
    let b = boot(FakeHost::kvm(QEMU_KVM_FEATURES), PvSwitches::default(), &[]);
    assert!(b.plan.steal_clock && b.plan.ipi && !b.plan.preempt);
    assert_eq!(b.report.state(PvFeature::Preempt), Some(State::NotOffered));
    assert!(b
        .report
        .to_string()
        .contains("PREEMPT (bit 3) not in features"));
    // No targets: no FUNC_IPI at all.
    assert!(b.pv_ipi && !b.host.called(FUNC_IPI));
}

#[test]
fn features_without_ipi_never_call_func_ipi() {
    let features = ALL_FEATURES & !(1 << KVM_FEATURE_IPI);
    let ids: Vec<u64> = (0..300).collect();
    let b = boot(FakeHost::kvm(features), PvSwitches::default(), &ids);
    assert!(!b.plan.ipi && !b.pv_ipi);
    assert!(!b.host.called(FUNC_IPI));
    assert_eq!(b.report.state(PvFeature::Ipi), Some(State::NotOffered));
}

#[test]
fn switches_turn_features_off() {
    let switches = PvSwitches {
        time: false,
        ipi: false,
        lock: LockChoice::Off,
        ..PvSwitches::default()
    };
    let b = boot(FakeHost::kvm(ALL_FEATURES), switches, &[1, 2]);
    assert_eq!(b.plan, Plan::default());
    for (f, why) in [
        (PvFeature::Time, "pv.time=off"),
        (PvFeature::Preempt, "pv.lock=off"),
        (PvFeature::Ipi, "pv.ipi=off"),
    ] {
        assert_eq!(b.report.state(f), Some(State::SwitchedOff), "{f}");
        assert!(b.report.to_string().contains(why), "{}", b.report);
    }
    assert!(b.host.hvcls().is_empty(), "{:?}", b.host.log);
    assert!(!b.pv_ipi);
}

#[test]
fn preempt_alone_still_registers_the_record() {
    // An arm64 generation named is "on" here, as the default is.
    for lock in [
        LockChoice::Auto,
        LockChoice::Named(LockAbi::V2),
        LockChoice::Named(LockAbi::V3),
    ] {
        let switches = PvSwitches {
            time: false,
            lock,
            ..PvSwitches::default()
        };
        let b = boot(FakeHost::kvm(ALL_FEATURES), switches, &[]);
        assert!(!b.plan.steal_clock && b.plan.preempt && b.plan.needs_record());
        assert_eq!(b.report.state(PvFeature::Time), Some(State::SwitchedOff));
        assert!(b.report.uses(PvFeature::Preempt), "{lock:?}");
        assert_eq!(b.registered, Some(Ok(())));
    }
}

#[test]
fn preempt_without_steal_time_is_unusable() {
    let features = 1 << KVM_FEATURE_PREEMPT | 1 << KVM_FEATURE_IPI;
    let b = boot(FakeHost::kvm(features), PvSwitches::default(), &[]);
    assert!(!b.plan.needs_record());
    assert_eq!(b.report.state(PvFeature::Preempt), Some(State::Unusable));
    assert!(b.registered.is_none() && !b.host.called(FUNC_NOTIFY));
}

#[test]
fn pv_off_issues_nothing_at_all() {
    let mut host = FakeHost::kvm(ALL_FEATURES);
    let switches = PvSwitches {
        enabled: false,
        ..PvSwitches::default()
    };
    let (report, plan) = probe(&mut host, &switches);
    assert!(
        host.log.is_empty(),
        "not even the IOCSR read: {:?}",
        host.log
    );
    assert!(report.calls.calls.is_empty());
    assert_eq!(plan, Plan::default());
    assert_eq!(report.hypervisor, Hypervisor::NotProbed);
    for f in [PvFeature::Time, PvFeature::Preempt, PvFeature::Ipi] {
        assert_eq!(report.state(f), Some(State::SwitchedOff), "{f}");
    }
    let b = boot(host, switches, &[1]);
    assert!(b.host.log.is_empty());
}

#[test]
fn notify_refused_or_bad_address_is_reported() {
    let mut host = FakeHost::kvm(ALL_FEATURES);
    host.hvcl.insert(FUNC_NOTIFY, INVALID_PARAMETER);
    let b = boot(host, PvSwitches::default(), &[]);
    let why = b.registered.unwrap().unwrap_err();
    assert!(why.contains("FUNC_NOTIFY(STEAL_TIME) = -2"), "{why}");

    // Neither success nor an error: named as nonsense, and refused.
    let mut host = FakeHost::kvm(ALL_FEATURES);
    host.hvcl.insert(FUNC_NOTIFY, 0x5a5a_5a5a_5a5a_5a5a);
    let b = boot(host, PvSwitches::default(), &[]);
    let why = b.registered.unwrap().unwrap_err();
    assert!(
        why.contains("FUNC_NOTIFY(STEAL_TIME) answered nonsense 0x5a5a5a5a5a5a5a5a"),
        "{why}"
    );

    // A misaligned record is refused before any call.
    let mut host = FakeHost::kvm(ALL_FEATURES);
    let plan = probe(&mut host, &PvSwitches::default()).1;
    let mut log = CallLog::default();
    let r = register_cpu(&mut host, &plan, RECORD_PA + 8, &mut log);
    assert!(r.unwrap().unwrap_err().contains("aligned"));
    assert!(!host.called(FUNC_NOTIFY) && log.calls.is_empty());
}

#[test]
fn refused_func_ipi_hands_its_window_back() {
    let mut host = FakeHost::kvm(ALL_FEATURES);
    host.hvcl.insert(FUNC_IPI, NOT_IMPLEMENTED);
    let b = boot(host, PvSwitches::default(), &[5, 300, 7]);
    assert!(b.pv_ipi);
    assert_eq!(b.refused, [5, 7, 300]);
}

#[test]
fn call_list_keeps_arm64_entries_as_they_were() {
    let mut log = CallLog::default();
    log.record(crate::abi::arm64::PSCI_FEATURES, 0x8000_0000);
    log.record(crate::abi::arm64::SMCCC_VERSION, 0);
    log.record(FUNC_IPI, 0x3);
    assert_eq!(
        CallList(&log).to_string(),
        "0x8400000a(0x80000000), 0x80000000, hvcl IPI(0x3)"
    );
}

// --- The seqlock reader ---

#[test]
fn seqlock_stable_read() {
    let reads = Cell::new(0);
    let v = read_steal_ns(
        || {
            reads.set(reads.get() + 1);
            4
        },
        || 1234,
    );
    assert_eq!(v, Some(1234));
    assert_eq!(reads.get(), 2, "one pass: version, steal, version");
}

#[test]
fn seqlock_retries_while_version_is_odd() {
    // Odd for the first two passes (6 accesses), then even and done.
    let pass = Cell::new(0u32);
    let v = read_steal_ns(
        || {
            pass.set(pass.get() + 1);
            if pass.get() <= 4 {
                7
            } else {
                8
            }
        },
        || if pass.get() <= 4 { 0xdead } else { 500 },
    );
    assert_eq!(v, Some(500));
    // Stuck odd: bounded, and no value rather than an uncommitted one.
    let calls = Cell::new(0);
    let v = read_steal_ns(
        || {
            calls.set(calls.get() + 1);
            1
        },
        || 0xdead,
    );
    assert_eq!(v, None);
    assert_eq!(calls.get(), 2 * STEAL_READ_TRIES);
}

#[test]
fn seqlock_retries_when_version_changes_mid_read() {
    // Pass 1 sees version 2, then 4 (a whole update happened between);
    // pass 2 sees 4 and 4.
    let versions = [2, 4, 4, 4];
    let i = Cell::new(0);
    let v = read_steal_ns(
        || {
            let v = versions[i.get()];
            i.set(i.get() + 1);
            v
        },
        || if i.get() == 1 { 100 } else { 200 },
    );
    assert_eq!(v, Some(200));
    assert_eq!(i.get(), 4);
}

/// A host writer that advances one step at pseudo-random reader accesses:
/// version odd, steal = garbage (a half-done update), steal = the next
/// committed value, version even. The reader must only ever return a
/// committed value, and return one nearly always.
#[test]
fn seqlock_against_a_simulated_writer() {
    struct Writer {
        version: Cell<u32>,
        steal: Cell<u64>,
        step: Cell<u32>,
        committed: Cell<u64>,
        rng: Cell<u64>,
    }
    impl Writer {
        fn maybe_step(&self) {
            // xorshift64: deterministic interleavings.
            let mut x = self.rng.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.rng.set(x);
            if !x.is_multiple_of(3) {
                return;
            }
            match self.step.get() % 4 {
                0 | 3 => self.version.set(self.version.get() + 1),
                1 => self.steal.set(u64::MAX), // torn / uncommitted
                _ => {
                    self.committed.set(self.committed.get() + 1000);
                    self.steal.set(self.committed.get());
                }
            }
            self.step.set(self.step.get() + 1);
        }
    }
    let w = Writer {
        version: Cell::new(0),
        steal: Cell::new(0),
        step: Cell::new(0),
        committed: Cell::new(0),
        rng: Cell::new(0x9e37_79b9_7f4a_7c15),
    };
    let mut last = 0;
    let mut got = 0;
    for _ in 0..10_000 {
        let v = read_steal_ns(
            || {
                w.maybe_step();
                w.version.get()
            },
            || {
                w.maybe_step();
                w.steal.get()
            },
        );
        if let Some(v) = v {
            assert_ne!(v, u64::MAX, "returned an uncommitted value");
            assert_eq!(v % 1000, 0);
            assert!(v >= last, "went backwards: {last} -> {v}");
            assert!(v <= w.committed.get());
            last = v;
            got += 1;
        }
    }
    assert!(got > 9_900, "only {got} of 10000 reads succeeded");
    assert!(w.step.get() > 1000, "the writer barely ran");
}

// --- IPI windows ---

fn windows(ids: &[u64]) -> Vec<IpiWindow> {
    let mut ids = ids.to_vec();
    ipi_windows(&mut ids).collect()
}

#[test]
fn ipi_windows_empty() {
    assert!(windows(&[]).is_empty());
}

#[test]
fn ipi_window_single_target() {
    let w = windows(&[37]);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].args(), (1, 0, 37), "a1 = 1 << 0, a2 = 0, a3 = id");
}

#[test]
fn ipi_windows_spanning_more_than_128_ids() {
    // 0..=127 fit one window; 128 starts the next; 200 joins it.
    let w = windows(&[200, 0, 127, 128, 64, 63]);
    assert_eq!(w.len(), 2);
    assert_eq!(
        w[0].args(),
        (1 << 0 | 1 << 63, 1 << 0 | 1 << 63, 0),
        "64 and 127 are in a2"
    );
    // 200 = 128 + 72: bit 72, i.e. bit 8 of a2.
    assert_eq!(w[1].args(), (1, 1 << 8, 128));
    assert_eq!(w[1].ids().collect::<Vec<_>>(), [128, 200]);
    // 1000 consecutive ids: ceil(1000 / 128) = 8 calls.
    let all: Vec<u64> = (0..1000).collect();
    assert_eq!(windows(&all).len(), 8);
}

#[test]
fn ipi_windows_sparse_sets() {
    // Far apart: one window each; the window starts at the lowest id.
    let w = windows(&[511, 3, 300]);
    let bases: Vec<u64> = w.iter().map(|w| w.base_id).collect();
    assert_eq!(bases, [3, 300, 511]);
    assert!(w.iter().all(|w| w.bitmap == 1));
    // Duplicates set one bit.
    let w = windows(&[9, 9, 10]);
    assert_eq!(
        w,
        [IpiWindow {
            bitmap: 0b11,
            base_id: 9
        }]
    );
}

/// Against every subset of a small universe: the windows cover exactly
/// the set, each spans < 128 ids, and no cover is smaller (checked
/// against the lower bound "ids pairwise >= 128 apart need a call each").
#[test]
fn ipi_windows_are_exact_and_fewest() {
    let universe = [0u64, 1, 100, 127, 128, 129, 255, 256, 400, 527];
    for subset in 0u32..1 << universe.len() {
        let ids: Vec<u64> = (0..universe.len())
            .filter(|i| subset & 1 << i != 0)
            .map(|i| universe[i])
            .collect();
        let w = windows(&ids);
        let mut covered: Vec<u64> = w.iter().flat_map(|w| w.ids()).collect();
        covered.sort_unstable();
        assert_eq!(covered, ids, "{subset:#b}");
        // Greedy chain of ids >= 128 apart: a lower bound on any cover.
        let mut bound = 0;
        let mut next = 0;
        for &id in &ids {
            if bound == 0 || id >= next {
                bound += 1;
                next = id + IPI_WINDOW_CPUS;
            }
        }
        assert_eq!(w.len(), bound, "{ids:?}");
    }
}
