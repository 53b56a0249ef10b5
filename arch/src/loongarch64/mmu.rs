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
//! LoongArch has no broadcast TLB invalidation. [`map`], [`unmap`] and
//! [`protect`] invalidate the range locally with `invtlb` by address (the
//! whole TLB above [`RANGE_FLUSH_MAX_PAGES`]) and shoot the others down by
//! IPI with the protocol of [`crate::tlb`]: every CPU that joined
//! ([`join_shootdowns`]) and is not halted gets the TLB-flush action, all in
//! one [`irq::raise`] (one PV multicast per 128 CPUs when the PV IPI is in
//! use, else an IOCSR IPI each), and the caller waits for each to answer
//! ([`on_flush_ipi`]); a halted CPU ([`halt`]) flushes on waking instead.
//! Invalid (V = 0) entries are cached too, so `map` flushes as well as
//! `unmap`.
//!
//! [`irq::raise`]: super::irq::raise
//!
//! A target must be able to take the IPI: callers of `map`/`unmap` must not
//! hold a lock that another CPU may spin on with interrupts masked. A caller
//! waiting for `MAP_LOCK` or for acknowledgements services its own flag while
//! it spins, so two CPUs mapping at once cannot deadlock. A target the host
//! is seen holding off (PV preempted flag, or steal that grows) is waited
//! for as long as it takes; one that shows no such sign is still waited for
//! up to [`crate::tlb::SILENT_SEC`] (a flag of 0 is no proof that a vCPU
//! runs), and then (one parked with interrupts masked) reported by a panic
//! naming it rather than silently left with stale entries.

use core::arch::asm;
use core::sync::atomic::{fence, AtomicUsize, Ordering};

use crate::pv::CpuMask;
use crate::tlb::{Sent, Shootdowns, TlbCpu};
use crate::{Access, IrqState, MapError, MemAttr, ShootdownStats};

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

/// Who may cache entries of these tables, and what each must flush.
static SHOOTDOWNS: Shootdowns = Shootdowns::new();
/// Above this many pages a flush drops the whole TLB: one `invtlb` per page
/// (each a lookup in every way of the STLB) costs more than refilling what
/// a small kernel keeps there.
const RANGE_FLUSH_MAX_PAGES: usize = 16;

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

/// Drops this CPU's entries for `[start, end)` (the whole TLB for a long
/// range).
fn invalidate_local_range(start: usize, end: usize) {
    if (end - start) / PAGE_SIZE > RANGE_FLUSH_MAX_PAGES {
        return invalidate_local();
    }
    // SAFETY: as in `invalidate_local`; the barrier orders the table stores.
    unsafe { asm!("dbar 0", options(nostack)) };
    for va in (start..end).step_by(PAGE_SIZE) {
        // SAFETY: `invtlb 6` drops the entries that are global or of ASID
        // rj (0) and hold `va` (the even/odd pair); nothing else changes.
        unsafe { asm!("invtlb 6, $zero, {va}", va = in(reg) va, options(nostack)) };
    }
}

/// The real CPU, for the protocol of [`crate::tlb`].
struct Cpu;

impl TlbCpu for Cpu {
    fn cpu_id(&self) -> usize {
        super::cpu_id()
    }
    fn irq_save(&self) -> IrqState {
        <super::Loongarch64 as crate::Interrupts>::irq_save()
    }
    fn irq_restore(&self, state: IrqState) {
        <super::Loongarch64 as crate::Interrupts>::irq_restore(state);
    }
    fn invalidate_all(&self) {
        invalidate_local();
    }
    fn invalidate_range(&self, start: usize, end: usize) {
        invalidate_local_range(start, end);
    }
    fn ring(&self, targets: CpuMask) -> Sent {
        super::irq::raise(targets, super::irq::ACTION_TLB_FLUSH)
    }
    fn ticks(&self) -> u64 {
        super::timer::ticks()
    }
    fn ticks_per_sec(&self) -> u64 {
        super::timer::ticks_per_sec()
    }
    fn preempted(&self, cpu: usize) -> Option<bool> {
        super::pv::vcpu_preempted(cpu)
    }
    fn steal_ns(&self, cpu: usize) -> Option<u64> {
        super::pv::steal_ns(cpu)
    }
    fn spin_hint(&self) {
        core::hint::spin_loop();
    }
}

/// Makes this CPU a shootdown target, then empties its TLB: from here on
/// every change to the tables reaches it. Called by `init_cpu` once the IPI
/// is enabled.
pub(super) fn join_shootdowns(cpu: usize) {
    SHOOTDOWNS.join(&Cpu, cpu);
}

/// The TLB-flush action's handler (also polled by CPUs waiting in
/// `map`/`unmap`).
pub(super) fn on_flush_ipi() {
    SHOOTDOWNS.on_flush_ipi(&Cpu);
}

/// Runs `idle` as a halt: no shootdown waits for this CPU meanwhile, and it
/// flushes what was asked of it before returning.
pub(super) fn halt(idle: impl FnOnce()) {
    SHOOTDOWNS.halt(&Cpu, idle);
}

/// The shootdowns' counters since boot.
pub(super) fn stats() -> ShootdownStats {
    SHOOTDOWNS.stats()
}

/// Invalidates `[start, end)` on this and every other CPU that may cache
/// it, and waits until all did. Called with `MAP_LOCK` held, after the
/// table stores.
fn shoot_down(start: usize, end: usize) {
    let cpus = super::PLATFORM.get().map_or(1, |p| p.cpus);
    if let Err(stuck) = SHOOTDOWNS.shoot_down(&Cpu, cpus, start, end) {
        let ms = stuck.waited_ticks * 1000 / super::timer::ticks_per_sec().max(1);
        panic!(
            "TLB shootdown: CPU {} did not invalidate its TLB: no answer for {ms} ms, \
             no sign of a hold-off by the host (preempted flag never set, steal not \
             growing) for the last {} s at least (seen preempted before: {}); a CPU \
             spinning or parked with interrupts masked, or a host holding it off unseen?",
            stuck.cpu,
            crate::tlb::TIMEOUT_SEC,
            stuck.seen_preempted
        );
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
    shoot_down(va, va + size);
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
    shoot_down(va, end);
    Ok(())
}

/// Makes the mapped pages of `[va, va + size)` writable or read-only (a
/// store through a clean, D = 0, entry raises a page-modify exception);
/// unmapped parts are skipped.
pub(super) fn protect(va: usize, size: usize, access: Access) -> Result<(), MapError> {
    check_range(va, size)?;
    let _guard = lock_tables();
    let end = va + size;
    let mut v = va;
    'pages: while v < end {
        let mut table = &ROOT;
        for level in (1..=3).rev() {
            let entry = table.0[index(v, level)].load(Ordering::Relaxed);
            if entry == INVALID[level - 1].addr() {
                v = (v & !(span(level) - 1)) + span(level);
                continue 'pages;
            }
            table = table_at(entry);
        }
        let slot = &table.0[index(v, 0)];
        let pte = slot.load(Ordering::Relaxed);
        if pte & PTE_V != 0 {
            let pte = match access {
                Access::ReadWrite => pte | PTE_D,
                Access::ReadOnly => pte & !PTE_D,
            };
            slot.store(pte, Ordering::Relaxed);
        }
        v += PAGE_SIZE;
    }
    shoot_down(va, end);
    Ok(())
}
