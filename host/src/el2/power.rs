//! PSCI calls pvhost makes itself, to QEMU's firmware conduit (`smc` from
//! EL2: QEMU emulates the PSCI firmware at EL3).

use smccc::psci;

fn smc(function: u32, args: [u64; 3]) -> i64 {
    let mut regs = [0u64; 17];
    regs[..3].copy_from_slice(&args);
    smccc::smc64(function, regs)[0] as i64
}

/// Starts pCPU `mpidr` at `entry` (EL2) with x0 = `context`.
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> i64 {
    smc(psci::PSCI_CPU_ON_64, [mpidr, entry, context])
}

pub fn affinity_info(target: u64, lowest_level: u64) -> i64 {
    smc(psci::PSCI_AFFINITY_INFO_64, [target, lowest_level, 0])
}

/// Powers this pCPU off; returns only on failure (the PSCI status).
pub fn cpu_off() -> i64 {
    smc(psci::PSCI_CPU_OFF, [0; 3])
}

pub fn system_off() -> ! {
    smc(psci::PSCI_SYSTEM_OFF, [0; 3]);
    park()
}

pub fn system_reset() -> ! {
    smc(psci::PSCI_SYSTEM_RESET, [0; 3]);
    park()
}

/// Stops this pCPU for good (interrupts stay masked at EL2).
pub fn park() -> ! {
    loop {
        // SAFETY: WFI only waits.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    }
}
