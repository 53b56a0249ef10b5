//! The EL1 exception vectors and the fault report.
//!
//! Every exception saves the full register state on the current stack
//! ([`crate::trap_frame`], shared with pvhost's EL2 vectors), then calls
//! [`trap_entry`]. Interrupts go to the GIC driver; a synchronous exception or
//! SError is a fault: it is reported and the kernel's `fatal` hook ends the run.

use core::fmt;

use aarch64_cpu::registers::{Readable, Writeable, ESR_EL1, FAR_EL1, VBAR_EL1};

use crate::trap_frame::{ec, TrapFrame};

/// Vector-table slot of an IRQ taken at EL1 on SP_EL1 (the only IRQ vector
/// lodger expects; slots are numbered 0-15 in table order).
const VECTOR_IRQ_CURRENT_EL: u64 = 5;

crate::trap_vectors!(
    el: "1",
    vectors: "exception_vectors",
    restore: "exception_restore",
    handler: trap_entry,
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
fn exception_class_name(class: u64) -> &'static str {
    match class {
        ec::UNKNOWN => "Unknown reason",
        ec::WFX => "Trapped WFI/WFE",
        ec::FP_SIMD => "Trapped FP/SIMD access",
        ec::ILLEGAL_STATE => "Illegal Execution state",
        ec::SVC64 => "SVC",
        ec::HVC64 => "HVC",
        ec::SMC64 => "SMC",
        ec::SYSREG => "Trapped MSR/MRS/system instruction",
        ec::INSTRUCTION_ABORT_LOWER => "Instruction Abort (lower EL)",
        ec::INSTRUCTION_ABORT => "Instruction Abort",
        ec::PC_ALIGNMENT => "PC alignment fault",
        ec::DATA_ABORT_LOWER => "Data Abort (lower EL)",
        ec::DATA_ABORT => "Data Abort",
        ec::SP_ALIGNMENT => "SP alignment fault",
        ec::FP_EXCEPTION => "Trapped floating-point exception",
        ec::SERROR => "SError",
        0x30 | 0x31 => "Breakpoint",
        0x32 | 0x33 => "Software step",
        0x34 | 0x35 => "Watchpoint",
        ec::BRK64 => "BRK instruction",
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
        let code = ec::of(self.esr);
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
            "  ESR_EL1 {:#010x}: EC {code:#04x} {}, ISS {iss:#x}",
            self.esr,
            exception_class_name(code)
        )?;
        if matches!(
            code,
            ec::INSTRUCTION_ABORT_LOWER
                | ec::INSTRUCTION_ABORT
                | ec::DATA_ABORT_LOWER
                | ec::DATA_ABORT
        ) {
            let fsc = iss & 0x3f;
            let level = fsc & 0x3;
            let access = if code >= ec::DATA_ABORT_LOWER {
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
