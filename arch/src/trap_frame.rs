//! aarch64: the register frame an exception saves, and the vector table
//! that saves and restores it, for the kernel at EL1 and pvhost at EL2 (the
//! two differ only in the exception level of ELR/SPSR and in their handler).
//!
//! Each of the 16 vectors pushes a [`TrapFrame`] on the current stack
//! (general registers, ELR, SPSR, the FP/SIMD registers: compiled code
//! anywhere may use NEON), calls `handler(kind, &mut frame)` with `kind` the
//! vector's slot (0-15 in table order), restores the frame, changed or not,
//! and `eret`s. See [`trap_vectors!`].

/// The exception classes (ESR_ELx.EC, Arm ARM D24.2.42) that the kernel's
/// fault report and pvhost's trap handler name, for both.
pub mod ec {
    /// ESR_ELx.EC: bits 26..31.
    pub const SHIFT: u32 = 26;
    pub const MASK: u64 = 0x3f;
    pub const UNKNOWN: u64 = 0x00;
    pub const WFX: u64 = 0x01;
    pub const FP_SIMD: u64 = 0x07;
    pub const ILLEGAL_STATE: u64 = 0x0e;
    pub const SVC64: u64 = 0x15;
    pub const HVC64: u64 = 0x16;
    pub const SMC64: u64 = 0x17;
    pub const SYSREG: u64 = 0x18;
    pub const INSTRUCTION_ABORT_LOWER: u64 = 0x20;
    pub const INSTRUCTION_ABORT: u64 = 0x21;
    pub const PC_ALIGNMENT: u64 = 0x22;
    pub const DATA_ABORT_LOWER: u64 = 0x24;
    pub const DATA_ABORT: u64 = 0x25;
    pub const SP_ALIGNMENT: u64 = 0x26;
    pub const FP_EXCEPTION: u64 = 0x2c;
    pub const SERROR: u64 = 0x2f;
    pub const BRK64: u64 = 0x3c;

    /// The class of syndrome `esr`.
    pub const fn of(esr: u64) -> u64 {
        (esr >> SHIFT) & MASK
    }
}

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

pub const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(FRAME_SIZE == 800 && FRAME_SIZE.is_multiple_of(16));
const _: () = assert!(core::mem::offset_of!(TrapFrame, elr) == 248);
const _: () = assert!(core::mem::offset_of!(TrapFrame, q) == 272);
const _: () = assert!(core::mem::offset_of!(TrapFrame, fpcr) == 784);

impl TrapFrame {
    /// A frame whose `eret` enters `pc` with `spsr`, `x0` set, every other
    /// register zero.
    pub fn entry(pc: u64, spsr: u64, x0: u64) -> TrapFrame {
        let mut x = [0; 31];
        x[0] = x0;
        TrapFrame {
            x,
            elr: pc,
            spsr,
            _pad: 0,
            q: [0; 32],
            fpcr: 0,
            fpsr: 0,
        }
    }

    /// Register `rt` as an instruction names it (31 = xzr).
    pub fn reg(&self, rt: usize) -> u64 {
        self.x.get(rt).copied().unwrap_or(0)
    }

    /// Sets register `rt` (31 = xzr: ignored).
    pub fn set_reg(&mut self, rt: usize, value: u64) {
        if let Some(r) = self.x.get_mut(rt) {
            *r = value;
        }
    }
}

/// The vector table, in `.text.vectors`, for exception level `el` ("1" or
/// "2"): `vectors` names the table (a global symbol, 2 KiB aligned, for
/// VBAR_ELx), `restore` the restore path (a global symbol: branching there
/// with SP at a frame enters that frame), `handler` the
/// `extern "C" fn(kind: u64, frame: &mut TrapFrame)` every exception calls.
#[macro_export]
macro_rules! trap_vectors {
    (el: $el:literal, vectors: $vectors:literal, restore: $restore:literal, handler: $handler:path $(,)?) => {
        core::arch::global_asm!(
            concat!(
                r#"
.macro VECTOR kind
.balign 0x80
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       "#, $vectors, r#"_save
.endm

.section .text.vectors, "ax"
.balign 0x800
.global "#, $vectors, r#"
"#, $vectors, r#":
    .irp kind, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    VECTOR \kind
    .endr

"#, $vectors, r#"_save:
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
    mrs     x9, elr_el"#, $el, r#"
    stp     x30, x9, [sp, #240]
    mrs     x9, spsr_el"#, $el, r#"
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
    bl      {handler}

.global "#, $restore, r#"
"#, $restore, r#":
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
    msr     spsr_el"#, $el, r#", x9
    ldp     x30, x9, [sp, #240]
    msr     elr_el"#, $el, r#", x9
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
"#
            ),
            frame = const $crate::trap_frame::FRAME_SIZE,
            handler = sym $handler,
        );
    };
}
