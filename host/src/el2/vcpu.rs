//! The vCPUs' shared state: what one pCPU may read or write about another's
//! vCPU (power state, CPU_ON entry, pending kick, PV sched record), and the
//! ground truth each pCPU counts for its own, printed at SYSTEM_OFF.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use super::{console, facts, MAX_PCPUS};

pub const POWER_OFF: u8 = 0;
pub const POWER_PENDING: u8 = 1;
pub const POWER_ON: u8 = 2;

/// What other pCPUs may read or write about a vCPU.
pub struct Vcpu {
    pub power: AtomicU8,
    /// The guest's CPU_ON entry point and context id.
    pub entry: AtomicU64,
    pub context: AtomicU64,
    /// A PV_SCHED_KICK_CPU arrived: the vCPU's next WFI returns at once
    /// (with `pvhost.fault=delay-kicks`, its next WFI from `kick_due_ns` on).
    pub kick: AtomicBool,
    /// When the pending kick takes effect (host time, ns; 0: at once).
    pub kick_due_ns: AtomicU64,
    /// IPA of the vCPU's PV sched record (0: none).
    pub sched_ipa: AtomicU64,
    /// This pCPU's GIC redistributor (RD frame).
    pub rd: AtomicU64,
    /// Ground truth.
    pub preemptions: AtomicU64,
    pub stolen_ns: AtomicU64,
    /// When the last preemption's steal reached the PV time record (host
    /// time, ns): a guest reading taken later holds all of `stolen_ns`.
    pub last_end_ns: AtomicU64,
    pub pv_calls: AtomicU64,
    /// Kicks to this vCPU that `pvhost.fault=drop-kicks` dropped.
    pub kicks_dropped: AtomicU64,
    /// Kicks to this vCPU that `pvhost.fault=delay-kicks` delayed.
    pub kicks_delayed: AtomicU64,
    /// Preemptions whose steal a steal fault wrote wrong into the record.
    pub steal_faults: AtomicU64,
    /// PV_SCHED_IPA_RELEASE calls that released a registered record (the
    /// guest's power-off releases each).
    pub sched_releases: AtomicU64,
    /// `preemptions` when the vCPU first asked PV_TIME_ST for its record
    /// (`u64::MAX`: not yet), from which the steal faults count.
    pub time_asked_at: AtomicU64,
}

impl Vcpu {
    const fn new() -> Self {
        Self {
            power: AtomicU8::new(POWER_OFF),
            entry: AtomicU64::new(0),
            context: AtomicU64::new(0),
            kick: AtomicBool::new(false),
            kick_due_ns: AtomicU64::new(0),
            sched_ipa: AtomicU64::new(0),
            rd: AtomicU64::new(0),
            preemptions: AtomicU64::new(0),
            stolen_ns: AtomicU64::new(0),
            last_end_ns: AtomicU64::new(0),
            pv_calls: AtomicU64::new(0),
            kicks_dropped: AtomicU64::new(0),
            kicks_delayed: AtomicU64::new(0),
            steal_faults: AtomicU64::new(0),
            sched_releases: AtomicU64::new(0),
            time_asked_at: AtomicU64::new(u64::MAX),
        }
    }
}

pub static VCPUS: [Vcpu; MAX_PCPUS] = [const { Vcpu::new() }; MAX_PCPUS];

/// The machine-readable ground truth, one line per vCPU:
/// `pvhost: cpu=N preemptions=K stolen_ns=S pv_calls=C last_end_ns=E
/// kicks_dropped=D kicks_delayed=L steal_faults=F sched_releases=R
/// sched_registered=0|1` (`sched_registered`: a PV sched record still
/// registered at SYSTEM_OFF).
///
/// `last_end_ns` is when the vCPU's last preemption reached its PV time
/// record (host time, which is the guest's clock too: CNTVOFF = 0): a guest
/// reading of the record taken after it must equal `stolen_ns` (see
/// `xtask/src/steal.rs`). A preemption still under way is not counted; it
/// would be added to both when it ends.
pub fn report_ground_truth() {
    for (cpu, v) in VCPUS.iter().enumerate().take(facts().pcpus) {
        // Acquire, then `last_end_ns`: see `inject::preempted_wait`.
        let stolen_ns = v.stolen_ns.load(Ordering::Acquire);
        console::line(format_args!(
            "pvhost: cpu={cpu} preemptions={} stolen_ns={stolen_ns} pv_calls={} last_end_ns={} kicks_dropped={} kicks_delayed={} steal_faults={} sched_releases={} sched_registered={}",
            v.preemptions.load(Ordering::Relaxed),
            v.pv_calls.load(Ordering::Relaxed),
            v.last_end_ns.load(Ordering::Relaxed),
            v.kicks_dropped.load(Ordering::Relaxed),
            v.kicks_delayed.load(Ordering::Relaxed),
            v.steal_faults.load(Ordering::Relaxed),
            v.sched_releases.load(Ordering::Relaxed),
            u8::from(v.sched_ipa.load(Ordering::Acquire) != 0),
        ));
    }
}
