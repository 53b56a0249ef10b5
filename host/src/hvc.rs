//! The hypercall table: every SMCCC call a guest may make, answered exactly
//! as `docs/abi.md` says (IDs, UID and records from [`arch::abi::arm64`]).
//!
//! Pure logic over a [`Machine`], which carries out what a call does to the
//! hardware (PSCI forwarding, the kick, the records); the tests drive it with
//! a fake. Every argument is checked here: nothing a guest passes reaches
//! the machine unchecked.
//!
//! | call | answer |
//! |---|---|
//! | PSCI_VERSION | 1.1 |
//! | PSCI_FEATURES(f) | 0 for the PSCI calls below and SMCCC_VERSION, else -1 |
//! | CPU_ON / AFFINITY_INFO | forwarded to the firmware; the entry must lie in guest RAM (else INVALID_ADDRESS) |
//! | CPU_OFF, SYSTEM_OFF, SYSTEM_RESET | carried out by the caller ([`Outcome`]) |
//! | MIGRATE_INFO_TYPE | 2 (no trusted OS to migrate) |
//! | SMCCC_VERSION | 1.1 |
//! | SMCCC_ARCH_FEATURES(f) | 0 for PV_TIME_FEATURES (always, as KVM), PV_LOCK_FEATURES / PV_SCHED_FEATURES when offered, ARCH_FEATURES itself |
//! | VENDOR_HYP_CALL_UID | KVM's UID |
//! | VENDOR_HYP_KVM_FEATURES | bit 0 only (no PTP) |
//! | PV time, PV lock v2, PV sched | see the functions below |
//! | anything else, or an HVC/SMC immediate other than 0 | NOT_SUPPORTED |
//!
//! A host fault ([`Fault`], `pvhost.fault=`) changes some answers: see
//! [`dispatch`].

/// Which ABIs are offered (`pvhost.time/lock/sched`).
pub use arch::abi::arm64::Offer;
use arch::abi::arm64::*;

use crate::args::{self, Fault};

/// What a call does to the machine; implemented by the EL2 code, faked in
/// tests. Addresses are guest physical (= host physical: no stage 2).
pub trait Machine {
    /// How many vCPUs there are (vCPU = pCPU).
    fn vcpus(&self) -> usize;
    /// `[start, end)` of guest RAM.
    fn guest_ram(&self) -> core::ops::Range<u64>;
    /// The IPA of `vcpu`'s stolen-time record (host memory).
    fn time_record(&self, vcpu: usize) -> u64;
    /// The IPA of `vcpu`'s PV lock record (host memory).
    fn lock_record(&self, vcpu: usize) -> u64;
    /// Registers (or with `None` forgets) `vcpu`'s PV sched record.
    fn set_sched_record(&mut self, vcpu: usize, ipa: Option<u64>);
    /// Wakes `vcpu` from a WFI (and makes its next WFI return at once).
    fn kick(&mut self, vcpu: usize);
    /// PSCI CPU_ON for the guest: `entry` and `context` are the guest's.
    /// Returns a PSCI status.
    fn cpu_on(&mut self, target_mpidr: u64, entry: u64, context: u64) -> i64;
    /// PSCI AFFINITY_INFO, forwarded.
    fn affinity_info(&mut self, target: u64, lowest_level: u64) -> i64;
}

/// One trapped call: x0..x3 and the instruction's immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub x: [u64; 4],
    pub imm: u16,
}

/// What the caller must do after [`dispatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Write x0 and return to the guest.
    Return(u64),
    /// Write x0..x3 and return to the guest.
    Return4([u64; 4]),
    /// PSCI CPU_OFF: power this pCPU off.
    CpuOff,
    /// PSCI SYSTEM_OFF: print the ground truth, power off.
    SystemOff,
    /// PSCI SYSTEM_RESET.
    SystemReset,
}

/// Which kind of call, for the host's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Psci,
    Smccc,
    /// PV time, PV lock, PV sched, the vendor UID and features.
    Pv,
    Unknown,
}

pub fn family(function: u32) -> Family {
    match function {
        _ if is_psci_call(function) => Family::Psci,
        SMCCC_VERSION | SMCCC_ARCH_FEATURES => Family::Smccc,
        VENDOR_HYP_CALL_UID | VENDOR_HYP_KVM_FEATURES => Family::Pv,
        PV_TIME_FEATURES | PV_TIME_ST | PV_LOCK_FEATURES | PV_LOCK_PREEMPTED => Family::Pv,
        PV_SCHED_FEATURES..=PV_SCHED_KICK_CPU => Family::Pv,
        _ => Family::Unknown,
    }
}

const fn ret(code: i64) -> Outcome {
    Outcome::Return(code as u64)
}

/// Whether the 64-byte record at `ipa` lies in guest RAM, aligned.
pub fn record_ipa_ok(ipa: u64, ram: &core::ops::Range<u64>) -> bool {
    ipa.is_multiple_of(RECORD_ALIGN)
        && ipa >= ram.start
        && ipa
            .checked_add(RECORD_ALIGN)
            .is_some_and(|end| end <= ram.end)
}

/// The IPA PV_TIME_ST or PV_LOCK_PREEMPTED hands `vcpu`, whose record is
/// at `record`, under `fault`: the record, or a refusal, or a bad address.
pub fn record_answer(fault: Fault, vcpu: usize, record: u64, ram: &core::ops::Range<u64>) -> u64 {
    match fault {
        Fault::RefuseRegister(v) if v == vcpu => NOT_SUPPORTED as u64,
        Fault::IpaOutsideRam(v) if v == vcpu => args::IPA_OUTSIDE_RAM,
        Fault::IpaInGuestRam(v) if v == vcpu => {
            (ram.start + (ram.end - ram.start) / 2) & !(RECORD_ALIGN - 1)
        }
        Fault::IpaMisaligned(v) if v == vcpu => record + 8,
        _ => record,
    }
}

/// Answers one call from `vcpu`, with `fault` injected.
pub fn dispatch(
    offer: Offer,
    fault: Fault,
    vcpu: usize,
    call: Call,
    m: &mut impl Machine,
) -> Outcome {
    if call.imm != 0 {
        // SMCCC: HVC/SMC #imm with imm != 0 is not a call of this convention.
        return ret(NOT_SUPPORTED);
    }
    // SMCCC: the function ID is W0; SMC32/HVC32 calls pass 32-bit arguments.
    let function = call.x[0] as u32;
    let smc64 = function & SMC64 != 0;
    let arg = |i: usize| {
        if smc64 {
            call.x[i]
        } else {
            call.x[i] & 0xffff_ffff
        }
    };
    let garbage = fault == Fault::GarbageFeatures;
    match function {
        // Garbage for every PV feature query, whatever is offered.
        SMCCC_ARCH_FEATURES
            if garbage
                && matches!(
                    u32::try_from(arg(1)),
                    Ok(PV_TIME_FEATURES | PV_LOCK_FEATURES | PV_SCHED_FEATURES)
                ) =>
        {
            Outcome::Return(args::garbage(function, arg(1)))
        }
        PV_TIME_FEATURES | PV_LOCK_FEATURES | PV_SCHED_FEATURES if garbage => {
            Outcome::Return(args::garbage(function, arg(1)))
        }
        psci::PSCI_VERSION => Outcome::Return(PSCI_VERSION_1_1.into()),
        psci::PSCI_FEATURES => {
            if arg(1) >> 32 == 0 && PSCI_IMPLEMENTED.contains(&(arg(1) as u32)) {
                ret(SUCCESS)
            } else {
                ret(NOT_SUPPORTED)
            }
        }
        psci::PSCI_CPU_ON_32 | psci::PSCI_CPU_ON_64 => {
            let entry = arg(2);
            if !m.guest_ram().contains(&entry) || !entry.is_multiple_of(4) {
                return ret(psci::error::INVALID_ADDRESS.into());
            }
            ret(m.cpu_on(arg(1), entry, arg(3)))
        }
        psci::PSCI_AFFINITY_INFO_32 | psci::PSCI_AFFINITY_INFO_64 => {
            ret(m.affinity_info(arg(1), arg(2)))
        }
        psci::PSCI_MIGRATE_INFO_TYPE => Outcome::Return(PSCI_MIGRATE_INFO_TYPE_NONE),
        psci::PSCI_CPU_OFF => Outcome::CpuOff,
        psci::PSCI_SYSTEM_OFF => Outcome::SystemOff,
        psci::PSCI_SYSTEM_RESET => Outcome::SystemReset,

        SMCCC_VERSION => Outcome::Return(SMCCC_VERSION_1_1.into()),
        SMCCC_ARCH_FEATURES => {
            let offered = match u32::try_from(arg(1)) {
                Ok(SMCCC_ARCH_FEATURES) => true,
                // As KVM: PV time's features call exists even with steal
                // time off; PV_TIME_FEATURES(PV_TIME_ST) tells.
                Ok(PV_TIME_FEATURES) => true,
                Ok(PV_LOCK_FEATURES) => offer.lock,
                Ok(PV_SCHED_FEATURES) => offer.sched,
                _ => false,
            };
            ret(if offered { SUCCESS } else { NOT_SUPPORTED })
        }
        VENDOR_HYP_CALL_UID => Outcome::Return4(KVM_UID.map(u64::from)),
        VENDOR_HYP_KVM_FEATURES => Outcome::Return(1 << KVM_FEATURE_FEATURES),

        PV_TIME_FEATURES => match u32::try_from(arg(1)) {
            Ok(PV_TIME_FEATURES | PV_TIME_ST) if offer.time => ret(SUCCESS),
            _ => ret(NOT_SUPPORTED),
        },
        PV_TIME_ST if offer.time => Outcome::Return(record_answer(
            fault,
            vcpu,
            m.time_record(vcpu),
            &m.guest_ram(),
        )),

        PV_LOCK_FEATURES => match u32::try_from(arg(1)) {
            Ok(PV_LOCK_FEATURES | PV_LOCK_PREEMPTED) if offer.lock => ret(SUCCESS),
            _ => ret(NOT_SUPPORTED),
        },
        PV_LOCK_PREEMPTED if offer.lock => Outcome::Return(record_answer(
            fault,
            vcpu,
            m.lock_record(vcpu),
            &m.guest_ram(),
        )),

        PV_SCHED_FEATURES => match u32::try_from(arg(1)) {
            Ok(PV_SCHED_FEATURES..=PV_SCHED_KICK_CPU) if offer.sched => ret(SUCCESS),
            _ => ret(NOT_SUPPORTED),
        },
        PV_SCHED_IPA_INIT if offer.sched => {
            if fault == Fault::RefuseRegister(vcpu) {
                return ret(INVALID_PARAMETER);
            }
            let ipa = arg(1);
            if !record_ipa_ok(ipa, &m.guest_ram()) {
                return ret(INVALID_PARAMETER);
            }
            m.set_sched_record(vcpu, Some(ipa));
            ret(SUCCESS)
        }
        PV_SCHED_IPA_RELEASE if offer.sched => {
            m.set_sched_record(vcpu, None);
            ret(SUCCESS)
        }
        PV_SCHED_KICK_CPU if offer.sched => {
            let target = arg(1);
            if target >= m.vcpus() as u64 {
                return ret(INVALID_PARAMETER);
            }
            m.kick(target as usize);
            ret(SUCCESS)
        }
        _ => ret(NOT_SUPPORTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: u64 = NOT_SUPPORTED as u64;
    const INVAL: u64 = INVALID_PARAMETER as u64;
    const ALL: Offer = Offer::ALL;
    const NONE: Offer = Offer::NONE;

    /// A fake machine: 4 vCPUs, 256 MiB of guest RAM at 1 GiB, and a log.
    #[derive(Default)]
    struct Fake {
        sched: [Option<u64>; 4],
        kicks: Vec<usize>,
        cpu_ons: Vec<(u64, u64, u64)>,
    }

    impl Machine for Fake {
        fn vcpus(&self) -> usize {
            4
        }
        fn guest_ram(&self) -> core::ops::Range<u64> {
            0x4000_0000..0x5000_0000
        }
        fn time_record(&self, vcpu: usize) -> u64 {
            0x5010_0000 + 64 * vcpu as u64
        }
        fn lock_record(&self, vcpu: usize) -> u64 {
            0x5010_1000 + 64 * vcpu as u64
        }
        fn set_sched_record(&mut self, vcpu: usize, ipa: Option<u64>) {
            self.sched[vcpu] = ipa;
        }
        fn kick(&mut self, vcpu: usize) {
            self.kicks.push(vcpu);
        }
        fn cpu_on(&mut self, target: u64, entry: u64, context: u64) -> i64 {
            self.cpu_ons.push((target, entry, context));
            0
        }
        fn affinity_info(&mut self, _: u64, _: u64) -> i64 {
            1 // OFF
        }
    }

    fn call(offer: Offer, vcpu: usize, x: [u64; 4], m: &mut Fake) -> Outcome {
        dispatch(offer, Fault::None, vcpu, Call { x, imm: 0 }, m)
    }

    fn faulty(fault: Fault, vcpu: usize, function: u32, arg: u64, m: &mut Fake) -> u64 {
        let x = [function.into(), arg, 0, 0];
        match dispatch(ALL, fault, vcpu, Call { x, imm: 0 }, m) {
            Outcome::Return(v) => v,
            other => panic!("{function:#x}: {other:?}"),
        }
    }

    #[test]
    fn per_vcpu_faults_hit_that_vcpu_only() {
        let mut m = Fake::default();
        let ram = m.guest_ram();
        for (fault, time_1) in [
            (Fault::RefuseRegister(1), NS),
            (Fault::IpaOutsideRam(1), args::IPA_OUTSIDE_RAM),
            (Fault::IpaInGuestRam(1), 0x4800_0000),
            (Fault::IpaMisaligned(1), 0x5010_0048),
        ] {
            assert_eq!(faulty(fault, 1, PV_TIME_ST, 0, &mut m), time_1, "{fault:?}");
            assert_eq!(faulty(fault, 0, PV_TIME_ST, 0, &mut m), 0x5010_0000);
            assert_eq!(faulty(fault, 2, PV_LOCK_PREEMPTED, 0, &mut m), 0x5010_1080);
            let lock_1 = faulty(fault, 1, PV_LOCK_PREEMPTED, 0, &mut m);
            assert_ne!(lock_1, 0x5010_1040, "{fault:?}");
            assert!(!record_ipa_ok(time_1, &(0x5010_0000..0x5010_2000)));
        }
        assert!(ram.contains(&0x4800_0000));
        let init = |m: &mut Fake, vcpu| {
            faulty(
                Fault::RefuseRegister(1),
                vcpu,
                PV_SCHED_IPA_INIT,
                0x4100_0000,
                m,
            )
        };
        assert_eq!(init(&mut m, 1), INVAL);
        assert_eq!(m.sched[1], None);
        assert_eq!(init(&mut m, 3), 0);
        assert_eq!(m.sched[3], Some(0x4100_0000));
    }

    #[test]
    fn garbage_features_answer_every_pv_feature_query() {
        let mut m = Fake::default();
        let g = Fault::GarbageFeatures;
        for f in [PV_TIME_FEATURES, PV_LOCK_FEATURES, PV_SCHED_FEATURES] {
            let a = faulty(g, 0, SMCCC_ARCH_FEATURES, f.into(), &mut m);
            assert_eq!(a, args::garbage(SMCCC_ARCH_FEATURES, f.into()));
            assert!(!matches!(a as i64, -3..=0));
        }
        let a = faulty(g, 0, PV_TIME_FEATURES, PV_TIME_ST.into(), &mut m);
        assert!(!matches!(a as i64, -3..=0));
        // The rest is answered as without the fault.
        assert_eq!(faulty(g, 0, SMCCC_VERSION, 0, &mut m), 0x1_0001);
        assert_eq!(
            faulty(
                g,
                0,
                SMCCC_ARCH_FEATURES,
                SMCCC_ARCH_FEATURES.into(),
                &mut m
            ),
            0
        );
        assert_eq!(faulty(g, 0, PV_TIME_ST, 0, &mut m), 0x5010_0000);
    }

    fn x0(offer: Offer, function: u32, arg: u64) -> u64 {
        match call(offer, 1, [function.into(), arg, 0, 0], &mut Fake::default()) {
            Outcome::Return(v) => v,
            other => panic!("{function:#x}: {other:?}"),
        }
    }

    #[test]
    fn the_probe_sees_kvm_with_everything() {
        assert_eq!(x0(ALL, psci::PSCI_VERSION, 0), 0x1_0001);
        assert_eq!(x0(ALL, PSCI_FEATURES, SMCCC_VERSION.into()), 0);
        assert_eq!(x0(ALL, SMCCC_VERSION, 0), 0x1_0001);
        assert_eq!(
            call(
                ALL,
                0,
                [VENDOR_HYP_CALL_UID.into(), 0, 0, 0],
                &mut Fake::default()
            ),
            Outcome::Return4(KVM_UID.map(u64::from))
        );
        assert_eq!(x0(ALL, VENDOR_HYP_KVM_FEATURES, 0), 1);
        for f in [PV_TIME_FEATURES, PV_LOCK_FEATURES, PV_SCHED_FEATURES] {
            assert_eq!(x0(ALL, SMCCC_ARCH_FEATURES, f.into()), 0, "{f:#x}");
        }
        assert_eq!(x0(ALL, PV_TIME_FEATURES, PV_TIME_ST.into()), 0);
        assert_eq!(x0(ALL, PV_LOCK_FEATURES, PV_LOCK_PREEMPTED.into()), 0);
        for f in [PV_SCHED_IPA_INIT, PV_SCHED_IPA_RELEASE, PV_SCHED_KICK_CPU] {
            assert_eq!(x0(ALL, PV_SCHED_FEATURES, f.into()), 0, "{f:#x}");
        }
        assert_eq!(x0(ALL, PV_TIME_ST, 0), 0x5010_0040);
        assert_eq!(x0(ALL, PV_LOCK_PREEMPTED, 0), 0x5010_1040);
    }

    #[test]
    fn switched_off_abis_look_absent() {
        // As QEMU's kvm-steal-time=off: ARCH_FEATURES still says yes.
        assert_eq!(x0(NONE, SMCCC_ARCH_FEATURES, PV_TIME_FEATURES.into()), 0);
        assert_eq!(x0(NONE, PV_TIME_FEATURES, PV_TIME_ST.into()), NS);
        assert_eq!(x0(NONE, PV_TIME_ST, 0), NS);
        assert_eq!(x0(NONE, SMCCC_ARCH_FEATURES, PV_LOCK_FEATURES.into()), NS);
        assert_eq!(x0(NONE, PV_LOCK_FEATURES, PV_LOCK_PREEMPTED.into()), NS);
        assert_eq!(x0(NONE, PV_LOCK_PREEMPTED, 0), NS);
        assert_eq!(x0(NONE, SMCCC_ARCH_FEATURES, PV_SCHED_FEATURES.into()), NS);
        for f in [
            PV_SCHED_FEATURES,
            PV_SCHED_IPA_INIT,
            PV_SCHED_IPA_RELEASE,
            PV_SCHED_KICK_CPU,
        ] {
            assert_eq!(x0(NONE, f, 0x4000_0000), NS, "{f:#x}");
        }
        // PSCI and the UID stay.
        assert_eq!(x0(NONE, PSCI_FEATURES, SMCCC_VERSION.into()), 0);
    }

    #[test]
    fn unknown_functions_and_immediates_are_not_supported() {
        for f in [
            PV_LOCK_V3,
            0x8600_0002,
            0xC500_0022,
            0x8500_0021, // PV_TIME_ST's SMC32 twin
            psci::PSCI_CPU_SUSPEND_64,
            psci::PSCI_SYSTEM_RESET2_32,
            0,
            u32::MAX,
        ] {
            assert_eq!(x0(ALL, f, 0), NS, "{f:#x}");
        }
        assert_eq!(x0(ALL, SMCCC_ARCH_FEATURES, 0x8000_8000), NS);
        assert_eq!(x0(ALL, PSCI_FEATURES, psci::PSCI_CPU_SUSPEND_64.into()), NS);
        let mut m = Fake::default();
        let out = dispatch(
            ALL,
            Fault::None,
            0,
            Call {
                x: [psci::PSCI_VERSION.into(), 0, 0, 0],
                imm: 1,
            },
            &mut m,
        );
        assert_eq!(out, Outcome::Return(NS));
    }

    #[test]
    fn sched_record_must_be_aligned_guest_ram() {
        let mut m = Fake::default();
        for bad in [
            0x4000_0020,
            0x3fff_ffc0,
            0x5000_0000,
            0x4fff_fff0,
            0x5010_0000, // host memory
            !63,
            0,
        ] {
            let out = call(ALL, 2, [PV_SCHED_IPA_INIT.into(), bad, 0, 0], &mut m);
            assert_eq!(out, Outcome::Return(INVAL), "{bad:#x}");
        }
        assert_eq!(m.sched, [None; 4]);
        let out = call(
            ALL,
            2,
            [PV_SCHED_IPA_INIT.into(), 0x4fff_ffc0, 0, 0],
            &mut m,
        );
        assert_eq!(out, Outcome::Return(0));
        assert_eq!(m.sched[2], Some(0x4fff_ffc0));
        call(ALL, 2, [PV_SCHED_IPA_RELEASE.into(), 0, 0, 0], &mut m);
        assert_eq!(m.sched[2], None);
    }

    #[test]
    fn kick_checks_the_target() {
        let mut m = Fake::default();
        for target in [4, 5, u64::MAX, 1 << 32] {
            let out = call(ALL, 0, [PV_SCHED_KICK_CPU.into(), target, 0, 0], &mut m);
            assert_eq!(out, Outcome::Return(INVAL));
        }
        assert_eq!(
            call(ALL, 0, [PV_SCHED_KICK_CPU.into(), 3, 0, 0], &mut m),
            Outcome::Return(0)
        );
        assert_eq!(m.kicks, [3]);
    }

    #[test]
    fn psci_power_calls() {
        let mut m = Fake::default();
        let on = |m: &mut Fake, f: u32, entry: u64| call(ALL, 0, [f.into(), 0x1, entry, 7], m);
        assert_eq!(
            on(&mut m, psci::PSCI_CPU_ON_64, 0x4020_0010),
            Outcome::Return(0)
        );
        assert_eq!(m.cpu_ons, [(1, 0x4020_0010, 7)]);
        let bad = Outcome::Return(psci::error::INVALID_ADDRESS as i64 as u64);
        assert_eq!(on(&mut m, psci::PSCI_CPU_ON_64, 0x5000_0000), bad);
        assert_eq!(on(&mut m, psci::PSCI_CPU_ON_64, 0x4020_0002), bad);
        assert_eq!(on(&mut m, psci::PSCI_CPU_ON_64, 0), bad);
        // SMC32: upper halves ignored.
        let out = call(
            ALL,
            0,
            [
                psci::PSCI_CPU_ON_32.into(),
                0xdead_0000_0002,
                0xffff_ffff_4020_0000,
                3,
            ],
            &mut m,
        );
        assert_eq!(out, Outcome::Return(0));
        assert_eq!(m.cpu_ons[1], (2, 0x4020_0000, 3));
        assert_eq!(x0(ALL, psci::PSCI_AFFINITY_INFO_64, 0), 1);
        assert_eq!(x0(ALL, psci::PSCI_MIGRATE_INFO_TYPE, 0), 2);
        for (f, o) in [
            (psci::PSCI_CPU_OFF, Outcome::CpuOff),
            (psci::PSCI_SYSTEM_OFF, Outcome::SystemOff),
            (psci::PSCI_SYSTEM_RESET, Outcome::SystemReset),
        ] {
            assert_eq!(call(ALL, 0, [f.into(), 0, 0, 0], &mut m), o);
            assert_eq!(x0(ALL, PSCI_FEATURES, f.into()), 0);
        }
        // The upper word of x0 is not part of the function ID.
        assert_eq!(
            call(ALL, 0, [0xffff_ffff_8400_0000, 0, 0, 0], &mut m),
            Outcome::Return(0x1_0001)
        );
    }

    #[test]
    fn random_calls_never_panic_and_never_touch_the_machine_unchecked() {
        let mut rng = crate::policy::SplitMix64::new(1);
        let mut m = Fake::default();
        let families = [
            PSCI_VERSION,
            psci::PSCI_CPU_SUSPEND_64 & !0xff,
            SMCCC_VERSION,
            VENDOR_HYP_KVM_FEATURES,
            VENDOR_HYP_CALL_UID & !0xff,
            PV_TIME_FEATURES & !0xff,
            PV_SCHED_FEATURES & !0xff,
            PV_LOCK_FEATURES & !0xff,
        ];
        for _ in 0..200_000 {
            let r = rng.next_u64();
            let f = families[(r % 8) as usize] | (r >> 8) as u32 & 0xff;
            let x = [
                f.into(),
                rng.next_u64() >> (r >> 58),
                rng.next_u64(),
                rng.next_u64(),
            ];
            let vcpu = (r >> 20) as usize % 4;
            let _ = dispatch(ALL, Fault::None, vcpu, Call { x, imm: 0 }, &mut m);
        }
        let ram = m.guest_ram();
        assert!(m
            .sched
            .iter()
            .flatten()
            .all(|&ipa| record_ipa_ok(ipa, &ram)));
        assert!(m.kicks.iter().all(|&k| k < 4));
        assert!(m.cpu_ons.iter().all(|&(_, entry, _)| ram.contains(&entry)));
    }
}
