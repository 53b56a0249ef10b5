//! EL2 exception vectors and the guest's saved registers.
//!
//! The guest runs at EL1 with SP_EL2 at the top of its pCPU's stack minus
//! one [`Frame`]. Every exception saves the general registers, ELR_EL2,
//! SPSR_EL2 and the FP/SIMD registers (pvhost's Rust may use them) into that
//! frame, calls [`el2_trap`], and restores the frame (changed or not) with
//! an `eret`. [`enter_guest`] is the same restore path, for a vCPU's first
//! entry. pvhost never unmasks interrupts at EL2, so exceptions never nest;
//! one taken at EL2 itself is a bug in pvhost, reported as fatal.

use core::fmt;

/// The guest's registers while pvhost runs (layout shared with the assembly).
#[repr(C)]
pub struct Frame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    _pad: u64,
    pub q: [u128; 32],
    pub fpcr: u64,
    pub fpsr: u64,
}

pub const FRAME_SIZE: usize = core::mem::size_of::<Frame>();
const _: () = assert!(FRAME_SIZE == 800 && FRAME_SIZE.is_multiple_of(16));
const _: () = assert!(core::mem::offset_of!(Frame, elr) == 248);
const _: () = assert!(core::mem::offset_of!(Frame, q) == 272);
const _: () = assert!(core::mem::offset_of!(Frame, fpcr) == 784);

impl Frame {
    /// A vCPU's first entry: `pc` at EL1h with D, A, I, F masked (as PSCI
    /// CPU_ON and a boot loader promise), `x0` set, everything else zero.
    pub fn entry(pc: u64, x0: u64) -> Frame {
        let mut x = [0; 31];
        x[0] = x0;
        Frame {
            x,
            elr: pc,
            spsr: SPSR_EL1H_MASKED,
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

    pub fn set_reg(&mut self, rt: usize, value: u64) {
        if let Some(r) = self.x.get_mut(rt) {
            *r = value;
        }
    }
}

/// SPSR for EL1h with D, A, I, F masked.
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;

/// Vector slots (0-15 in table order) pvhost handles.
pub const LOWER_SYNC: u64 = 8;
pub const LOWER_IRQ: u64 = 9;
pub const LOWER_FIQ: u64 = 10;

core::arch::global_asm!(
    r#"
.macro VECTOR kind
.balign 0x80
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       el2_save
.endm

.section .text.vectors, "ax"
.balign 0x800
.global el2_vectors
el2_vectors:
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

el2_save:
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
    mrs     x9, elr_el2
    stp     x30, x9, [sp, #240]
    mrs     x9, spsr_el2
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
    bl      {trap}

.global el2_restore
el2_restore:
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
    msr     spsr_el2, x9
    ldp     x30, x9, [sp, #240]
    msr     elr_el2, x9
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

// enter_guest(frame): x0 = the frame at the top of this pCPU's stack.
.global el2_enter_guest
el2_enter_guest:
    mov     sp, x0
    b       el2_restore
"#,
    frame = const FRAME_SIZE,
    trap = sym el2_trap,
);

unsafe extern "C" {
    fn el2_enter_guest(frame: *const Frame) -> !;
}

/// Enters the guest on this pCPU with `frame`'s registers; pvhost's stack
/// is abandoned (every later exception starts afresh at its top).
pub fn enter_guest(cpu: usize, frame: Frame) -> ! {
    let slot = (super::start::stack_top(cpu) - FRAME_SIZE as u64) as *mut Frame;
    // SAFETY: the top FRAME_SIZE bytes of this pCPU's stack are reserved for
    // the guest's frame (start.rs sets sp below them before any Rust runs),
    // so no live Rust data is there; the slot is 16-byte aligned.
    unsafe {
        slot.write(frame);
        el2_enter_guest(slot)
    }
}

/// Where every exception lands, with the saved frame.
extern "C" fn el2_trap(kind: u64, frame: &mut Frame) {
    match kind {
        LOWER_SYNC => super::guest_sync(frame),
        LOWER_FIQ => super::host_interrupts(frame),
        // HCR_EL2.IMO = 0: physical IRQs go to the guest, never here.
        LOWER_IRQ => {}
        _ => fatal(kind, frame),
    }
}

struct Fatal<'a> {
    kind: u64,
    esr: u64,
    far: u64,
    frame: &'a Frame,
}

impl fmt::Display for Fatal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pvhost: fatal exception at EL2 (vector {}): ESR_EL2 {:#x} FAR_EL2 {:#x} ELR_EL2 {:#x} SPSR_EL2 {:#x}",
            self.kind, self.esr, self.far, self.frame.elr, self.frame.spsr
        )
    }
}

fn fatal(kind: u64, frame: &Frame) -> ! {
    let report = Fatal {
        kind,
        esr: super::sysreg!("esr_el2"),
        far: super::sysreg!("far_el2"),
        frame,
    };
    super::console::line(format_args!("{report}"));
    super::power::system_off()
}
