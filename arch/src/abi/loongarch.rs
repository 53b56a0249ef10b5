//! LoongArch: the KVM paravirtual interface (`docs/abi.md`, "LoongArch";
//! upstream Linux 6.10+).
//!
//! Detection is three reads, in this order: the hypervisor bit of IOCSR
//! FEATURES, the signature at `cpucfg 0x4000_0000`, the feature word at
//! `cpucfg 0x4000_0004`. Calls are `hvcl 0x100`: a0 = function, a1..a5 =
//! arguments, the result in a0; every other register (a1..a5 included) is
//! preserved, so only a0 is clobbered.

// --- Detection ---------------------------------------------------------------

/// IOCSR FEATURES (IOCSR address).
pub const IOCSR_FEATURES: usize = 0x8;
/// Bit of [`IOCSR_FEATURES`]: running under a hypervisor (IOCSRF_VM).
pub const IOCSR_FEATURE_HYPERVISOR_BIT: u32 = 11;

/// First `cpucfg` index reserved for the hypervisor: no processor implements
/// anything in `[CPUCFG_KVM_BASE, CPUCFG_KVM_BASE + CPUCFG_KVM_SIZE)`.
pub const CPUCFG_KVM_BASE: u32 = 0x4000_0000;
pub const CPUCFG_KVM_SIZE: u32 = 0x100;
/// `cpucfg` index of the hypervisor signature.
pub const CPUCFG_KVM_SIGNATURE: u32 = CPUCFG_KVM_BASE;
/// KVM's signature: "KVM\0" read as a little-endian u32.
pub const KVM_SIGNATURE: u32 = 0x004D_564B;
const _: () = assert!(KVM_SIGNATURE == u32::from_le_bytes(*b"KVM\0"));
/// `cpucfg` index of the KVM feature word.
pub const CPUCFG_KVM_FEATURES: u32 = CPUCFG_KVM_BASE + 4;

// Bits of the feature word ([`CPUCFG_KVM_FEATURES`]).

/// FUNC_IPI is offered.
pub const KVM_FEATURE_IPI: u32 = 1;
/// FUNC_NOTIFY(STEAL_TIME) is offered: the host keeps a [`StealTimeRecord`].
pub const KVM_FEATURE_STEAL_TIME: u32 = 2;
/// The host maintains [`StealTimeRecord::preempted`] (QEMU 10.0 never sets it).
pub const KVM_FEATURE_PREEMPT: u32 = 3;
/// The virtual EIOINTC extension (routing to more CPUs); lodger does not use it.
pub const KVM_FEATURE_VIRT_EXTIOI: u32 = 24;
/// Hypercalls from user mode are forwarded to the VMM; lodger does not use it.
pub const KVM_FEATURE_USER_HCALL: u32 = 25;

// --- The hypercall -----------------------------------------------------------

/// The `hvcl` code of KVM's service calls.
pub const HVCL_KVM_CODE: u32 = 0x100;
/// The instruction word of `hvcl 0x100` (opcode 0x002B_8000 | code).
pub const HVCL_KVM_ENCODING: u32 = 0x002B_8000 | HVCL_KVM_CODE;
const _: () = assert!(HVCL_KVM_ENCODING == 0x002B_8100);

// Return codes (the signed value of a0).

pub const SUCCESS: i64 = 0;
pub const NOT_IMPLEMENTED: i64 = -1;
pub const INVALID_PARAMETER: i64 = -2;

/// FUNC_IPI (KVM's documentation calls it KVM_HCALL_FUNC_PV_IPI; same value): a1 / a2 =
/// low / high 64 bits of a 128-bit bitmap, a3 = the lowest **physical** CPU
/// id (CSR.CPUID) of the window; bit n targets physical id a3 + n. Delivered
/// to each target as SWI0 (ESTAT bit 0), which carries no vector. Always
/// returns [`SUCCESS`], whatever a1..a3 hold: ids with no vCPU are skipped,
/// and KVM keeps only the low 32 bits of a3 (an `unsigned int`).
///
/// The function is all 64 bits of a0: 1 with any upper bit set is no
/// function ([`NOT_IMPLEMENTED`]), nor is anything but [`FUNC_IPI`] and
/// [`FUNC_NOTIFY`].
pub const FUNC_IPI: u32 = 1;
/// CPUs one FUNC_IPI can reach: a window of consecutive physical ids.
pub const IPI_WINDOW_CPUS: u64 = 128;

/// FUNC_NOTIFY: a1 = the feature, as a mask ([`NOTIFY_STEAL_TIME`]), a2 =
/// the record's physical address | [`STEAL_PHYS_VALID`]; a2 = 0 unregisters.
/// Answers, in this order: [`NOT_IMPLEMENTED`] without STEAL_TIME offered or
/// for any a1 but [`NOTIFY_STEAL_TIME`] (all 64 bits); [`INVALID_PARAMETER`]
/// for an a2 with any of bits 5:1 set; else [`SUCCESS`], and a2 is this
/// vCPU's record from then on (without [`STEAL_PHYS_VALID`]: none). KVM does
/// not check that RAM is there: it writes a record it can reach.
pub const FUNC_NOTIFY: u32 = 2;
/// FUNC_NOTIFY's a1 for steal time: BIT(STEAL_TIME) = 4, a mask, not the
/// bit number.
pub const NOTIFY_STEAL_TIME: u64 = 1 << KVM_FEATURE_STEAL_TIME;
const _: () = assert!(NOTIFY_STEAL_TIME == 4);
/// FUNC_NOTIFY's a2: bit 0 says the address is valid (registers).
pub const STEAL_PHYS_VALID: u64 = 1 << 0;
/// FUNC_NOTIFY's a2: the address bits (a 64-byte-aligned physical address).
pub const STEAL_PHYS_MASK: u64 = !(STEAL_RECORD_ALIGN - 1);

// --- The steal-time record ---------------------------------------------------

/// Alignment of a [`StealTimeRecord`]: KVM rejects (-2) an address with
/// any of bits 5:1 set; 64 divides every page size, so an aligned record
/// also never crosses a page.
pub const STEAL_RECORD_ALIGN: u64 = 64;

/// One vCPU's steal-time record: guest-owned memory, host-written, one per
/// vCPU, registered with FUNC_NOTIFY. Atomics because the host writes it
/// while the guest reads.
///
/// Seqlock: the host makes `version` odd, updates the fields, makes it even
/// again. A reader retries while `version` is odd or changed across its read.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct StealTimeRecord {
    /// Nanoseconds this vCPU was runnable but not running, monotonic.
    pub steal_ns: core::sync::atomic::AtomicU64,
    /// Seqlock sequence number (odd while the host writes).
    pub version: core::sync::atomic::AtomicU32,
    /// Reserved (0).
    pub flags: core::sync::atomic::AtomicU32,
    /// Bit 0 ([`PREEMPTED`]): the vCPU is preempted. Valid only when
    /// [`KVM_FEATURE_PREEMPT`] is advertised. KVM sets it only when it takes
    /// the vCPU off involuntarily and clears it at the next steal update:
    /// 0 means "not known to be preempted", not "running".
    pub preempted: core::sync::atomic::AtomicU8,
    _pad: [u8; 47],
}

/// Bit of [`StealTimeRecord::preempted`]: the vCPU is preempted.
pub const PREEMPTED: u8 = 1 << 0;

pub const STEAL_OFFSET: usize = core::mem::offset_of!(StealTimeRecord, steal_ns);
pub const VERSION_OFFSET: usize = core::mem::offset_of!(StealTimeRecord, version);
pub const FLAGS_OFFSET: usize = core::mem::offset_of!(StealTimeRecord, flags);
pub const PREEMPTED_OFFSET: usize = core::mem::offset_of!(StealTimeRecord, preempted);
const _: () = assert!(STEAL_OFFSET == 0);
const _: () = assert!(VERSION_OFFSET == 8);
const _: () = assert!(FLAGS_OFFSET == 12);
const _: () = assert!(PREEMPTED_OFFSET == 16);
const _: () = assert!(core::mem::size_of::<StealTimeRecord>() == 64);
const _: () = assert!(core::mem::align_of::<StealTimeRecord>() as u64 == STEAL_RECORD_ALIGN);

impl StealTimeRecord {
    /// An all-zero record (version 0: even, no update in progress).
    pub const fn new() -> Self {
        use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};
        Self {
            steal_ns: AtomicU64::new(0),
            version: AtomicU32::new(0),
            flags: AtomicU32::new(0),
            preempted: AtomicU8::new(0),
            _pad: [0; 47],
        }
    }
}

impl Default for StealTimeRecord {
    fn default() -> Self {
        Self::new()
    }
}

/// Which LoongArch KVM features a host offers: what the LoongArch pvhost
/// model is told (`pvhost-ipi`, `pvhost-steal-time`, `pvhost-preempt`; xtask's
/// `--offer time,ipi,preempt`) and what hvcfuzz expects answers for, as
/// [`super::arm64::Offer`] is on arm64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// [`KVM_FEATURE_STEAL_TIME`]: FUNC_NOTIFY answers.
    pub time: bool,
    /// [`KVM_FEATURE_IPI`]: FUNC_IPI answers.
    pub ipi: bool,
    /// [`KVM_FEATURE_PREEMPT`]: no call of its own.
    pub preempt: bool,
}

impl Offer {
    pub const ALL: Offer = Offer {
        time: true,
        ipi: true,
        preempt: true,
    };
    pub const NONE: Offer = Offer {
        time: false,
        ipi: false,
        preempt: false,
    };

    /// What `hvcl 0x100` with a0..a2 = `function`, `a1`, `a2` answers (a0)
    /// from a host offering `self` (see [`FUNC_IPI`] and [`FUNC_NOTIFY`]).
    /// A successful FUNC_NOTIFY also changes the registration: see
    /// `pv::loongarch::raw::refusal` for the ones never to issue.
    pub fn answer(self, function: u64, a1: u64, a2: u64) -> i64 {
        match function {
            f if f == u64::from(FUNC_IPI) && self.ipi => SUCCESS,
            f if f == u64::from(FUNC_NOTIFY) && self.time => {
                if a1 != NOTIFY_STEAL_TIME {
                    NOT_IMPLEMENTED
                } else if a2 & !(STEAL_PHYS_MASK | STEAL_PHYS_VALID) != 0 {
                    INVALID_PARAMETER
                } else {
                    SUCCESS
                }
            }
            _ => NOT_IMPLEMENTED,
        }
    }
}
