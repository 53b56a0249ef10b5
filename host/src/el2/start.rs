//! Entry points of every pCPU: the boot pCPU's `_start` (QEMU enters the
//! image there at EL2) and the secondaries' `_secondary_start` (where
//! pvhost's own PSCI CPU_ON sends them, x0 = pCPU index).
//!
//! Both, in assembly, with the MMU off and no stack:
//! 1. FP/SIMD untrapped at EL2 (compiled Rust may use them), the pCPU index
//!    in TPIDR_EL2 (the guest cannot reach it).
//! 2. The EL2 MMU on with a static identity map ([`EL2_L1`]): `[0, 1 GiB)`
//!    Device-nGnRE, `[1 GiB, 2 GiB)` Normal write-back (RAM). Atomics and
//!    the PV records need Normal memory; the guest maps the records Normal
//!    too, so both sides agree on their attributes.
//! 3. VBAR_EL2, then a stack: pCPU `n` owns `[__stacks_start + n * 64 KiB,
//!    + 64 KiB)`, and its top [`super::trap::FRAME_SIZE`] bytes hold the
//!    guest's registers while the guest runs (see `super::trap`).
//! 4. The boot pCPU zeroes `.bss` (caches on: no stale line can shadow it)
//!    and calls [`super::boot::boot_main`]; a secondary calls
//!    [`super::pcpu::secondary_main`].

use core::sync::atomic::AtomicU64;

use arch::aarch64_pte::{AF, AP1, ATTR_INDEX_DEVICE, ATTR_INDEX_NORMAL, DESC_VALID, SH_INNER, UXN};

use super::trap::FRAME_SIZE;
use crate::el2::MAX_PCPUS;

/// Each pCPU's EL2 stack (`link.ld` reserves 16 of them).
pub const STACK_SIZE: usize = 64 * 1024;
const _: () = assert!(MAX_PCPUS == 16 && STACK_SIZE == 0x1_0000);

/// MAIR_EL2: the guest's layout, so both index the same attributes.
use arch::aarch64_pte::MAIR_VALUE as MAIR_EL2_VALUE;
/// TCR_EL2 (E2H = 0): T0SZ = 25 (39-bit VA, walks start at level 1), walks
/// inner/outer write-back and inner shareable, 4 KiB granule, RES1 bits 23
/// and 31; PS is filled in from ID_AA64MMFR0_EL1.
const TCR_EL2_VALUE: u64 = 25 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (1 << 31);
/// SCTLR_EL2 (E2H = 0): RES1 bits, M (MMU), C (data cache), SA (stack
/// alignment check), I (instruction cache). No alignment checks (A).
const SCTLR_EL2_VALUE: u64 = 0x30c5_0830 | 1 | (1 << 2) | (1 << 3) | (1 << 12);
/// CPTR_EL2 (E2H = 0): RES1 bits; TFP = 0 (FP/SIMD not trapped at EL2 or EL1).
pub const CPTR_EL2_VALUE: u64 = 0x33ff;

/// A level-1 block: valid, bit 1 clear.
const DESC_BLOCK: u64 = DESC_VALID;
/// AP[1] is RES1 at EL2, bit 54 is XN there.
const AP1_RES1: u64 = AP1;
const XN: u64 = UXN;
const GIB: u64 = 1 << 30;

/// One translation table.
#[repr(C, align(4096))]
pub struct Table([AtomicU64; 512]);

const fn el2_l1() -> Table {
    let mut t = Table([const { AtomicU64::new(0) }; 512]);
    t.0[0] = AtomicU64::new(DESC_BLOCK | ATTR_INDEX_DEVICE | AP1_RES1 | AF | XN);
    t.0[1] = AtomicU64::new(GIB | DESC_BLOCK | ATTR_INDEX_NORMAL | AP1_RES1 | SH_INNER | AF);
    t
}

/// The EL2 identity map: two 1 GiB blocks. pvhost and its guest live in
/// `[1 GiB, 2 GiB)` (QEMU `virt` with up to 1 GiB of RAM).
pub static EL2_L1: Table = el2_l1();

/// The highest physical address + 1 the EL2 map covers as RAM.
pub const MAPPED_RAM_END: u64 = 2 * GIB;

core::arch::global_asm!(
    r#"
.section .text.boot, "ax"
.global _start
_start:
    mrs     x9, CurrentEL
    cmp     x9, #(2 << 2)
    b.ne    9f                      // pvhost needs EL2 (QEMU virtualization=on)
    mov     x19, #0                 // the boot pCPU is pCPU 0
    b       1f

.global _secondary_start
_secondary_start:
    mov     x19, x0                 // pCPU index: our CPU_ON context id
    cmp     x19, #{max_pcpus}
    b.hs    9f

1:  ldr     x9, ={cptr}
    msr     cptr_el2, x9
    msr     tpidr_el2, x19
    ldr     x9, ={mair}
    msr     mair_el2, x9
    ldr     x9, ={tcr}
    mrs     x10, id_aa64mmfr0_el1
    and     x10, x10, #7            // PARange
    mov     x11, #5                 // 48 bits: the most a 4 KiB granule takes
    cmp     x10, x11
    csel    x10, x11, x10, hi
    bfi     x9, x10, #16, #3        // PS
    msr     tcr_el2, x9
    adrp    x9, {l1}
    msr     ttbr0_el2, x9
    isb
    tlbi    alle2
    dsb     nsh
    isb
    ldr     x9, ={sctlr}
    msr     sctlr_el2, x9
    isb
    adrp    x9, el2_vectors
    add     x9, x9, :lo12:el2_vectors
    msr     vbar_el2, x9
    isb

    adrp    x9, __stacks_start
    add     x9, x9, :lo12:__stacks_start
    add     x10, x19, #1
    mov     x11, #{stack_size}
    madd    x9, x10, x11, x9        // this pCPU's stack top
    sub     sp, x9, #{frame}        // the guest's register frame sits on top
    cbnz    x19, 3f

    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
2:  cmp     x9, x10
    b.hs    4f
    str     xzr, [x9], #8
    b       2b
4:  bl      {boot_main}
    b       9f

3:  mov     x0, x19
    bl      {secondary_main}

9:  wfe
    b       9b
"#,
    max_pcpus = const MAX_PCPUS,
    cptr = const CPTR_EL2_VALUE,
    mair = const MAIR_EL2_VALUE,
    tcr = const TCR_EL2_VALUE,
    sctlr = const SCTLR_EL2_VALUE,
    l1 = sym EL2_L1,
    stack_size = const STACK_SIZE,
    frame = const FRAME_SIZE,
    boot_main = sym super::boot::boot_main,
    secondary_main = sym super::pcpu::secondary_main,
);

unsafe extern "C" {
    static __stacks_start: u8;
    static __host_start: u8;
    static __host_end: u8;
}

/// `[start, end)` of pvhost's own memory (image, `.bss`, stacks).
pub fn host_extent() -> (u64, u64) {
    // Linker-script symbols: only their addresses are used.
    (&raw const __host_start as u64, &raw const __host_end as u64)
}

/// The address just above pCPU `cpu`'s stack, where its guest frame ends.
pub fn stack_top(cpu: usize) -> u64 {
    &raw const __stacks_start as u64 + ((cpu + 1) * STACK_SIZE) as u64
}

/// Physical address of `_secondary_start`, for CPU_ON (identity map).
pub fn secondary_entry() -> u64 {
    unsafe extern "C" {
        fn _secondary_start();
    }
    _secondary_start as *const () as u64
}
