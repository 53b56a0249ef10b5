//! Exception vectors, the saved register frame, and the fault report.
//!
//! Every exception saves the full register state — general registers, ELR,
//! SPSR and the FP/SIMD registers (the kernel is built with NEON, so compiled
//! code anywhere may use them) — on the current stack, then calls
//! [`trap_entry`]. Interrupts go to the GIC driver; a synchronous exception or
//! SError is a fault: it is reported and the kernel's `fatal` hook ends the run.

use core::fmt;

use aarch64_cpu::registers::{Readable, Writeable, ESR_EL1, FAR_EL1, VBAR_EL1};

/// Register state saved on exception entry (layout shared with the assembly).
#[repr(C)]
pub struct TrapFrame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    _pad: u64,
    pub q: [u128; 32],
    pub fpcr: u64,
    pub fpsr: u64,
}

const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(FRAME_SIZE == 800 && FRAME_SIZE.is_multiple_of(16));
const _: () = assert!(core::mem::offset_of!(TrapFrame, elr) == 248);
const _: () = assert!(core::mem::offset_of!(TrapFrame, q) == 272);
const _: () = assert!(core::mem::offset_of!(TrapFrame, fpcr) == 784);

/// Vector-table slot of an IRQ taken at EL1 on SP_EL1 (the only IRQ vector
/// lodger expects; slots are numbered 0-15 in table order).
const VECTOR_IRQ_CURRENT_EL: u64 = 5;

core::arch::global_asm!(
    r#"
.macro VECTOR kind
.balign 0x80
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       trap_common
.endm

.section .text.vectors, "ax"
.balign 0x800
.global exception_vectors
exception_vectors:
    VECTOR 0
    VECTOR 1
    VECTOR 2
    VECTOR 3
    VECTOR 4
    VECTOR 5
    VECTOR 6
    VECTOR 7
    VECTOR 8
    VECTOR 9
    VECTOR 10
    VECTOR 11
    VECTOR 12
    VECTOR 13
    VECTOR 14
    VECTOR 15

trap_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x9, elr_el1
    stp     x30, x9, [sp, #240]
    mrs     x9, spsr_el1
    str     x9, [sp, #256]
    add     x9, sp, #272
    stp     q0, q1, [x9, #0]
    stp     q2, q3, [x9, #32]
    stp     q4, q5, [x9, #64]
    stp     q6, q7, [x9, #96]
    stp     q8, q9, [x9, #128]
    stp     q10, q11, [x9, #160]
    stp     q12, q13, [x9, #192]
    stp     q14, q15, [x9, #224]
    stp     q16, q17, [x9, #256]
    stp     q18, q19, [x9, #288]
    stp     q20, q21, [x9, #320]
    stp     q22, q23, [x9, #352]
    stp     q24, q25, [x9, #384]
    stp     q26, q27, [x9, #416]
    stp     q28, q29, [x9, #448]
    stp     q30, q31, [x9, #480]
    mrs     x10, fpcr
    mrs     x11, fpsr
    str     x10, [sp, #784]
    str     x11, [sp, #792]

    mov     x1, sp
    bl      {entry}

    ldr     x10, [sp, #784]
    ldr     x11, [sp, #792]
    add     x9, sp, #272
    msr     fpcr, x10
    msr     fpsr, x11
    ldp     q0, q1, [x9, #0]
    ldp     q2, q3, [x9, #32]
    ldp     q4, q5, [x9, #64]
    ldp     q6, q7, [x9, #96]
    ldp     q8, q9, [x9, #128]
    ldp     q10, q11, [x9, #160]
    ldp     q12, q13, [x9, #192]
    ldp     q14, q15, [x9, #224]
    ldp     q16, q17, [x9, #256]
    ldp     q18, q19, [x9, #288]
    ldp     q20, q21, [x9, #320]
    ldp     q22, q23, [x9, #352]
    ldp     q24, q25, [x9, #384]
    ldp     q26, q27, [x9, #416]
    ldp     q28, q29, [x9, #448]
    ldp     q30, q31, [x9, #480]
    ldr     x9, [sp, #256]
    msr     spsr_el1, x9
    ldp     x30, x9, [sp, #240]
    msr     elr_el1, x9
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    add     sp, sp, #{frame}
    eret
"#,
    frame = const FRAME_SIZE,
    entry = sym trap_entry,
);

/// Points VBAR_EL1 at the vector table; called first thing on every CPU.
pub(super) fn install_vectors() {
    unsafe extern "C" {
        static exception_vectors: u8;
    }
    let base = &raw const exception_vectors as u64;
    VBAR_EL1.set(base);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

extern "C" fn trap_entry(kind: u64, frame: &mut TrapFrame) {
    match kind {
        VECTOR_IRQ_CURRENT_EL => {
            super::irq::handle_irq();
            (super::hooks().irq_exit)();
        }
        _ => report_fatal(kind, frame),
    }
}

fn report_fatal(kind: u64, frame: &TrapFrame) -> ! {
    let report = FaultReport {
        kind,
        esr: ESR_EL1.get(),
        far: FAR_EL1.get(),
        frame,
        cpu: super::cpu_id(),
    };
    (super::hooks().fatal)(format_args!("{report}"))
}

struct FaultReport<'a> {
    kind: u64,
    esr: u64,
    far: u64,
    frame: &'a TrapFrame,
    cpu: usize,
}

/// Name of an ESR_ELx exception class (Arm ARM D24.2.42).
fn exception_class_name(ec: u64) -> &'static str {
    match ec {
        0x00 => "Unknown reason",
        0x01 => "Trapped WFI/WFE",
        0x07 => "Trapped FP/SIMD access",
        0x0e => "Illegal Execution state",
        0x15 => "SVC",
        0x16 => "HVC",
        0x17 => "SMC",
        0x18 => "Trapped MSR/MRS/system instruction",
        0x20 => "Instruction Abort (lower EL)",
        0x21 => "Instruction Abort",
        0x22 => "PC alignment fault",
        0x24 => "Data Abort (lower EL)",
        0x25 => "Data Abort",
        0x26 => "SP alignment fault",
        0x2c => "Trapped floating-point exception",
        0x2f => "SError",
        0x30 | 0x31 => "Breakpoint",
        0x32 | 0x33 => "Software step",
        0x34 | 0x35 => "Watchpoint",
        0x3c => "BRK instruction",
        _ => "Reserved/unhandled exception class",
    }
}

/// Name of a data/instruction fault status code (DFSC/IFSC).
fn fault_status_name(fsc: u64) -> &'static str {
    match fsc {
        0b00_0000..=0b00_0011 => "address size fault",
        0b00_0100..=0b00_0111 => "translation fault",
        0b00_1001..=0b00_1011 => "access flag fault",
        0b00_1101..=0b00_1111 => "permission fault",
        0b01_0000 => "synchronous external abort",
        0b10_0001 => "alignment fault",
        0b11_0000 => "TLB conflict abort",
        _ => "other fault",
    }
}

impl fmt::Display for FaultReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ec = self.esr >> 26 & 0x3f;
        let iss = self.esr & 0x01ff_ffff;
        let vector = match self.kind {
            0..=3 => "current EL with SP_EL0",
            4..=7 => "current EL with SP_ELx",
            8..=11 => "lower EL (AArch64)",
            _ => "lower EL (AArch32)",
        };
        let class = match self.kind % 4 {
            0 => "synchronous",
            1 => "IRQ",
            2 => "FIQ",
            _ => "SError",
        };
        writeln!(
            f,
            "unhandled {class} exception on CPU {} ({vector})",
            self.cpu
        )?;
        writeln!(
            f,
            "  ESR_EL1 {:#010x}: EC {ec:#04x} {}, ISS {iss:#x}",
            self.esr,
            exception_class_name(ec)
        )?;
        if matches!(ec, 0x20 | 0x21 | 0x24 | 0x25) {
            let fsc = iss & 0x3f;
            let level = fsc & 0x3;
            let access = if ec >= 0x24 {
                if iss & (1 << 6) != 0 {
                    ", on a write"
                } else {
                    ", on a read"
                }
            } else {
                ", on an instruction fetch"
            };
            writeln!(
                f,
                "  FSC {fsc:#04x}: {} (level {level}){access}",
                fault_status_name(fsc)
            )?;
        }
        writeln!(f, "  FAR  {:#018x}", self.far)?;
        write!(
            f,
            "  ELR  {:#018x}  SPSR {:#010x}",
            self.frame.elr, self.frame.spsr
        )?;
        // Two registers a line; the caller ends the last line.
        for (i, x) in self.frame.x.iter().enumerate() {
            let sep = if i % 2 == 0 { "\n  " } else { "  " };
            write!(f, "{sep}x{i:<2} {x:#018x}")?;
        }
        Ok(())
    }
}
