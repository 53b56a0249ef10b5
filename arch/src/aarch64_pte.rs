//! aarch64: the stage-1 translation table bits (VMSAv8-64, 4 KiB granule)
//! and the MAIR layout they index, one definition for the kernel's EL1 map
//! (`aarch64/mmu.rs`) and pvhost's EL2 map (`host/src/el2/start.rs`). Both
//! map the PV records Normal write-back, so guest and host agree on their
//! attributes.

/// MAIR_ELx: attr0 = Device-nGnRE (0x04), attr1 = Normal, inner/outer
/// write-back read/write-allocate (0xff).
pub const MAIR_VALUE: u64 = 0xff04;

/// Bit 0: the descriptor is valid.
pub const DESC_VALID: u64 = 1 << 0;
/// Bit 1 set: table (levels 1-2) or page (level 3); clear: block.
pub const DESC_TABLE_OR_PAGE: u64 = 1 << 1;
/// AttrIndx = 0: [`MAIR_VALUE`]'s Device-nGnRE.
pub const ATTR_INDEX_DEVICE: u64 = 0 << 2;
/// AttrIndx = 1: [`MAIR_VALUE`]'s Normal write-back.
pub const ATTR_INDEX_NORMAL: u64 = 1 << 2;
/// AP[1]: EL0 access in the EL1&0 regime; RES1 in a regime with one
/// privilege level (EL2 with E2H = 0).
pub const AP1: u64 = 1 << 6;
/// AP[2]: read-only (at every level the regime has).
pub const AP_RO: u64 = 1 << 7;
/// SH = 0b11: inner shareable.
pub const SH_INNER: u64 = 3 << 8;
/// The access flag (set: no access-flag fault).
pub const AF: u64 = 1 << 10;
/// Privileged execute-never (EL1&0 regime).
pub const PXN: u64 = 1 << 53;
/// Unprivileged execute-never in the EL1&0 regime; XN in EL2's.
pub const UXN: u64 = 1 << 54;
/// The output address of a block, page or next-level table (48-bit PA).
pub const OUTPUT_ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;
