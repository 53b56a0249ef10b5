//! Address translation: two direct-mapped windows for the kernel's linear
//! map, and a page table with a software TLB refill for [`map`] / [`unmap`].
//!
//! # DMW windows
//! With CRMD.PG = 1 an address whose bits [63:60] match a DMW's VSEG is
//! translated by that window alone (no TLB): the physical address is its low
//! 48 bits. lodger programs two, on every CPU, before anything else:
//!
//! | window | VSEG | MAT | use |
//! |---|---|---|---|
//! | DMW0 | `0x8` | strongly-ordered uncached | devices ([`uncached`]) |
//! | DMW1 | `0x9` | coherent cached | image, heap, FDT, page tables ([`cached`]) |
//!
//! The image is linked in DMW1 (at `0x9000_0000_0020_0000`), so it runs at
//! its link address from the first instruction on and the kernel's linear
//! map is simply "physical address | DMW1 base". `map_ram` has nothing to do.
//!
//! # Page table
//! Everything else is translated by the TLB, refilled in software from a
//! 4-level table with 4 KiB pages covering the lower half `[0, 2^47)`:
//!
//! | level | walked by | VA bits | one entry maps |
//! |---|---|---|---|
//! | 3 (root, CSR.PGDL) | `lddir 3` | 47:39 | 512 GiB |
//! | 2 | `lddir 2` | 38:30 | 1 GiB |
//! | 1 | `lddir 1` | 29:21 | 2 MiB |
//! | 0 (leaf) | `ldpte` | 20:12 | 4 KiB |
//!
//! Directory entries hold the DMW1 address of the next table, as Linux's do:
//! the walk instructions use only the low 48 bits (the physical address). An
//! empty directory entry is never 0 — `lddir` would walk from physical 0 —
//! but points at [`INVALID`]`[level - 1]`, a chain of tables that ends in an
//! all-zero leaf table. A miss on an unmapped address therefore fills the TLB
//! with an invalid (V = 0) pair, and the access retried raises a page-invalid
//! exception (PIL / PIS / PIF), which the trap code reports as a fault. The
//! upper half (CSR.PGDH) is [`INVALID`]`[3]`: nothing there is ever mapped.
//!
//! # TLB coherence
//! LoongArch has no broadcast TLB invalidation. [`map`] and [`unmap`] (rare)
//! invalidate the local TLB with `invtlb` and then shoot the others down: each
//! CPU that joined ([`join_shootdowns`]) gets its `FLUSH_PENDING` flag set,
//! then all of them the TLB-flush action in one [`irq::raise`] (one PV
//! multicast when the PV IPI is in use, else an IOCSR IPI each); each target's
//! handler ([`on_flush_ipi`]) runs `invtlb` and clears its flag; the caller
//! waits for every flag to clear. Invalid (V = 0) entries are cached too, so
//! `map` flushes as well as `unmap`.
//!
//! ```text
//!   caller (holds MAP_LOCK)                target CPU t
//!   write PTEs; fence; invtlb (local)
//!   [S] FLUSH_PENDING[t] = true, every t
//!       raise(all t, TLB_FLUSH) ---------> doorbell: [L] FLUSH_PENDING[t] (Acquire)
//!                                              invtlb
//!   [L] wait FLUSH_PENDING[t] == false <-- [S] FLUSH_PENDING[t] = false (Release)
//! ```
//!
//! [`irq::raise`]: super::irq::raise
//!
//! A target must be able to take the IPI: callers of `map`/`unmap` must not
//! hold a lock that another CPU may spin on with interrupts masked. A caller
//! waiting for `MAP_LOCK` or for acknowledgements services its own flag while
//! it spins, so two CPUs mapping at once cannot deadlock. A CPU that never
//! answers (one parked with interrupts masked) is reported by a panic after
//! [`SHOOTDOWN_TIMEOUT_SEC`] rather than silently left with stale entries.

use core::arch::asm;
use core::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};

use crate::pv::CpuMask;
use crate::{MapError, MemAttr, MAX_CPUS};

use super::csr;

pub(super) const PAGE_SIZE: usize = 4096;
const PAGE_SHIFT: usize = 12;
const ENTRIES: usize = 512;
/// Bits of VA each level resolves.
const LEVEL_BITS: usize = 9;
/// The translatable (lower-half) range is `[0, 1 << VA_BITS)`.
const VA_BITS: usize = 47;
/// Physical address width of LA464 (CPUCFG1.PALEN + 1 under QEMU `virt`).
const PA_BITS: usize = 48;
const PA_MASK: usize = (1 << PA_BITS) - 1;

/// Base of DMW1 (coherent cached): the kernel's linear map.
pub(super) const CACHED_BASE: usize = 0x9000_0000_0000_0000;
/// Base of DMW0 (strongly-ordered uncached): device registers.
pub(super) const UNCACHED_BASE: usize = 0x8000_0000_0000_0000;
/// DMW register fields: PLV0 allowed (bit 0), MAT (bits 5:4), VSEG (63:60).
const DMW_PLV0: usize = 1 << 0;
const MAT_SHIFT: usize = 4;
const MAT_SUC: usize = 0;
const MAT_CC: usize = 1;
const VSEG_MASK: usize = 0xf << 60;
pub(super) const DMW0_UNCACHED: usize = UNCACHED_BASE | (MAT_SUC << MAT_SHIFT) | DMW_PLV0;
pub(super) const DMW1_CACHED: usize = CACHED_BASE | (MAT_CC << MAT_SHIFT) | DMW_PLV0;

/// Page-table entry bits (the TLBELO layout, which `ldpte` copies).
const PTE_V: usize = 1 << 0;
/// Dirty = writable (a store through D = 0 raises a page-modify exception).
const PTE_D: usize = 1 << 1;
/// Global: matches any ASID (lodger has one address space).
const PTE_G: usize = 1 << 6;
/// No-execute: nothing lodger maps is code.
const PTE_NX: usize = 1 << 62;
const PTE_PPN_MASK: usize = PA_MASK & !(PAGE_SIZE - 1);

/// CSR.PWCL: leaf at bit 12, dir1 at 21, dir2 at 30, each 9 bits; 64-bit
/// entries (PTEWidth = 0).
const PWCL_VALUE: usize = PAGE_SHIFT
    | (LEVEL_BITS << 5)
    | ((PAGE_SHIFT + LEVEL_BITS) << 10)
    | (LEVEL_BITS << 15)
    | ((PAGE_SHIFT + 2 * LEVEL_BITS) << 20)
    | (LEVEL_BITS << 25);
/// CSR.PWCH: dir3 at bit 39, 9 bits; no dir4.
const PWCH_VALUE: usize = (PAGE_SHIFT + 3 * LEVEL_BITS) | (LEVEL_BITS << 6);
/// CSR.STLBPS.PS: the STLB holds 4 KiB pages (what `ldpte` reports).
const STLBPS_4K: usize = PAGE_SHIFT;

/// DMW1 address of physical address `pa`.
pub(super) const fn cached(pa: usize) -> usize {
    CACHED_BASE | (pa & PA_MASK)
}

/// DMW0 address of physical address `pa`.
pub(super) const fn uncached(pa: usize) -> usize {
    UNCACHED_BASE | (pa & PA_MASK)
}

/// Physical address of a DMW address.
pub(super) const fn physical(va: usize) -> usize {
    va & PA_MASK
}

pub(super) const fn in_cached_window(va: usize) -> bool {
    va & VSEG_MASK == CACHED_BASE
}

/// One page-table page.
#[repr(C, align(4096))]
struct Table([AtomicUsize; ENTRIES]);

impl Table {
    const fn empty() -> Self {
        Self([const { AtomicUsize::new(0) }; ENTRIES])
    }

    fn addr(&self) -> usize {
        self as *const Self as usize
    }

    /// Points every entry at `next` (or zeroes them all for a leaf table).
    fn fill(&self, next: Option<&Table>) {
        let value = next.map_or(0, Table::addr);
        for e in &self.0 {
            e.store(value, Ordering::Relaxed);
        }
    }
}

/// `INVALID[l]` is the empty table of level `l`: all-zero for the leaf level,
/// else every entry points to `INVALID[l - 1]`. `INVALID[3]` is the upper
/// half's root.
static INVALID: [Table; 4] = [const { Table::empty() }; 4];
/// Root of the lower half (CSR.PGDL).
static ROOT: Table = Table::empty();

/// Tables for [`map`] to grow the tree with.
const POOL_TABLES: usize = 64;
static POOL: [Table; POOL_TABLES] = [const { Table::empty() }; POOL_TABLES];
static POOL_USED: AtomicUsize = AtomicUsize::new(0);

static MAP_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// CPUs whose TLB may hold entries from these tables (joined shootdowns).
static TLB_USERS: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Set by a CPU that changed the tables, cleared by the target once its TLB
/// is invalidated.
static FLUSH_PENDING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// How long [`map`]/[`unmap`] wait for the other CPUs' acknowledgements:
/// as long as the kernel waits for a CPU to come online (a vCPU the host
/// starves for longer is indistinguishable from a stuck one).
const SHOOTDOWN_TIMEOUT_SEC: u64 = 2;

core::arch::global_asm!(
    r#"
// TLB refill: taken in direct-address mode (so this runs at its physical
// address, from CSR.TLBRENTRY) with only CSR.TLBRSAVE to spare a register.
// The walk cannot fail: empty entries lead to the INVALID chain.
.section .text.tlb_refill, "ax"
.balign 4096
.global tlb_refill
tlb_refill:
    csrwr       $t0, {tlbrsave}
    csrrd       $t0, {pgd}          // PGDL or PGDH, by the faulting address
    lddir       $t0, $t0, 3
    lddir       $t0, $t0, 2
    lddir       $t0, $t0, 1
    ldpte       $t0, 0              // even page of the pair
    ldpte       $t0, 1              // odd page
    tlbfill
    csrrd       $t0, {tlbrsave}
    ertn
"#,
    tlbrsave = const csr::TLBRSAVE,
    pgd = const csr::PGD,
);

/// Links the empty-table chain and empties the root. Boot CPU, once, before
/// any CPU turns on translation through the tables ([`init_cpu`]).
pub(super) fn init_tables() {
    INVALID[0].fill(None);
    for level in 1..INVALID.len() {
        INVALID[level].fill(Some(&INVALID[level - 1]));
    }
    ROOT.fill(Some(&INVALID[2]));
    fence(Ordering::SeqCst);
}

/// Points this CPU's walker and refill handler at the tables and empties its
/// TLB. The DMW windows and CRMD.PG were set by the entry code.
pub(super) fn init_cpu() {
    unsafe extern "C" {
        fn tlb_refill();
    }
    let refill_pa = physical(tlb_refill as *const () as usize);
    // SAFETY: these CSRs only configure the TLB refill path; they describe
    // the tables `init_tables` built, which live for ever. Nothing has used
    // the TLB on this CPU yet (all accesses so far went through the DMWs).
    unsafe {
        csr::write::<{ csr::PWCL }>(PWCL_VALUE);
        csr::write::<{ csr::PWCH }>(PWCH_VALUE);
        csr::write::<{ csr::STLBPS }>(STLBPS_4K);
        csr::write::<{ csr::ASID }>(0);
        csr::write::<{ csr::PGDL }>(ROOT.addr());
        csr::write::<{ csr::PGDH }>(INVALID[3].addr());
        csr::write::<{ csr::TLBRENTRY }>(refill_pa);
    }
    invalidate_local();
}

/// Drops every entry of this CPU's TLB.
fn invalidate_local() {
    // SAFETY: `invtlb 0` invalidates all entries; later accesses refill from
    // the tables. The `dbar` orders earlier table stores before the refills.
    unsafe { asm!("dbar 0", "invtlb 0, $zero, $zero", options(nostack)) };
}

/// Makes this CPU a shootdown target, then empties its TLB: from here on
/// every change to the tables reaches it. Called by `init_cpu` once the IPI
/// is enabled.
pub(super) fn join_shootdowns(cpu: usize) {
    // SeqCst (with the fence in `shoot_down`): a CPU changing the tables
    // either sees this flag, or its table stores precede our invalidation
    // below and so every later refill here.
    TLB_USERS[cpu].store(true, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    invalidate_local();
}

/// The TLB-flush action's handler (also polled by CPUs waiting in
/// `map`/`unmap`).
pub(super) fn on_flush_ipi() {
    let me = super::cpu_id();
    // Acquire: pairs with the Release in `shoot_down`'s store of the flag.
    if FLUSH_PENDING[me].load(Ordering::Acquire) {
        invalidate_local();
        // Release: the invalidation is done before the requester goes on.
        FLUSH_PENDING[me].store(false, Ordering::Release);
    }
}

/// Invalidates the TLB of this and every other joined CPU, and waits until
/// all did. Called with `MAP_LOCK` held, after the table stores.
fn shoot_down() {
    fence(Ordering::SeqCst);
    invalidate_local();
    let me = super::cpu_id();
    let Some(platform) = super::PLATFORM.get() else {
        return; // Before init_platform only the boot CPU runs.
    };
    let targets = || (0..platform.cpus).filter(move |&c| c != me);
    let mut flush = CpuMask::default();
    for cpu in targets().filter(|&c| TLB_USERS[c].load(Ordering::SeqCst)) {
        // Release: pairs with the Acquire in `on_flush_ipi`.
        FLUSH_PENDING[cpu].store(true, Ordering::Release);
        flush = flush.with(cpu);
    }
    super::irq::raise(flush, super::irq::ACTION_TLB_FLUSH);
    let deadline = super::timer::ticks() + SHOOTDOWN_TIMEOUT_SEC * super::timer::ticks_per_sec();
    for cpu in targets() {
        // Acquire: pairs with the Release in the target's `on_flush_ipi`.
        while FLUSH_PENDING[cpu].load(Ordering::Acquire) {
            on_flush_ipi();
            if super::timer::ticks() > deadline {
                panic!("TLB shootdown: CPU {cpu} did not invalidate its TLB");
            }
            core::hint::spin_loop();
        }
    }
}

/// Takes `MAP_LOCK`, answering flush requests while waiting for it.
fn lock_tables() -> spin::MutexGuard<'static, ()> {
    loop {
        if let Some(guard) = MAP_LOCK.try_lock() {
            return guard;
        }
        on_flush_ipi();
        core::hint::spin_loop();
    }
}

fn index(va: usize, level: usize) -> usize {
    (va >> (PAGE_SHIFT + LEVEL_BITS * level)) & (ENTRIES - 1)
}

fn span(level: usize) -> usize {
    1 << (PAGE_SHIFT + LEVEL_BITS * level)
}

/// The table a directory entry points to.
fn table_at(entry: usize) -> &'static Table {
    // SAFETY: directory entries are only ever written by this module, and
    // hold the address of ROOT, an INVALID table or a POOL table: 'static.
    unsafe { &*(entry as *const Table) }
}

fn alloc_table(level: usize) -> Result<&'static Table, MapError> {
    let i = POOL_USED.fetch_add(1, Ordering::Relaxed);
    let table = POOL.get(i).ok_or(MapError::NoTables)?;
    table.fill(level.checked_sub(1).map(|below| &INVALID[below]));
    Ok(table)
}

fn check_range(va: usize, size: usize) -> Result<(), MapError> {
    let end = va.checked_add(size).ok_or(MapError::BadRange)?;
    if !va.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) || end > 1 << VA_BITS {
        return Err(MapError::BadRange);
    }
    Ok(())
}

const fn leaf(pa: usize, attr: MemAttr) -> usize {
    let mat = match attr {
        MemAttr::Normal => MAT_CC,
        MemAttr::Device => MAT_SUC,
    };
    (pa & PTE_PPN_MASK) | (mat << MAT_SHIFT) | PTE_V | PTE_D | PTE_G | PTE_NX
}

/// Maps `[va, va + size)` to `[pa, pa + size)` with 4 KiB pages.
pub(super) fn map(va: usize, pa: usize, size: usize, attr: MemAttr) -> Result<(), MapError> {
    check_range(va, size)?;
    if !pa.is_multiple_of(PAGE_SIZE) || pa.checked_add(size).is_none_or(|end| end > PA_MASK + 1) {
        return Err(MapError::BadRange);
    }
    let _guard = lock_tables();
    let mut result = Ok(());
    for offset in (0..size).step_by(PAGE_SIZE) {
        let v = va + offset;
        let mut table = &ROOT;
        for level in (1..=3).rev() {
            let slot = &table.0[index(v, level)];
            let entry = slot.load(Ordering::Relaxed);
            table = if entry == INVALID[level - 1].addr() {
                match alloc_table(level - 1) {
                    Ok(next) => {
                        // Release: the new table's contents before its link
                        // (another CPU's refill may walk it at once).
                        slot.store(next.addr(), Ordering::Release);
                        next
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            } else {
                table_at(entry)
            };
        }
        if result.is_err() {
            break;
        }
        table.0[index(v, 0)].store(leaf(pa + offset, attr), Ordering::Relaxed);
    }
    // Also after a partial failure: invalid entries cached for the pages
    // mapped so far must go.
    shoot_down();
    result
}

/// Removes the translation of `[va, va + size)`; unmapped parts are skipped.
/// Tables emptied this way are not reclaimed.
pub(super) fn unmap(va: usize, size: usize) -> Result<(), MapError> {
    check_range(va, size)?;
    let _guard = lock_tables();
    let end = va + size;
    let mut v = va;
    'pages: while v < end {
        let mut table = &ROOT;
        for level in (1..=3).rev() {
            let entry = table.0[index(v, level)].load(Ordering::Relaxed);
            if entry == INVALID[level - 1].addr() {
                // Nothing mapped under this entry: skip to its end.
                v = (v & !(span(level) - 1)) + span(level);
                continue 'pages;
            }
            table = table_at(entry);
        }
        table.0[index(v, 0)].store(0, Ordering::Relaxed);
        v += PAGE_SIZE;
    }
    shoot_down();
    Ok(())
}
