//! CSR numbers and field values, and the CSR accesses the `loongArch64`
//! crate cannot do soundly.
//!
//! The crate's readers are used wherever they exist. Its writers are not:
//! they pass the value to `csrwr` as an `in(reg)` operand, but `csrwr rd, csr`
//! *swaps* — it writes the old CSR value back into `rd`. Rust assumes an
//! input register keeps its value, so once such a writer is inlined the
//! compiler may go on using that register: a latent miscompile. [`write`]
//! declares the register clobbered instead. `csrxchg` (a masked update in one
//! instruction, needed to mask interrupts atomically) and the KScratch
//! registers have no crate accessor at all.
//!
//! Numbers and layouts: LoongArch Reference Manual, Volume 1, chapter 7.

use core::arch::asm;

// CSR numbers.
pub(super) const CRMD: u32 = 0x0;
pub(super) const PRMD: u32 = 0x1;
pub(super) const EUEN: u32 = 0x2;
pub(super) const ECFG: u32 = 0x4;
pub(super) const ESTAT: u32 = 0x5;
pub(super) const ERA: u32 = 0x6;
pub(super) const EENTRY: u32 = 0xc;
pub(super) const ASID: u32 = 0x18;
pub(super) const PGDL: u32 = 0x19;
pub(super) const PGDH: u32 = 0x1a;
pub(super) const PGD: u32 = 0x1b;
pub(super) const PWCL: u32 = 0x1c;
pub(super) const PWCH: u32 = 0x1d;
pub(super) const STLBPS: u32 = 0x1e;
/// KScratch 0: lodger keeps the logical CPU id here (see [`super::cpu_id`]).
pub(super) const KS0_CPU_ID: u32 = 0x30;
pub(super) const TCFG: u32 = 0x41;
pub(super) const TICLR: u32 = 0x44;
pub(super) const TLBRENTRY: u32 = 0x88;
pub(super) const TLBRSAVE: u32 = 0x8b;
pub(super) const DMW0: u32 = 0x180;
pub(super) const DMW1: u32 = 0x181;

// CRMD fields.
pub(super) const CRMD_PLV_MASK: usize = 0b11;
/// Global interrupt enable.
pub(super) const CRMD_IE: usize = 1 << 2;
/// Paging on (DA off), PLV0, interrupts masked; direct-address accesses
/// (the TLB refill handler runs in DA mode) coherent-cached (DATF = DATM = 1),
/// as the manual requires for software refill.
pub(super) const CRMD_PAGING: usize = (1 << 4) | (1 << 5) | (1 << 7);

/// EUEN.FPE: floating-point instructions enabled (the target is lp64d, so
/// compiled code anywhere may use the FP registers).
pub(super) const EUEN_FPE: usize = 1 << 0;

// ECFG.LIE / ESTAT.IS bits.
/// Software interrupt 0: how KVM delivers the PV IPI (FUNC_IPI). ESTAT.IS
/// bits 1:0 are the only software-writable ones.
pub(super) const INT_SWI0: usize = 1 << 0;
pub(super) const INT_TIMER: usize = 1 << 11;
pub(super) const INT_IPI: usize = 1 << 12;
/// All 13 interrupt lines (SWI0-1, HWI0-7, PMI, timer, IPI).
pub(super) const INT_ALL: usize = 0x1fff;

// TCFG fields.
pub(super) const TCFG_EN: usize = 1 << 0;
/// The initial value occupies bits [47:2]; its two low bits read as 0.
pub(super) const TCFG_INIT_MASK: usize = 0xffff_ffff_fffc;
/// TICLR.CLR: writing 1 withdraws the timer interrupt.
pub(super) const TICLR_CLR: usize = 1 << 0;

/// Writes `value` to CSR `N`.
///
/// # Safety
/// The write must leave the CPU in a state the rest of lodger expects (the
/// caller names what the CSR controls and why the new value is right).
#[inline(always)] // One instruction; `N` must be a constant anyway.
pub(super) unsafe fn write<const N: u32>(value: usize) {
    // SAFETY: forwarded to the caller. `csrwr` returns the old value in the
    // register, hence `inout` with the result discarded. No `nomem`: a CSR
    // write can change how memory is accessed, so it must not be reordered
    // with memory accesses.
    unsafe { asm!("csrwr {v}, {n}", v = inout(reg) value => _, n = const N, options(nostack)) };
}

/// Sets the bits of CSR `N` selected by `mask` to those of `value`, in one
/// instruction, and returns the CSR's previous value.
///
/// # Safety
/// As for [`write`].
#[inline(always)] // One instruction; `N` must be a constant anyway.
pub(super) unsafe fn exchange<const N: u32>(value: usize, mask: usize) -> usize {
    let old: usize;
    // SAFETY: forwarded to the caller. The mask is pinned to $t0 because
    // `csrxchg` with rj = $zero or $ra *is* `csrrd` / `csrwr` (same encoding),
    // and a free `reg` operand could be given $ra.
    unsafe {
        asm!(
            "csrxchg {v}, $t0, {n}",
            v = inout(reg) value => old,
            in("$t0") mask,
            n = const N,
            options(nostack),
        );
    }
    old
}
