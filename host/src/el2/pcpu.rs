//! One pCPU: its index, its wait, the EL2 state it runs its vCPU with
//! ([`init_pcpu`]), and a secondary's way into its vCPU.

use core::sync::atomic::Ordering;

use host::policy::Schedule;

use super::clock::now_ns;
use super::inject::{Injector, INJECTORS};
use super::trap::{self, Frame};
use super::vcpu::{POWER_ON, VCPUS};
use super::{facts, fail, gic, set_sysreg, sysreg};

/// HCR_EL2: EL1 is AArch64 (RW), FIQs go to EL2 (FMO), SMC traps (TSC),
/// WFI traps (TWI). IRQs, SErrors, WFE and everything else stay with EL1.
const HCR_EL2_VALUE: u64 = (1 << 31) | (1 << 3) | (1 << 19) | (1 << 13);
/// CNTHCTL_EL2 (E2H = 0): EL1 may use the physical counter and timer.
const CNTHCTL_EL2_VALUE: u64 = 0b11;
/// SCTLR_EL1's RES1 bits, MMU and caches off: the state a vCPU starts in.
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;

/// The pCPU (= vCPU) this runs on.
pub fn cpu_index() -> usize {
    sysreg!("tpidr_el2") as usize
}

pub fn wfi() {
    // SAFETY: WFI only waits; interrupts stay masked at EL2, pending ones
    // end the wait.
    unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
}

/// EL2 state for this pCPU's vCPU, its GIC share and its injector.
///
/// Before: the [`super::Facts`] are published; the vCPU has not run here.
/// After: the traps and routing of the module header's table are set, EL1
/// starts with its MMU off, the redistributor is found and holds pvhost's
/// two interrupts, and CNTHP is armed for the first window of the pCPU's
/// schedule.
pub fn init_pcpu(cpu: usize) {
    let f = facts();
    let (midr, mpidr) = (sysreg!("midr_el1"), sysreg!("mpidr_el1"));
    // SAFETY: EL2 configuration before the vCPU first runs on this pCPU:
    // the trap and routing controls above, EL1's timers and counter, EL1's
    // view of MIDR/MPIDR (the real ones, so the guest's MPIDRs match the
    // DTB), no stage 2, EL1 with its MMU off, pvhost's timer off.
    unsafe {
        set_sysreg!("hcr_el2", HCR_EL2_VALUE);
        set_sysreg!("cnthctl_el2", CNTHCTL_EL2_VALUE);
        set_sysreg!("cntvoff_el2", 0u64);
        set_sysreg!("hstr_el2", 0u64);
        set_sysreg!("vttbr_el2", 0u64);
        set_sysreg!("vpidr_el2", midr);
        set_sysreg!("vmpidr_el2", mpidr);
        set_sysreg!("sctlr_el1", SCTLR_EL1_RESET);
        set_sysreg!("cnthp_ctl_el2", 0u64);
        core::arch::asm!("isb", options(nomem, nostack, preserves_flags));
    }
    let Some(rd) = gic::find_redistributor(f.gicr, f.mpidr[cpu]) else {
        fail(format_args!("no GIC redistributor for pCPU {cpu}"));
    };
    VCPUS[cpu].rd.store(rd, Ordering::Relaxed);
    gic::init_cpu(rd);
    let mut injector = Injector {
        schedule: Schedule::new(f.steal, cpu, now_ns()),
        window: None,
    };
    injector.arm(now_ns());
    *INJECTORS[cpu].lock() = Some(injector);
}

/// A secondary pCPU, started by `Host::cpu_on` for the guest's CPU_ON.
pub extern "C" fn secondary_main(cpu: usize) -> ! {
    init_pcpu(cpu);
    let v = &VCPUS[cpu];
    let (entry, context) = (
        v.entry.load(Ordering::Acquire),
        v.context.load(Ordering::Acquire),
    );
    v.power.store(POWER_ON, Ordering::Release);
    trap::enter_guest(cpu, Frame::entry(entry, trap::SPSR_EL1H_MASKED, context))
}
