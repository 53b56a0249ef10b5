//! Paravirtualisation: what the boot switches ask for, what the probes
//! found, and the probe logic itself, kept free of hardware access so it is
//! unit-tested against simulated hosts. The architecture modules supply the
//! real hypercalls and map the records; the kernel's `pv` view reads the
//! result.
//!
//! One file per concern: the switches and the lock choice here, the
//! report ([`report`]), the run-time guards on host records ([`guard`]),
//! the raw call ([`raw`]) and CPU sets ([`cpu_mask`]); each ABI's probe in
//! [`arm64`] and [`loongarch`].

pub mod arm64;
pub mod cpu_mask;
pub mod guard;
pub mod loongarch;
pub mod raw;
pub mod report;

pub use cpu_mask::CpuMask;
pub use guard::{
    judge_steal, PreemptedGuard, StealFault, StealGuard, StealOrigin, PREEMPTED_STUCK_TICKS,
    STEAL_SLACK_NS,
};
pub use raw::{RawCallError, RawConvention, RawRegs};
pub use report::{
    fallback_note, note, CallList, CallLog, FallbackLine, Feature, Hypervisor, Note, PvFeature,
    PvReport, State, CALL_LOG_LEN,
};

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
