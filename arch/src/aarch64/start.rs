//! Entry points: the boot CPU's `_start` and the secondaries' `_secondary_start`.
//!
//! Both run the same three steps in assembly, with the MMU off and no stack (the boot CPU's stack is
//! reserved by the linker script; secondaries get theirs from the kernel heap):
//! 1. `el2_to_el1`: if entered at EL2, give EL1 the timers, the FP unit and the
//!    GIC system registers, make it AArch64 and `eret` to it (the kernel runs
//!    at EL1 wherever it was entered, exactly as it will under KVM).
//! 2. `mmu_on`: MAIR/TCR/TTBR0 for the boot identity map ([`super::mmu`]),
//!    FP/SIMD on, caches and MMU on.
//! 3. A stack, then Rust. The boot CPU zeroes `.bss` first (with caches on, so
//!    no stale line can shadow the zeroes).
//!
//! Secondaries read nothing from memory before their MMU is on: their logical
//! id arrives in x0 (the PSCI context id) and their stack top is read from
//! [`STACK_TOPS`] only afterwards, so no cache maintenance is needed for it.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::{BootHandoff, MAX_CPUS};

/// Stack top for each secondary CPU, written by [`start_cpu`](super::smp) before
/// the CPU is powered on.
pub(super) static STACK_TOPS: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

/// SCTLR_EL1: RES1 bits | I | SA | C | M. Alignment checks (A) stay off.
const SCTLR_EL1_MMU_ON: u64 = 0x30d0_0800 | (1 << 12) | (1 << 3) | (1 << 2) | 1;
/// TCR_EL1: T0SZ = 25 (39-bit VA, walk starts at level 1), walks inner/outer
/// write-back cacheable and inner shareable, 4 KiB granule, TTBR1 walks off
/// (EPD1). IPS is filled in from ID_AA64MMFR0_EL1 at boot.
const TCR_EL1_BOOT: u64 = 25 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (2 << 30);
/// HCR_EL2: EL1 is AArch64 (RW); nothing else trapped or virtualised.
const HCR_EL2_RW: u64 = 1 << 31;
/// CPTR_EL2 with E2H = 0: RES1 bits, no FP/SIMD trap (TFP = 0).
const CPTR_EL2_NO_TRAPS: u64 = 0x33ff;
/// SPSR for the `eret` to EL1h with D, A, I, F masked.
const SPSR_EL1H_MASKED: u64 = 0x3c5;

core::arch::global_asm!(
    r#"
.section .text.boot, "ax"
.global _start
_start:
    mov     x20, x0                 // FDT from a Linux-style loader, or 0
    mrs     x21, CurrentEL
    lsr     x21, x21, #2            // entered exception level
    bl      el2_to_el1
    mrs     x19, cntvct_el0         // entry time, after CNTVOFF_EL2 is known
    bl      link_boot_tables
    bl      mmu_on
    adrp    x9, __boot_stack_top
    add     x9, x9, :lo12:__boot_stack_top
    mov     sp, x9
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
0:  cmp     x9, x10
    b.hs    1f
    str     xzr, [x9], #8
    b       0b
1:  mov     x0, x20
    mov     x1, x21
    mov     x2, x19
    bl      {primary_rust}
2:  wfe
    b       2b

.global _secondary_start
_secondary_start:
    mov     x20, x0                 // logical CPU id (PSCI context id)
    bl      el2_to_el1
    bl      mmu_on
    adrp    x9, {stack_tops}
    add     x9, x9, :lo12:{stack_tops}
    ldr     x9, [x9, x20, lsl #3]
    mov     sp, x9
    mov     x0, x20
    bl      {secondary_rust}
3:  wfe
    b       3b

// Returns at EL1 (by `eret` if entered at EL2). Clobbers x9, x10.
el2_to_el1:
    mrs     x9, CurrentEL
    cmp     x9, #(2 << 2)
    b.eq    4f
    ret
4:  ldr     x9, ={hcr}
    msr     hcr_el2, x9
    mov     x9, #3                  // CNTHCTL_EL2: EL1PCTEN | EL1PCEN
    msr     cnthctl_el2, x9
    msr     cntvoff_el2, xzr        // guest time = physical count
    ldr     x9, ={cptr}
    msr     cptr_el2, x9
    msr     hstr_el2, xzr
    msr     vttbr_el2, xzr
    mrs     x9, midr_el1            // EL1 reads of MIDR/MPIDR see these
    msr     vpidr_el2, x9
    mrs     x9, mpidr_el1
    msr     vmpidr_el2, x9
    mrs     x9, icc_sre_el2         // GICv3: system registers, and let EL1 use them
    orr     x9, x9, #0xf            // SRE | DFB | DIB | Enable
    msr     icc_sre_el2, x9
    isb
    ldr     x9, =0x30d00800         // SCTLR_EL1 RES1 bits, MMU off
    msr     sctlr_el1, x9
    mov     x9, #{spsr}
    msr     spsr_el2, x9
    msr     elr_el2, x30
    eret

// Turns the MMU on with the boot identity map. Clobbers x9-x11.
mmu_on:
    ldr     x9, ={mair}
    msr     mair_el1, x9
    ldr     x9, ={tcr}
    mrs     x10, id_aa64mmfr0_el1
    and     x10, x10, #7            // PARange
    mov     x11, #5                 // 48 bits is the most a 4 KiB granule takes
    cmp     x10, x11
    csel    x10, x11, x10, hi
    bfi     x9, x10, #32, #3        // IPS
    msr     tcr_el1, x9
    adrp    x9, {boot_l1}
    msr     ttbr0_el1, x9
    mov     x9, #(3 << 20)          // CPACR_EL1.FPEN: no FP/SIMD trap at EL1
    msr     cpacr_el1, x9
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    ldr     x9, ={sctlr}
    msr     sctlr_el1, x9
    isb
    ret
"#,
    primary_rust = sym primary_rust,
    secondary_rust = sym secondary_rust,
    stack_tops = sym STACK_TOPS,
    boot_l1 = sym super::mmu::BOOT_L1,
    hcr = const HCR_EL2_RW,
    cptr = const CPTR_EL2_NO_TRAPS,
    spsr = const SPSR_EL1H_MASKED,
    mair = const super::mmu::MAIR_EL1_VALUE,
    tcr = const TCR_EL1_BOOT,
    sctlr = const SCTLR_EL1_MMU_ON,
);

unsafe extern "C" {
    static __boot_stack_top: u8;
    static __image_start: u8;
    static __image_end: u8;
}

unsafe extern "Rust" {
    /// The kernel's boot-CPU entry, defined by the `boot` crate.
    fn lodger_primary_entry(handoff: &BootHandoff) -> !;
    /// The kernel's secondary-CPU entry, defined by the `boot` crate.
    fn lodger_secondary_entry(cpu: usize) -> !;
}

/// Where QEMU `virt` puts the DTB for an ELF image: the start of RAM (it passes
/// x0 only to images with a Linux header). Checked for the FDT magic first.
const QEMU_VIRT_ELF_DTB: usize = 0x4000_0000;
const FDT_MAGIC: u32 = 0xd00d_feed;

fn looks_like_fdt(addr: usize) -> bool {
    // The boot map covers [0x4000_0000, 0x8000_0000) only; never touch the
    // device window or unmapped space on a guess.
    if !(0x4000_0000..0x8000_0000).contains(&addr) || !addr.is_multiple_of(8) {
        return false;
    }
    // SAFETY: `addr` is inside the boot RAM mapping and 8-byte aligned.
    let magic = unsafe { core::ptr::read_volatile(addr as *const u32) };
    u32::from_be(magic) == FDT_MAGIC
}

extern "C" fn primary_rust(x0: usize, entered_el: u64, entry_ticks: u64) -> ! {
    super::trap::install_vectors();
    let fdt = if looks_like_fdt(x0) {
        x0
    } else {
        QEMU_VIRT_ELF_DTB
    };
    // Linker-script symbols: only their addresses are used.
    let image = (
        &raw const __image_start as usize,
        &raw const __image_end as usize,
    );
    let handoff = BootHandoff {
        fdt,
        entered_at: match entered_el {
            1 => "EL1",
            2 => "EL2",
            3 => "EL3",
            _ => "an unknown EL",
        },
        entry_ticks,
        image,
        // QEMU and Linux-style loaders put the command line in the FDT.
        cmdline: None,
    };
    // SAFETY: defined by the `boot` crate with exactly this signature.
    unsafe { lodger_primary_entry(&handoff) }
}

extern "C" fn secondary_rust(cpu: usize) -> ! {
    super::trap::install_vectors();
    // SAFETY: defined by the `boot` crate with exactly this signature.
    unsafe { lodger_secondary_entry(cpu) }
}

/// Physical address of the secondary entry point, for PSCI CPU_ON.
pub(super) fn secondary_entry_pa() -> usize {
    unsafe extern "C" {
        fn _secondary_start();
    }
    _secondary_start as *const () as usize
}

/// Records the stack for `cpu` before it is started.
pub(super) fn set_stack_top(cpu: usize, top: usize) {
    // Release: the secondary reads it after its MMU (and so coherency) is on;
    // the PSCI call that starts it is ordered after this store by the SMC/HVC.
    STACK_TOPS[cpu].store(top, Ordering::Release);
}
