//! The exception entry, the saved register frame, and the fault report.
//!
//! ECFG.VS = 0, so every exception and interrupt (but the TLB refill, see
//! [`super::mmu`], and machine errors) enters at CSR.EENTRY: `trap_vector`.
//! It saves the full register state — general registers, ERA, PRMD and the
//! FP registers with FCSR0 and the condition flags (the target is lp64d, so
//! compiled code anywhere may use them) — on the current stack (lodger runs
//! at PLV0 only, so the stack is always the kernel's) and calls
//! [`trap_entry`]. An interrupt (Ecode 0) goes to [`super::irq::handle`] and
//! returns with `ertn`; any other exception is a fault: it is decoded and the
//! kernel's `fatal` hook ends the run.

use core::fmt;

use loongArch64::register::{badi, badv, estat};

use super::csr;

/// Register state saved on exception entry (layout shared with the assembly).
#[repr(C)]
pub struct TrapFrame {
    /// `r[n]` = general register n; `r[0]` holds 0, `r[3]` (sp) the value
    /// before the trap.
    pub r: [u64; 32],
    /// Exception return address.
    pub era: u64,
    /// Pre-exception mode (PPLV, PIE, PWE).
    pub prmd: u64,
    pub f: [u64; 32],
    pub fcsr: u64,
    /// `$fcc0`..`$fcc7`, one byte each.
    pub fcc: [u8; 8],
}

const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(FRAME_SIZE == 544 && FRAME_SIZE.is_multiple_of(16));
const _: () = assert!(core::mem::offset_of!(TrapFrame, era) == 256);
const _: () = assert!(core::mem::offset_of!(TrapFrame, prmd) == 264);
const _: () = assert!(core::mem::offset_of!(TrapFrame, f) == 272);
const _: () = assert!(core::mem::offset_of!(TrapFrame, fcsr) == 528);
const _: () = assert!(core::mem::offset_of!(TrapFrame, fcc) == 536);

core::arch::global_asm!(
    r#"
.macro SAVE_GPRS
    .irp n, 1,2,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    st.d        $r\n, $sp, \n * 8
    .endr
.endm
.macro RESTORE_GPRS
    .irp n, 1,2,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ld.d        $r\n, $sp, \n * 8
    .endr
.endm

// EENTRY needs 4 KiB alignment with ECFG.VS = 0.
.section .text.trap, "ax"
.balign 4096
.global trap_vector
trap_vector:
    addi.d      $sp, $sp, -{frame}
    SAVE_GPRS
    st.d        $zero, $sp, 0
    addi.d      $t0, $sp, {frame}
    st.d        $t0, $sp, 3 * 8         // sp before the trap
    csrrd       $t0, {era}
    st.d        $t0, $sp, {off_era}
    csrrd       $t0, {prmd}
    st.d        $t0, $sp, {off_prmd}
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    fst.d       $f\n, $sp, {off_f} + \n * 8
    .endr
    movfcsr2gr  $t0, $fcsr0
    st.d        $t0, $sp, {off_fcsr}
    .irp n, 0,1,2,3,4,5,6,7
    movcf2gr    $t0, $fcc\n
    st.b        $t0, $sp, {off_fcc} + \n
    .endr

    move        $a0, $sp
    bl          {entry}

    .irp n, 0,1,2,3,4,5,6,7
    ld.bu       $t0, $sp, {off_fcc} + \n
    movgr2cf    $fcc\n, $t0
    .endr
    ld.d        $t0, $sp, {off_fcsr}
    movgr2fcsr  $fcsr0, $t0
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    fld.d       $f\n, $sp, {off_f} + \n * 8
    .endr
    ld.d        $t0, $sp, {off_prmd}
    csrwr       $t0, {prmd}
    ld.d        $t0, $sp, {off_era}
    csrwr       $t0, {era}
    RESTORE_GPRS
    addi.d      $sp, $sp, {frame}
    ertn
"#,
    frame = const FRAME_SIZE,
    off_era = const core::mem::offset_of!(TrapFrame, era),
    off_prmd = const core::mem::offset_of!(TrapFrame, prmd),
    off_f = const core::mem::offset_of!(TrapFrame, f),
    off_fcsr = const core::mem::offset_of!(TrapFrame, fcsr),
    off_fcc = const core::mem::offset_of!(TrapFrame, fcc),
    era = const csr::ERA,
    prmd = const csr::PRMD,
    entry = sym trap_entry,
);

/// Points CSR.EENTRY at `trap_vector`; called first thing on every CPU.
pub(super) fn install() {
    unsafe extern "C" {
        static trap_vector: u8;
    }
    // SAFETY: EENTRY takes the (DMW1) address of the 4 KiB-aligned vector;
    // with ECFG.VS = 0 it is the entry of every exception and interrupt.
    unsafe { csr::write::<{ csr::EENTRY }>(&raw const trap_vector as usize) };
}

extern "C" fn trap_entry(frame: &mut TrapFrame) {
    let estat = estat::read().raw();
    match ecode(estat) {
        0 => {
            super::irq::handle(estat);
            (super::hooks().irq_exit)();
        }
        _ => report_fatal(estat, frame),
    }
}

fn ecode(estat: usize) -> usize {
    (estat >> 16) & 0x3f
}

fn esubcode(estat: usize) -> usize {
    (estat >> 22) & 0x1ff
}

fn report_fatal(estat: usize, frame: &TrapFrame) -> ! {
    let report = FaultReport {
        estat,
        badv: badv::read().vaddr(),
        badi: badi::read().inst(),
        frame,
        cpu: super::cpu_id(),
    };
    (super::hooks().fatal)(format_args!("{report}"))
}

struct FaultReport<'a> {
    estat: usize,
    badv: usize,
    badi: u32,
    frame: &'a TrapFrame,
    cpu: usize,
}

/// Mnemonic and description of an exception code (Ecode, EsubCode), after
/// the LoongArch Reference Manual, Volume 1, table 7-8 "Exception encoding".
fn exception_name(ecode: usize, esubcode: usize) -> (&'static str, &'static str) {
    match (ecode, esubcode) {
        (0x00, _) => ("INT", "interrupt"),
        (0x01, _) => ("PIL", "Page Invalid for a Load (page fault)"),
        (0x02, _) => ("PIS", "Page Invalid for a Store (page fault)"),
        (0x03, _) => ("PIF", "Page Invalid for an instruction Fetch (page fault)"),
        (0x04, _) => ("PME", "Page Modification Exception (store to a clean page)"),
        (0x05, _) => ("PNR", "Page Non-Readable fault"),
        (0x06, _) => ("PNX", "Page Non-eXecutable fault"),
        (0x07, _) => ("PPI", "Page Privilege level Illegal fault"),
        (0x08, 0) => ("ADEF", "Address Error on an instruction Fetch"),
        (0x08, 1) => ("ADEM", "Address Error on a Memory access"),
        (0x08, _) => ("ADE", "Address Error"),
        (0x09, _) => ("ALE", "Address aLignment fault"),
        (0x0a, _) => ("BCE", "Bound Check Exception"),
        (0x0b, _) => ("SYS", "SYStem call"),
        (0x0c, _) => ("BRK", "BReaKpoint"),
        (0x0d, _) => ("INE", "Instruction Non-defined Exception"),
        (0x0e, _) => ("IPE", "Instruction Privilege Error"),
        (0x0f, _) => ("FPD", "Floating-Point instructions Disabled"),
        (0x10, _) => ("SXD", "128-bit vector (LSX) instructions Disabled"),
        (0x11, _) => ("ASXD", "256-bit vector (LASX) instructions Disabled"),
        (0x12, 0) => ("FPE", "Floating-Point Exception"),
        (0x12, 1) => ("VFPE", "Vector Floating-Point Exception"),
        (0x12, _) => ("FPE", "Floating-Point Exception"),
        (0x13, 0) => ("WPEF", "WatchPoint Exception on an instruction Fetch"),
        (0x13, 1) => ("WPEM", "WatchPoint Exception on a Memory access"),
        (0x13, _) => ("WPE", "WatchPoint Exception"),
        (0x14, _) => ("BTD", "Binary Translation instructions Disabled"),
        (0x15, _) => ("BTE", "Binary Translation Exception"),
        (0x16, _) => ("GSPR", "Guest Sensitive Privileged Resource"),
        (0x17, _) => ("HVC", "HyperVisor Call"),
        (0x18, 0) => ("GCSC", "Guest CSR Software Change"),
        (0x18, 1) => ("GCHC", "Guest CSR Hardware Change"),
        (0x18, _) => ("GCM", "Guest CSR Modification"),
        _ => ("?", "reserved/unknown exception code"),
    }
}

/// ABI names of the general registers.
const GPR_NAMES: [&str; 32] = [
    "zero", "ra", "tp", "sp", "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "t0", "t1", "t2",
    "t3", "t4", "t5", "t6", "t7", "t8", "u0", "fp", "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7",
    "s8",
];

impl fmt::Display for FaultReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ecode, esubcode) = (ecode(self.estat), esubcode(self.estat));
        let (mnemonic, description) = exception_name(ecode, esubcode);
        let plv = self.frame.prmd & 0b11;
        writeln!(
            f,
            "unhandled exception on CPU {} at PLV{plv}: {mnemonic}, {description}",
            self.cpu
        )?;
        writeln!(
            f,
            "  ESTAT {:#010x}: Ecode {ecode:#04x} ({mnemonic}), EsubCode {esubcode:#x}",
            self.estat
        )?;
        writeln!(f, "  BADV {:#018x}  BADI {:#010x}", self.badv, self.badi)?;
        write!(
            f,
            "  ERA  {:#018x}  PRMD {:#x}",
            self.frame.era, self.frame.prmd
        )?;
        // Two registers a line; the caller ends the last line.
        for (i, r) in self.frame.r.iter().enumerate().skip(1) {
            let sep = if i % 2 == 1 { "\n  " } else { "  " };
            write!(f, "{sep}r{i:<2} {:<4} {r:#018x}", GPR_NAMES[i])?;
        }
        Ok(())
    }
}
