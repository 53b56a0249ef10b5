//! The boot report of the probes: who the host is, what became of each
//! PV feature and why, and the hypercalls the probes issued.

use core::fmt::{self, Write as _};

use heapless::{String, Vec};

use super::{arm64, loongarch};

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
