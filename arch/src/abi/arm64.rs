//! arm64: SMCCC, PSCI and the KVM paravirtual calls (`docs/abi.md`, "arm64").
//!
//! All calls: x0 = function ID, x1.. = arguments, results in x0..x3, through
//! the conduit the FDT's `/psci` `method` names (`hvc` under KVM).

/// SMCCC return codes (as the signed value of x0).
pub const SUCCESS: i64 = 0;
pub const NOT_SUPPORTED: i64 = -1;
pub const NOT_REQUIRED: i64 = -2;
pub const INVALID_PARAMETER: i64 = -3;

/// PSCI's function IDs (DEN0022) are the `smccc` crate's, the one
/// definition: `psci::PSCI_CPU_ON_64` and so on. The probe issues two:
/// PSCI_VERSION (x0 = major << 16 | minor) and PSCI_FEATURES (PSCI >= 1.0:
/// x1 = function ID; 0 if implemented).
pub use smccc::psci;
pub use smccc::psci::{PSCI_FEATURES, PSCI_VERSION};
/// PSCI 1.1 as PSCI_VERSION says it, what KVM and pvhost offer.
pub const PSCI_VERSION_1_1: u32 = 0x1_0001;
/// The functions PSCI_FEATURES answers 0 for: what pvhost implements, and
/// what hvcfuzz expects of the host it checks.
pub const PSCI_IMPLEMENTED: [u32; 11] = [
    PSCI_VERSION,
    psci::PSCI_CPU_OFF,
    psci::PSCI_CPU_ON_32,
    psci::PSCI_CPU_ON_64,
    psci::PSCI_AFFINITY_INFO_32,
    psci::PSCI_AFFINITY_INFO_64,
    psci::PSCI_MIGRATE_INFO_TYPE,
    psci::PSCI_SYSTEM_OFF,
    psci::PSCI_SYSTEM_RESET,
    PSCI_FEATURES,
    SMCCC_VERSION,
];
/// PSCI's `target_cpu` (CPU_ON, AFFINITY_INFO) and the GIC's routing: the
/// affinity fields of MPIDR_EL1 (Aff3 in bits 39:32, Aff2..Aff0 in 23:0).
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;
/// MIGRATE_INFO_TYPE's answer "no Trusted OS, or one that needs no
/// migration".
pub const PSCI_MIGRATE_INFO_TYPE_NONE: u64 = 2;

/// SMCCC's architecture calls (DEN0028), the `smccc` crate's too:
/// SMCCC_VERSION (0x10001 or higher means SMCCC >= 1.1) and
/// SMCCC_ARCH_FEATURES (x1 = function to probe; 0 if implemented), and
/// the ones no host here implements, which hvcfuzz calls.
pub use smccc::arch::{
    SMCCC_ARCH_FEATURES, SMCCC_ARCH_SOC_ID, SMCCC_ARCH_WORKAROUND_1, SMCCC_ARCH_WORKAROUND_2,
    SMCCC_ARCH_WORKAROUND_3, SMCCC_VERSION,
};
/// The first SMCCC version with SMCCC_VERSION and ARCH_FEATURES.
pub const SMCCC_VERSION_1_1: u32 = 0x1_0001;
/// The SMC64/HVC64 bit of a function ID (clear: SMC32/HVC32, whose
/// arguments are the low 32 bits of x1..).
pub const SMC64: u32 = 1 << 30;

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

/// The owner of a function ID: its bits 29:24 (SMCCC, "Function
/// Identifier").
pub const fn owner(function: u32) -> u32 {
    (function >> 24) & 0x3f
}
/// Owner: standard secure services (PSCI, SDEI, FF-A, TRNG).
pub const OWNER_STANDARD_SECURE: u32 = 4;
/// Owner: vendor-specific hypervisor services (KVM's UID, features, PTP).
pub const OWNER_VENDOR_HYP: u32 = 6;

/// Whether a function ID is a vendor-hypervisor call (owner 6), which may
/// only be issued once the vendor UID is known.
pub const fn is_vendor_hyp_call(function: u32) -> bool {
    owner(function) == OWNER_VENDOR_HYP
}

/// Whether a function ID belongs to PSCI (owner 4, standard secure service).
pub const fn is_psci_call(function: u32) -> bool {
    owner(function) == OWNER_STANDARD_SECURE && function & 0xffff < 0x20
}

// --- PV time (DEN0057A; upstream KVM since Linux 5.5) ------------------------

/// PV_TIME_FEATURES: x1 = PV_TIME_ST; 0 if stolen time is offered.
pub const PV_TIME_FEATURES: u32 = 0xC500_0020;
/// PV_TIME_ST: IPA of the calling vCPU's [`PvTimeRecord`], or -1.
/// (An early draft says 0xC5000022; every host uses 0xC5000021.)
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

// --- PV lock: the vCPU-preempted flag (drafts v2 and v3; never upstream) ----

/// v2: PV_LOCK_FEATURES, x1 = function; 0 if offered.
pub const PV_LOCK_FEATURES: u32 = 0xC600_0020;
/// v2: PV_LOCK_PREEMPTED: IPA of this vCPU's [`PvLockRecord`], or -1.
/// (The v2 draft's text says SUCCESS; its next paragraph and v3 return the IPA.)
pub const PV_LOCK_PREEMPTED: u32 = 0xC600_0021;
/// v3: one multiplexed call; x1 = [`PV_LOCK_V3_FEATURES`] or
/// [`PV_LOCK_V3_PREEMPTED`]. Collides with upstream KVM PTP: opt-in only.
pub const PV_LOCK_V3: u32 = 0x8600_0001;
pub const PV_LOCK_V3_FEATURES: u64 = 0;
pub const PV_LOCK_V3_PREEMPTED: u64 = 1;

/// The PV lock record: host-written, 64-byte aligned; non-zero = preempted.
/// (The v2 draft words it the other way round; its table and every host mean this.)
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy, Default)]
pub struct PvLockRecord {
    pub preempted: u64,
}
const _: () = assert!(core::mem::size_of::<PvLockRecord>() == 64);

// --- PV sched (openEuler KVM, plus KICK_CPU) ---------------------------------

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
/// Every record IPA a host returns lies below this.
pub const IPA_LIMIT: u64 = 1 << 48;

/// Which of PV time, PV lock v2 and PV sched a host offers: what pvhost
/// is told (`pvhost.time/lock/sched`) and what hvcfuzz expects answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    pub time: bool,
    pub lock: bool,
    pub sched: bool,
}

impl Offer {
    pub const ALL: Offer = Offer {
        time: true,
        lock: true,
        sched: true,
    };
    pub const NONE: Offer = Offer {
        time: false,
        lock: false,
        sched: false,
    };
}
