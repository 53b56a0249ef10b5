//! arm64: SMCCC, PSCI and the KVM paravirtual calls (`spec/ABI.md`, "arm64").
//!
//! All calls: x0 = function ID, x1.. = arguments, results in x0..x3, through
//! the conduit the FDT's `/psci` `method` names (`hvc` under KVM).

/// SMCCC return codes (as the signed value of x0).
pub const SUCCESS: i64 = 0;
pub const NOT_SUPPORTED: i64 = -1;
pub const NOT_REQUIRED: i64 = -2;
pub const INVALID_PARAMETER: i64 = -3;

/// PSCI_VERSION: x0 = major << 16 | minor.
pub const PSCI_VERSION: u32 = 0x8400_0000;
/// PSCI_FEATURES (PSCI >= 1.0): x1 = function ID; 0 if implemented.
pub const PSCI_FEATURES: u32 = 0x8400_000A;

/// SMCCC_VERSION: 0x10001 or higher means SMCCC >= 1.1.
pub const SMCCC_VERSION: u32 = 0x8000_0000;
/// The first SMCCC version with SMCCC_VERSION and ARCH_FEATURES.
pub const SMCCC_VERSION_1_1: u32 = 0x1_0001;
/// SMCCC_ARCH_FEATURES: x1 = function to probe; 0 if implemented.
pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;

/// VENDOR_HYP_CALL_UID: the hypervisor's UID in x0..x3.
pub const VENDOR_HYP_CALL_UID: u32 = 0x8600_FF01;
/// KVM's vendor UID (x0..x3), 28b46fb6-2ec5-11e9-a9ca-4b564d003a74.
pub const KVM_UID: [u32; 4] = [0xB66F_B428, 0xE911_C52E, 0x564B_CAA9, 0x743A_004D];
/// VENDOR_HYP_KVM_FEATURES: bitmap in x0 of the KVM vendor calls offered.
pub const VENDOR_HYP_KVM_FEATURES: u32 = 0x8600_0000;
/// Bit of [`VENDOR_HYP_KVM_FEATURES`]: the features call itself.
pub const KVM_FEATURE_FEATURES: u32 = 0;
/// Bit of [`VENDOR_HYP_KVM_FEATURES`]: PTP on upstream KVM (function
/// 0x8600_0001), the same ID as PV lock v3.
pub const KVM_FEATURE_PTP: u32 = 1;

/// Whether a function ID is a vendor-hypervisor call (owner 6), which may
/// only be issued once the vendor UID is known.
pub const fn is_vendor_hyp_call(function: u32) -> bool {
    (function >> 24) & 0x3f == 6
}

/// Whether a function ID belongs to PSCI (owner 4, standard secure service).
pub const fn is_psci_call(function: u32) -> bool {
    (function >> 24) & 0x3f == 4 && function & 0xffff < 0x20
}

// --- PV time (DEN0057A; upstream KVM since Linux 5.5) ------------------------

/// PV_TIME_FEATURES: x1 = PV_TIME_ST; 0 if stolen time is offered.
pub const PV_TIME_FEATURES: u32 = 0xC500_0020;
/// PV_TIME_ST: IPA of the calling vCPU's [`PvTimeRecord`], or -1.
/// (Seed 001 says 0xC5000022; every host uses 0xC5000021.)
pub const PV_TIME_ST: u32 = 0xC500_0021;

/// The stolen-time record: host-written, guest read-only, 64-byte aligned.
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy, Default)]
pub struct PvTimeRecord {
    /// Must be 0.
    pub revision: u32,
    /// Must be 0.
    pub attributes: u32,
    /// Stolen nanoseconds, monotonic; one single-copy-atomic 64-bit read.
    pub stolen_time_ns: u64,
}
const _: () = assert!(core::mem::size_of::<PvTimeRecord>() == 64);
const _: () = assert!(core::mem::offset_of!(PvTimeRecord, attributes) == 4);
pub const PV_TIME_STOLEN_OFFSET: usize = core::mem::offset_of!(PvTimeRecord, stolen_time_ns);
const _: () = assert!(PV_TIME_STOLEN_OFFSET == 8);

// --- PV lock: the vCPU-preempted flag (seeds 000, 003; never upstream) -------

/// v2: PV_LOCK_FEATURES, x1 = function; 0 if offered.
pub const PV_LOCK_FEATURES: u32 = 0xC600_0020;
/// v2: PV_LOCK_PREEMPTED: IPA of this vCPU's [`PvLockRecord`], or -1.
/// (Seed 000's text says SUCCESS; its next paragraph and v3 return the IPA.)
pub const PV_LOCK_PREEMPTED: u32 = 0xC600_0021;
/// v3: one multiplexed call; x1 = [`PV_LOCK_V3_FEATURES`] or
/// [`PV_LOCK_V3_PREEMPTED`]. Collides with upstream KVM PTP: opt-in only.
pub const PV_LOCK_V3: u32 = 0x8600_0001;
pub const PV_LOCK_V3_FEATURES: u64 = 0;
pub const PV_LOCK_V3_PREEMPTED: u64 = 1;

/// The PV lock record: host-written, 64-byte aligned; non-zero = preempted.
/// (Seed 000 words it the other way round; its table and every host mean this.)
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy, Default)]
pub struct PvLockRecord {
    pub preempted: u64,
}
const _: () = assert!(core::mem::size_of::<PvLockRecord>() == 64);

// --- PV sched (openEuler KVM; seed 002 plus KICK_CPU) ------------------------

/// PV_SCHED_FEATURES: x1 = function to query; 0 if offered.
pub const PV_SCHED_FEATURES: u32 = 0xC500_0090;
/// PV_SCHED_IPA_INIT: x1 = IPA of a guest-allocated [`PvSchedRecord`].
pub const PV_SCHED_IPA_INIT: u32 = 0xC500_0091;
/// PV_SCHED_IPA_RELEASE: forget this vCPU's record.
pub const PV_SCHED_IPA_RELEASE: u32 = 0xC500_0092;
/// PV_SCHED_KICK_CPU: x1 = target vCPU index (KVM creation order); wakes a
/// vCPU halted in WFI.
pub const PV_SCHED_KICK_CPU: u32 = 0xC500_0093;

/// The PV sched record: guest-owned memory, host-written flag, 64 bytes.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct PvSchedRecord {
    /// Non-zero = this vCPU is preempted (little-endian u32).
    pub preempted: core::sync::atomic::AtomicU32,
}
const _: () = assert!(core::mem::size_of::<PvSchedRecord>() == 64);

impl PvSchedRecord {
    pub const fn new() -> Self {
        Self {
            preempted: core::sync::atomic::AtomicU32::new(0),
        }
    }
}

/// Records are 64-byte aligned.
pub const RECORD_ALIGN: u64 = 64;
