//! The host-owned PV records (PV time and PV lock, one of each per vCPU, in
//! one page the guest maps) and the preempted flags pvhost writes into
//! them and into each vCPU's guest-owned PV sched record.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use arch::abi::arm64::{PvLockRecord, PvSchedRecord, PvTimeRecord, PV_TIME_STOLEN_OFFSET};
use host::args::Fault;

use super::vcpu::VCPUS;
use super::{facts, MAX_PCPUS};

/// PV time record as pvhost writes it: the ABI's [`PvTimeRecord`] with
/// atomic fields (revision and attributes stay 0).
#[repr(C, align(64))]
pub struct TimeSlot {
    pub revision_attributes: AtomicU64,
    pub stolen_ns: AtomicU64,
}
const _: () = assert!(core::mem::size_of::<TimeSlot>() == core::mem::size_of::<PvTimeRecord>());
const _: () = assert!(core::mem::offset_of!(TimeSlot, stolen_ns) == PV_TIME_STOLEN_OFFSET);

/// PV lock record as pvhost writes it ([`PvLockRecord`], atomic).
#[repr(C, align(64))]
pub struct LockSlot {
    pub preempted: AtomicU64,
}
const _: () = assert!(core::mem::size_of::<LockSlot>() == core::mem::size_of::<PvLockRecord>());
const _: () = assert!(core::mem::offset_of!(PvLockRecord, preempted) == 0);
const _: () = assert!(core::mem::offset_of!(PvSchedRecord, preempted) == 0);

/// The host-owned records, in one page of their own (the guest maps it).
#[repr(C, align(4096))]
pub struct Records {
    pub time: [TimeSlot; MAX_PCPUS],
    pub lock: [LockSlot; MAX_PCPUS],
}
const _: () = assert!(core::mem::size_of::<Records>() == 4096);

pub static RECORDS: Records = Records {
    time: [const {
        TimeSlot {
            revision_attributes: AtomicU64::new(0),
            stolen_ns: AtomicU64::new(0),
        }
    }; MAX_PCPUS],
    lock: [const {
        LockSlot {
            preempted: AtomicU64::new(0),
        }
    }; MAX_PCPUS],
};

/// Sets or clears `cpu`'s preempted flags (PV lock record, PV sched record).
pub fn set_preempted(cpu: usize, preempted: bool) {
    let preempted = preempted || facts().fault == Fault::StuckPreempted;
    RECORDS.lock[cpu]
        .preempted
        .store(u64::from(preempted), Ordering::Release);
    let ipa = VCPUS[cpu].sched_ipa.load(Ordering::Acquire);
    if ipa != 0 {
        // SAFETY: `ipa` passed `hvc::record_ipa_ok` (64-byte aligned, inside
        // guest RAM, which the EL2 map covers as Normal memory); the record's
        // first field is the u32 flag, written atomically for the guest.
        let flag = unsafe { &*(ipa as *const AtomicU32) };
        flag.store(u32::from(preempted), Ordering::Release);
    }
}
