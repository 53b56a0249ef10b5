//! The guest's synchronous exits to EL2, by exception class: HVC and SMC
//! (handed to [`super::hypercall`]), WFI (a wait at EL2 that a kick can
//! end), the trapped SGI registers (forwarded), and anything else
//! (an Undefined Instruction injected back, as KVM does).

use core::sync::atomic::Ordering;

use super::clock::now_ns;
use super::hypercall::hypercall;
use super::inject::{preempt_if_due, service_host_interrupts, INJECTORS};
use super::pcpu::{cpu_index, wfi};
use super::trap::{self, Frame};
use super::vcpu::VCPUS;
use super::{gic, set_sysreg, sysreg};

/// ISR_EL1.I: a physical IRQ (the guest's) is pending.
const ISR_I: u64 = 1 << 7;

// Exception classes (ESR_EL2.EC) of the guest's traps.
use arch::trap_frame::ec::{
    HVC64 as EC_HVC64, SMC64 as EC_SMC64, SYSREG as EC_SYSREG, WFX as EC_WFX,
};

/// A synchronous exception from the guest.
pub fn guest_sync(frame: &mut Frame) {
    let cpu = cpu_index();
    let esr = sysreg!("esr_el2");
    let iss = esr & 0x1ff_ffff;
    gic::ensure_host_interrupts(VCPUS[cpu].rd.load(Ordering::Relaxed));
    match arch::trap_frame::ec::of(esr) {
        // ELR_EL2 is already past the HVC.
        EC_HVC64 => hypercall(cpu, frame, iss as u16),
        EC_SMC64 => {
            // A trapped SMC returns to the SMC itself: step over it.
            frame.elr += 4;
            hypercall(cpu, frame, iss as u16);
        }
        EC_WFX => {
            // ISS.TI bit 0: 0 = WFI (or WFIT), 1 = WFE (not trapped).
            if iss & 1 == 0 {
                guest_wfi(cpu);
            }
            frame.elr += 4;
        }
        EC_SYSREG => sysreg_trap(frame, iss),
        _ => inject_undef(frame),
    }
}

/// The guest executed a WFI that would sleep: wait at EL2 for a guest
/// interrupt or a kick (a kick that came first ends it at once).
fn guest_wfi(cpu: usize) {
    let v = &VCPUS[cpu];
    loop {
        // A delayed kick waits for its time (then ends the first WFI after
        // it, whatever that WFI waits for).
        if v.kick.load(Ordering::Acquire)
            && now_ns() >= v.kick_due_ns.load(Ordering::Acquire)
            && v.kick.swap(false, Ordering::AcqRel)
        {
            v.kick_due_ns.store(0, Ordering::Release);
            break;
        }
        if sysreg!("isr_el1") & ISR_I != 0 {
            break;
        }
        wfi();
        if let Some(injector) = INJECTORS[cpu].lock().as_mut() {
            service_host_interrupts(cpu, injector);
        }
    }
    // Runnable again: if its window is under way, it waits for the end.
    preempt_if_due(cpu);
}

/// A trapped system register access (ESR_EL2.EC = 0x18).
fn sysreg_trap(frame: &mut Frame, iss: u64) {
    let read = iss & 1 != 0;
    let crm = (iss >> 1) & 0xf;
    let rt = ((iss >> 5) & 0x1f) as usize;
    let crn = (iss >> 10) & 0xf;
    let op1 = (iss >> 14) & 0x7;
    let op2 = (iss >> 17) & 0x7;
    let op0 = (iss >> 20) & 0x3;
    // ICC_SGI1R_EL1 (op2 5), ICC_ASGI1R_EL1 (6), ICC_SGI0R_EL1 (7):
    // S3_0_C12_C11_{5,6,7}, write-only.
    if (op0, op1, crn, crm) != (3, 0, 12, 11) || !(5..=7).contains(&op2) {
        return inject_undef(frame);
    }
    if read {
        frame.set_reg(rt, 0);
    } else {
        let value = frame.reg(rt);
        // Group 1 SGIs are the guest's; Group 0 and SGI 15 are pvhost's,
        // and ASGI1R (the other security state) has no one to go to.
        if op2 == 5 && gic::sgi_intid(value) != gic::KICK_SGI {
            gic::forward_sgi1r(value);
        }
    }
    frame.elr += 4;
}

/// Makes the guest take an Undefined Instruction exception at EL1 (for a
/// trapped instruction pvhost does not emulate), as KVM does.
fn inject_undef(frame: &mut Frame) {
    const ESR_EC_UNKNOWN_IL: u64 = 1 << 25;
    let vbar = sysreg!("vbar_el1");
    let offset = match frame.spsr & 0xf {
        0b0101 => 0x200, // from EL1h: current EL with SP_ELx
        0b0100 => 0x000, // from EL1t: current EL with SP_EL0
        _ => 0x400,      // from EL0: lower EL (AArch64)
    };
    // SAFETY: EL1's exception registers, set as the architecture does when
    // it takes an exception to EL1; the guest is not running.
    unsafe {
        set_sysreg!("esr_el1", ESR_EC_UNKNOWN_IL);
        set_sysreg!("elr_el1", frame.elr);
        set_sysreg!("spsr_el1", frame.spsr);
    }
    frame.elr = vbar + offset;
    frame.spsr = trap::SPSR_EL1H_MASKED;
}
