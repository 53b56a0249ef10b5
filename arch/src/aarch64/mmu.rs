//! EL1 stage-1 translation: 4 KiB granule, 39-bit VA, walks start at level 1,
//! identity map (VA = PA).
//!
//! | level | one entry maps | descriptor kinds      |
//! |-------|----------------|-----------------------|
//! | 1     | 1 GiB          | block, table          |
//! | 2     | 2 MiB          | block, table          |
//! | 3     | 4 KiB          | page                  |
//!
//! The boot map ([`BOOT_L1`]) is static: level-1 entry 0 is the device window
//! `[0, 1 GiB)` as one Device-nGnRE block, entry 1 points to [`BOOT_L2`],
//! which maps `[1 GiB, 2 GiB)` as 2 MiB Normal write-back blocks (QEMU `virt`
//! RAM starts at 1 GiB and the image is linked there). The kernel then trims
//! it to the RAM the FDT reports with [`map`] / [`unmap`], which split blocks
//! and allocate tables from a static pool.
//!
//! Changes are serialised by one lock, published with `dsb ishst`, and made
//! visible on every CPU with broadcast (inner shareable) invalidations, which
//! the hardware carries to every CPU that may cache the entries: no IPI, no
//! target list, and `dsb ish` completes them everywhere before the call
//! returns. A small range goes by address (`tlbi vae1is`, `tlbi vale1is`
//! where only leaf entries changed), more than [`RANGE_FLUSH_MAX_PAGES`] as
//! `tlbi vmalle1is`. A valid block that must be split goes through
//! break-before-make (invalid, TLBI, table), so a caller must not split the
//! block it is executing from or using as its stack.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::{Access, MapError, MemAttr, ShootdownStats};

pub(super) use crate::aarch64_pte::MAIR_VALUE as MAIR_EL1_VALUE;

pub(super) const PAGE_SIZE: usize = 4096;
const ENTRIES: usize = 512;
pub(super) const VA_BITS: u32 = 39;
const PA_LIMIT: usize = 1 << 48;

use crate::aarch64_pte::{
    AF, AP_RO, ATTR_INDEX_DEVICE, ATTR_INDEX_NORMAL, DESC_TABLE_OR_PAGE, DESC_VALID,
    OUTPUT_ADDR_MASK, PXN, SH_INNER, UXN,
};
/// Attribute bits a block carries into the pages it is split into.
const LEAF_ATTR_MASK: u64 = !OUTPUT_ADDR_MASK & !(DESC_VALID | DESC_TABLE_OR_PAGE);

const GIB: usize = 1 << 30;
const MIB2: usize = 2 << 20;

/// One translation table.
#[repr(C, align(4096))]
pub struct Table([AtomicU64; ENTRIES]);

impl Table {
    const fn empty() -> Self {
        Self([const { AtomicU64::new(0) }; ENTRIES])
    }
}

const fn leaf_attrs(attr: MemAttr) -> u64 {
    match attr {
        MemAttr::Device => ATTR_INDEX_DEVICE | AF | PXN | UXN,
        MemAttr::Normal => ATTR_INDEX_NORMAL | SH_INNER | AF | UXN,
    }
}

const fn boot_l2() -> Table {
    let mut t = Table::empty();
    let mut i = 0;
    while i < ENTRIES {
        let pa = (GIB + i * MIB2) as u64;
        t.0[i] = AtomicU64::new(pa | leaf_attrs(MemAttr::Normal) | DESC_VALID);
        i += 1;
    }
    t
}

const fn boot_l1() -> Table {
    let mut t = Table::empty();
    t.0[0] = AtomicU64::new(leaf_attrs(MemAttr::Device) | DESC_VALID);
    // Entry 1 (-> BOOT_L2) is stored by `link_boot_tables`: a static's
    // address is not a constant.
    t
}

/// The boot map's device window is `[0, BOOT_DEVICE_WINDOW_END)`; devices
/// above it must be mapped with [`map`].
pub(super) const BOOT_DEVICE_WINDOW_END: usize = GIB;

/// The range [`BOOT_L2`] maps as Normal memory.
pub(super) const BOOT_RAM_WINDOW: (usize, usize) = (GIB, 2 * GIB);

/// Root table, loaded into TTBR0_EL1 by every CPU's `mmu_on`.
pub static BOOT_L1: Table = boot_l1();
/// `[1 GiB, 2 GiB)` in 2 MiB blocks.
static BOOT_L2: Table = boot_l2();

/// Tables for [`map`] to split blocks into.
const POOL_TABLES: usize = 64;
static POOL: [Table; POOL_TABLES] = [const { Table::empty() }; POOL_TABLES];
static POOL_USED: AtomicUsize = AtomicUsize::new(0);

static MAP_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Above this many pages a flush is one `tlbi vmalle1is`: each by-address
/// TLBI is a broadcast message every CPU must handle, and refilling a small
/// kernel's entries costs less than a long series of them.
const RANGE_FLUSH_MAX_PAGES: usize = 16;
/// Calls whose changes were flushed, and broadcast TLBIs issued for them.
static SHOOTDOWNS: AtomicU64 = AtomicU64::new(0);
static BROADCASTS: AtomicU64 = AtomicU64::new(0);

core::arch::global_asm!(
    r#"
// Called by `_start` with the MMU off: BOOT_L1[1] = table(BOOT_L2).
// The line is invalidated so no stale cached copy shadows it once the
// (cacheable) table walks start. Clobbers x9, x10.
.section .text.boot, "ax"
.global link_boot_tables
link_boot_tables:
    adrp    x9, {l2}
    orr     x9, x9, #3              // valid table descriptor
    adrp    x10, {l1}
    str     x9, [x10, #8]
    dmb     sy
    add     x10, x10, #8
    dc      ivac, x10
    dsb     sy
    ret
"#,
    l1 = sym BOOT_L1,
    l2 = sym BOOT_L2,
);

fn level_size(level: usize) -> usize {
    match level {
        1 => GIB,
        2 => MIB2,
        _ => PAGE_SIZE,
    }
}

fn index(va: usize, level: usize) -> usize {
    (va >> (12 + 9 * (3 - level))) & (ENTRIES - 1)
}

fn table_at(desc: u64) -> &'static Table {
    let pa = (desc & OUTPUT_ADDR_MASK) as usize;
    // SAFETY: table descriptors are only ever written by this module and point
    // at BOOT_L2 or a POOL table, which are 'static and identity-mapped.
    unsafe { &*(pa as *const Table) }
}

fn is_table(desc: u64, level: usize) -> bool {
    level < 3 && desc & (DESC_VALID | DESC_TABLE_OR_PAGE) == DESC_VALID | DESC_TABLE_OR_PAGE
}

fn leaf(pa: usize, attrs: u64, level: usize) -> u64 {
    let kind = if level == 3 { DESC_TABLE_OR_PAGE } else { 0 };
    pa as u64 | attrs | kind | DESC_VALID
}

fn alloc_table() -> Result<&'static Table, MapError> {
    let i = POOL_USED.fetch_add(1, Ordering::Relaxed);
    let table = POOL.get(i).ok_or(MapError::NoTables)?;
    Ok(table)
}

fn flush_tlb_all() {
    BROADCASTS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: barriers and a broadcast TLB invalidation have no memory-safety
    // preconditions; they order the descriptor stores before the flush.
    unsafe {
        core::arch::asm!(
            "dsb ishst",
            "tlbi vmalle1is",
            "dsb ish",
            "isb",
            options(nostack, preserves_flags)
        );
    }
}

/// Which entries a by-address flush drops.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Levels {
    /// Only leaf (page or block) entries changed: `vale1is`.
    Leaf,
    /// Table entries may have changed too: `vae1is`.
    All,
}

/// Makes the changes to `[start, end)` visible on every CPU: the descriptor
/// stores complete (`dsb ishst`), then the broadcast invalidations, then
/// `dsb ish` waits until every CPU in the inner shareable domain has done
/// them, and `isb` drops what this CPU fetched under the old entries.
fn flush_range(start: usize, end: usize, levels: Levels) {
    SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
    let pages = (end - start) / PAGE_SIZE;
    if pages > RANGE_FLUSH_MAX_PAGES {
        return flush_tlb_all();
    }
    BROADCASTS.fetch_add(pages as u64, Ordering::Relaxed);
    // SAFETY: barriers only order this CPU's memory accesses.
    unsafe { core::arch::asm!("dsb ishst", options(nostack, preserves_flags)) };
    for va in (start..end).step_by(PAGE_SIZE) {
        // The operand: VA[55:12] in bits [43:0], ASID 0 (every entry lodger
        // makes is global, which by-address TLBIs match whatever the ASID).
        let operand = (va >> 12) as u64;
        // SAFETY: a broadcast invalidation by address has no memory-safety
        // preconditions; later accesses walk the (updated) tables.
        unsafe {
            match levels {
                Levels::Leaf => core::arch::asm!("tlbi vale1is, {x}", x = in(reg) operand,
                    options(nostack, preserves_flags)),
                Levels::All => core::arch::asm!("tlbi vae1is, {x}", x = in(reg) operand,
                    options(nostack, preserves_flags)),
            }
        }
    }
    // SAFETY: as above.
    unsafe { core::arch::asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
}

/// The flushes' counters since boot (no IPI, no hypercall: the hardware
/// broadcasts).
pub fn stats() -> ShootdownStats {
    ShootdownStats {
        shootdowns: SHOOTDOWNS.load(Ordering::Relaxed),
        broadcasts: BROADCASTS.load(Ordering::Relaxed),
        ..ShootdownStats::default()
    }
}

/// Returns the table that `slot` (at `level`) points to, creating it (empty)
/// or splitting a block into it as needed.
fn next_table(slot: &AtomicU64, level: usize) -> Result<&'static Table, MapError> {
    let desc = slot.load(Ordering::Relaxed);
    if is_table(desc, level) {
        return Ok(table_at(desc));
    }
    let table = alloc_table()?;
    if desc & DESC_VALID != 0 {
        // Split a block: the same output range and attributes, one level down.
        let base = (desc & OUTPUT_ADDR_MASK) as usize;
        let attrs = desc & LEAF_ATTR_MASK;
        let step = level_size(level + 1);
        for (i, e) in table.0.iter().enumerate() {
            e.store(leaf(base + i * step, attrs, level + 1), Ordering::Relaxed);
        }
        // Break-before-make.
        slot.store(0, Ordering::Relaxed);
        flush_tlb_all();
    }
    slot.store(
        table as *const Table as u64 | DESC_VALID | DESC_TABLE_OR_PAGE,
        Ordering::Release,
    );
    Ok(table)
}

fn check_range(va: usize, size: usize) -> Result<(), MapError> {
    let end = va.checked_add(size).ok_or(MapError::BadRange)?;
    if !va.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) || end > 1 << VA_BITS {
        return Err(MapError::BadRange);
    }
    Ok(())
}

/// Maps `[va, va + size)` to `[pa, pa + size)` with `attr`, using the largest
/// blocks alignment allows.
pub fn map(va: usize, pa: usize, size: usize, attr: MemAttr) -> Result<(), MapError> {
    check_range(va, size)?;
    if !pa.is_multiple_of(PAGE_SIZE) || pa.checked_add(size).is_none_or(|end| end > PA_LIMIT) {
        return Err(MapError::BadRange);
    }
    let _guard = MAP_LOCK.lock();
    let attrs = leaf_attrs(attr);
    let mut done = 0;
    while done < size {
        let (v, p, left) = (va + done, pa + done, size - done);
        let mut table = &BOOT_L1;
        let mut level = 1;
        loop {
            let step = level_size(level);
            let slot = &table.0[index(v, level)];
            let fits = v.is_multiple_of(step) && p.is_multiple_of(step) && left >= step;
            let current = slot.load(Ordering::Relaxed);
            if level == 3 || (fits && !is_table(current, level)) {
                let new = leaf(p, attrs, level);
                if current & DESC_VALID != 0 && current != new {
                    // Changing a live translation (address or memory type)
                    // needs break-before-make.
                    slot.store(0, Ordering::Relaxed);
                    flush_tlb_all();
                }
                slot.store(new, Ordering::Relaxed);
                done += step;
                break;
            }
            table = next_table(slot, level)?;
            level += 1;
        }
    }
    // Nothing stale to drop where only invalid entries were replaced (they
    // are never cached), but what the loop above broke it already flushed;
    // one more by address is cheap and keeps `map` a full barrier.
    flush_range(va, va + size, Levels::All);
    Ok(())
}

/// Removes the translation of `[va, va + size)`; unmapped parts are skipped.
/// Tables emptied this way are not reclaimed.
pub fn unmap(va: usize, size: usize) -> Result<(), MapError> {
    check_range(va, size)?;
    let _guard = MAP_LOCK.lock();
    let end = va + size;
    let mut v = va;
    while v < end {
        let mut table = &BOOT_L1;
        let mut level = 1;
        loop {
            let step = level_size(level);
            let slot = &table.0[index(v, level)];
            let desc = slot.load(Ordering::Relaxed);
            let covers = v.is_multiple_of(step) && end - v >= step;
            if desc & DESC_VALID == 0 || covers || level == 3 {
                if desc & DESC_VALID != 0 {
                    slot.store(0, Ordering::Relaxed);
                }
                // Skip to the end of this entry's span.
                v = (v & !(step - 1)) + step;
                break;
            }
            table = next_table(slot, level)?;
            level += 1;
        }
    }
    // A whole-entry unmap above level 3 may have dropped a table: all levels.
    flush_range(va, end, Levels::All);
    Ok(())
}

/// Sets what the mapped parts of `[va, va + size)` allow (AP[2]); a block
/// only partly in the range is split first. Unmapped parts are skipped.
/// Only permissions change, so no break-before-make is needed.
pub fn protect(va: usize, size: usize, access: Access) -> Result<(), MapError> {
    check_range(va, size)?;
    let _guard = MAP_LOCK.lock();
    let end = va + size;
    let mut v = va;
    while v < end {
        let mut table = &BOOT_L1;
        let mut level = 1;
        loop {
            let step = level_size(level);
            let slot = &table.0[index(v, level)];
            let desc = slot.load(Ordering::Relaxed);
            let covers = v.is_multiple_of(step) && end - v >= step;
            if desc & DESC_VALID == 0 || (!is_table(desc, level) && (covers || level == 3)) {
                if desc & DESC_VALID != 0 {
                    let desc = match access {
                        Access::ReadWrite => desc & !AP_RO,
                        Access::ReadOnly => desc | AP_RO,
                    };
                    slot.store(desc, Ordering::Relaxed);
                }
                v = (v & !(step - 1)) + step;
                break;
            }
            table = next_table(slot, level)?;
            level += 1;
        }
    }
    flush_range(va, end, Levels::Leaf);
    Ok(())
}

/// The memory type `va` is mapped with, or `None` if unmapped.
pub fn attr_of(va: usize) -> Option<MemAttr> {
    if va >= 1 << VA_BITS {
        return None;
    }
    let mut table = &BOOT_L1;
    for level in 1..=3 {
        let desc = table.0[index(va, level)].load(Ordering::Acquire);
        if desc & DESC_VALID == 0 {
            return None;
        }
        if !is_table(desc, level) {
            let normal = desc & (7 << 2) == ATTR_INDEX_NORMAL;
            return Some(if normal {
                MemAttr::Normal
            } else {
                MemAttr::Device
            });
        }
        table = table_at(desc);
    }
    None
}
