//! EL2 exception vectors and the guest's saved registers.
//!
//! The guest runs at EL1 with SP_EL2 at the top of its pCPU's stack minus
//! one [`Frame`]. Every exception saves the general registers, ELR_EL2,
//! SPSR_EL2 and the FP/SIMD registers (pvhost's Rust may use them) into that
//! frame, calls [`el2_trap`], and restores the frame (changed or not) with
//! an `eret`: the kernel's vectors, at EL2 (`arch::trap_frame`). [`enter_guest`] is the same restore path, for a vCPU's first
//! entry. pvhost never unmasks interrupts at EL2, so exceptions never nest;
//! one taken at EL2 itself is a bug in pvhost, reported as fatal.

use core::fmt;

pub use arch::trap_frame::{TrapFrame as Frame, FRAME_SIZE};

/// SPSR for EL1h with D, A, I, F masked: a vCPU's first entry (as PSCI
/// CPU_ON and a boot loader promise).
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;

/// Vector slots (0-15 in table order) pvhost handles.
pub const LOWER_SYNC: u64 = 8;
pub const LOWER_IRQ: u64 = 9;
pub const LOWER_FIQ: u64 = 10;

arch::trap_vectors!(
    el: "2",
    vectors: "el2_vectors",
    restore: "el2_restore",
    handler: el2_trap,
);

core::arch::global_asm!(
    r#"
// enter_guest(frame): x0 = the frame at the top of this pCPU's stack.
.global el2_enter_guest
el2_enter_guest:
    mov     sp, x0
    b       el2_restore
"#
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
        LOWER_SYNC => super::exit::guest_sync(frame),
        LOWER_FIQ => super::inject::host_interrupts(frame),
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
