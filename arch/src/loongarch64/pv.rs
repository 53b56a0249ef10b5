//! LoongArch PV detection: the IOCSR hypervisor bit, then the KVM signature.
//! (Steal time, PREEMPT and the PV IPI are not wired up yet: reported so.)

use loongArch64::cpu::CPUCFG;
use loongArch64::iocsr::iocsr_read_d;

use crate::pv::{note, Hypervisor, PvReport, PvSwitches, State};

/// IOCSR FEATURES register and its "running under a hypervisor" bit.
const IOCSR_FEATURES: usize = 0x8;
const IOCSR_FEATURE_HYPERVISOR: u64 = 1 << 11;
/// `cpucfg 0x4000_0000` under KVM: "KVM\0".
const CPUCFG_KVM_SIGNATURE: usize = 0x4000_0000;
const KVM_SIGNATURE: usize = 0x004D_564B;

pub(super) fn probe(switches: &PvSwitches) -> PvReport {
    let features = ["time", "preempt", "ipi"];
    if !switches.enabled {
        let mut report = PvReport::new(
            Hypervisor::NotProbed,
            note(format_args!("pv=off: nothing probed")),
        );
        for name in features {
            report.set(name, State::SwitchedOff, note(format_args!("pv=off")));
        }
        return report;
    }
    let hv_bit = iocsr_read_d(IOCSR_FEATURES) & IOCSR_FEATURE_HYPERVISOR != 0;
    if !hv_bit {
        let mut report = PvReport::new(
            Hypervisor::None,
            note(format_args!("IOCSR FEATURES bit 11 clear")),
        );
        for name in features {
            report.set(name, State::NotProbed, note(format_args!("no hypervisor")));
        }
        return report;
    }
    let signature = CPUCFG::read(CPUCFG_KVM_SIGNATURE).get_bits(0, 31);
    let kvm = signature == KVM_SIGNATURE;
    let mut report = PvReport::new(
        if kvm {
            Hypervisor::Kvm
        } else {
            Hypervisor::Unknown
        },
        note(format_args!(
            "hypervisor bit set, cpucfg 0x40000000 = {signature:#x}"
        )),
    );
    for name in features {
        report.set(
            name,
            State::NotProbed,
            note(format_args!("LoongArch PV not implemented yet")),
        );
    }
    report
}
