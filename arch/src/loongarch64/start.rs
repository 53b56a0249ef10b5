//! Entry points: the boot CPU's `_start` and the secondaries' `_secondary_start`.
//!
//! Both are entered in direct-address mode (CRMD.DA = 1: every address is
//! physical, its bits above 47 ignored) at PLV0 with interrupts masked and no
//! stack. Both run `CPU_MODE_ON` first:
//! 1. DMW0 / DMW1 (see [`super::mmu`]): the uncached and the cached window
//!    onto all physical memory.
//! 2. A jump to the DMW1 alias of the current PC, so execution continues at
//!    the address the image is linked at whatever alias the loader used
//!    (QEMU enters at the raw ELF entry, which already is that alias).
//! 3. EUEN.FPE (the target is lp64d: any compiled code may use FP registers).
//! 4. CRMD: paging on. Every address lodger touches from here to the page
//!    table set-up in Rust lies in a DMW window, so no TLB refill can happen
//!    before its handler is installed.
//!
//! The boot CPU's registers at entry: a0 = 1, a1 = physical address of the
//! command line (QEMU: 0, where it copies the string), a2 = physical address
//! of an EFI-style system table.
//! The FDT is at a fixed physical address (1 MiB); lodger reads the command
//! line from a1, as QEMU does not copy `-append` into the FDT.
//!
//! Then the boot CPU takes the stack the linker script reserves and zeroes
//! `.bss`; a secondary reads its stack top and logical id from its IOCSR
//! mailboxes (written by [`super::smp::start`] before the start IPI), so it
//! reads nothing from memory before its own set-up is done. Each CPU keeps its
//! logical id in KScratch 0 from the first instruction of Rust on.

use crate::BootHandoff;

use super::{csr, mmu, smp};

core::arch::global_asm!(
    r#"
// DMW windows, jump into DMW1, FP on, paging on. Clobbers $t0, $t1.
.macro CPU_MODE_ON
    li.d        $t0, {dmw0_value}
    csrwr       $t0, {dmw0}
    li.d        $t0, {dmw1_value}
    csrwr       $t0, {dmw1}
    // $t0 = DMW1 base | PA of the `pcaddi`; continue 3 instructions later.
    li.d        $t0, {cached_base}
    pcaddi      $t1, 0
    bstrins.d   $t0, $t1, 47, 0
    jirl        $zero, $t0, 12
    li.d        $t0, {euen_fpe}
    csrwr       $t0, {euen}
    li.d        $t0, {crmd_paging}
    csrwr       $t0, {crmd}
.endm

.section .text.boot, "ax"
.global _start
_start:
    rdtime.d    $s0, $zero          // entry time, first thing
    csrrd       $s1, {crmd}         // entered privilege level in bits 1:0
    move        $s2, $a1            // physical address of the command line
    CPU_MODE_ON
    la.pcrel    $sp, __boot_stack_top
    la.pcrel    $t0, __bss_start
    la.pcrel    $t1, __bss_end
0:  bgeu        $t0, $t1, 1f
    st.d        $zero, $t0, 0
    addi.d      $t0, $t0, 8
    b           0b
1:  csrwr       $zero, {ks0}        // logical CPU 0
    move        $a0, $s0
    andi        $a1, $s1, {plv_mask}
    move        $a2, $s2
    bl          {primary_rust}
2:  idle        0
    b           2b

.global _secondary_start
_secondary_start:
    CPU_MODE_ON
    li.d        $t0, {mailbox_stack}
    iocsrrd.d   $sp, $t0
    li.d        $t0, {mailbox_cpu}
    iocsrrd.d   $a0, $t0
    move        $t0, $a0
    csrwr       $t0, {ks0}
    bl          {secondary_rust}
3:  idle        0
    b           3b
"#,
    dmw0 = const csr::DMW0,
    dmw1 = const csr::DMW1,
    dmw0_value = const mmu::DMW0_UNCACHED,
    dmw1_value = const mmu::DMW1_CACHED,
    cached_base = const mmu::CACHED_BASE,
    euen = const csr::EUEN,
    euen_fpe = const csr::EUEN_FPE,
    crmd = const csr::CRMD,
    crmd_paging = const csr::CRMD_PAGING,
    plv_mask = const csr::CRMD_PLV_MASK,
    ks0 = const csr::KS0_CPU_ID,
    mailbox_stack = const smp::IOCSR_MAILBOX_STACK,
    mailbox_cpu = const smp::IOCSR_MAILBOX_CPU,
    primary_rust = sym primary_rust,
    secondary_rust = sym secondary_rust,
);

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

unsafe extern "Rust" {
    /// The kernel's boot-CPU entry, defined by the `boot` crate.
    fn lodger_primary_entry(handoff: &BootHandoff) -> !;
    /// The kernel's secondary-CPU entry, defined by the `boot` crate.
    fn lodger_secondary_entry(cpu: usize) -> !;
}

/// Where QEMU `virt` puts the DTB (physical): 1 MiB, below the image. The
/// EFI-style system table at a2 names the same address.
const QEMU_VIRT_DTB_PA: usize = 0x10_0000;
const FDT_MAGIC: u32 = 0xd00d_feed;

/// The most bytes of command line read from a1 (QEMU copies at most 512;
/// Linux on LoongArch accepts 4096).
const CMDLINE_MAX: usize = 4096;

/// The NUL-terminated command line at physical address `pa` (QEMU's a1), if
/// there is a non-empty, UTF-8 one. QEMU copies it to the start of its
/// boot-information area, physical address 0 (so a1 = 0 is a real address;
/// without `-append` the string is empty). Only a string below the image is
/// read: that area is not RAM anything else uses.
fn cmdline_at(pa: usize) -> Option<&'static str> {
    let image_pa = mmu::physical(&raw const __image_start as usize);
    if pa >= image_pa {
        return None;
    }
    let max = CMDLINE_MAX.min(image_pa - pa);
    // SAFETY: `[pa, pa + max)` is RAM below the image (QEMU `virt` RAM starts
    // at 0), mapped by DMW1, and never written again: the heap starts after
    // the image.
    let bytes = unsafe { core::slice::from_raw_parts(mmu::cached(pa) as *const u8, max) };
    let len = bytes.iter().position(|&b| b == 0)?;
    core::str::from_utf8(&bytes[..len])
        .ok()
        .filter(|s| !s.is_empty())
}

fn looks_like_fdt(va: usize) -> bool {
    // SAFETY: DMW1 maps all physical memory; QEMU `virt` has RAM at 0, and
    // the address is 8-byte aligned.
    let magic = unsafe { core::ptr::read_volatile(va as *const u32) };
    u32::from_be(magic) == FDT_MAGIC
}

extern "C" fn primary_rust(entry_ticks: u64, plv: usize, cmdline_pa: usize) -> ! {
    super::trap::install();
    mmu::init_tables();
    mmu::init_cpu();
    let fdt = mmu::cached(QEMU_VIRT_DTB_PA);
    // Without an FDT the kernel cannot even find the console; it ends the
    // run (powering off) when it fails to parse this.
    let fdt = if looks_like_fdt(fdt) { fdt } else { 0 };
    // Linker-script symbols: only their addresses are used.
    let image = (
        &raw const __image_start as usize,
        &raw const __image_end as usize,
    );
    let handoff = BootHandoff {
        fdt,
        entered_at: match plv {
            0 => "PLV0",
            1 => "PLV1",
            2 => "PLV2",
            _ => "PLV3",
        },
        entry_ticks,
        image,
        cmdline: cmdline_at(cmdline_pa),
    };
    // SAFETY: defined by the `boot` crate with exactly this signature.
    unsafe { lodger_primary_entry(&handoff) }
}

extern "C" fn secondary_rust(cpu: usize) -> ! {
    smp::arrived(cpu);
    super::trap::install();
    mmu::init_cpu();
    // SAFETY: defined by the `boot` crate with exactly this signature.
    unsafe { lodger_secondary_entry(cpu) }
}

/// Address of the secondary entry point, for the start mailbox. The DMW1
/// alias: the firmware jumps to it in direct-address mode, where the bits
/// above 47 are ignored, and `CPU_MODE_ON` then keeps running there.
pub(super) fn secondary_entry() -> usize {
    unsafe extern "C" {
        fn _secondary_start();
    }
    _secondary_start as *const () as usize
}
