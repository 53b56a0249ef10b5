//! pvhost at EL2: one vCPU per pCPU, the guest at EL1 with the machine as
//! QEMU made it, except for what a KVM guest would not own.
//!
//! What the guest gets and what pvhost keeps:
//!
//! | resource | owner | how |
//! |---|---|---|
//! | RAM below pvhost's image | guest | its FDT's `/memory`; no stage 2 (identity, `VTTBR_EL2` unused), so a guest that maps beyond it is not stopped: pvhost is a test host, not an isolation boundary |
//! | devices, GIC distributor and redistributors | guest | untouched, except pvhost's two Group 0 interrupts ([`gic`]) |
//! | Group 1 interrupts (IRQ) | guest | `HCR_EL2.IMO = 0`: taken at EL1 directly |
//! | Group 0 interrupts (FIQ): the kick SGI, CNTHP | pvhost | `HCR_EL2.FMO = 1` |
//! | HVC, SMC | pvhost | HVC from EL1 always traps; SMC by `HCR_EL2.TSC`: both are SMCCC calls ([`host::hvc`]) |
//! | WFI | pvhost | `HCR_EL2.TWI`: a WFI that would sleep traps and pvhost waits at EL2, so a kick can end it ([`exit`]) |
//! | ICC_SGI1R_EL1 writes | pvhost | trap with FMO; forwarded ([`exit`]) |
//! | EL1 virtual and physical timers, CNTVOFF = 0 | guest | guest time is the real count: stolen time shows as a gap, as under KVM |
//! | CNTHP (EL2 physical timer) | pvhost | the preemption injector |
//!
//! The preemption injector ([`inject`]) steals time from the guest on a
//! schedule, as a busy host would, and writes it into the PV records.
//!
//! The files, one job each:
//!
//! | file | job |
//! |---|---|
//! | `start.rs` | every pCPU's entry: EL2 MMU, vectors, stack |
//! | `boot.rs` | the boot pCPU: QEMU's DTB to the guest's vCPU 0 |
//! | `pcpu.rs` | one pCPU's EL2 state for its vCPU; a secondary's entry |
//! | `trap.rs` | EL2 vectors, the guest's saved registers |
//! | `exit.rs` | the guest's synchronous exits (HVC/SMC, WFI, SGI writes) |
//! | `hypercall.rs` | one SMCCC call: the table's view of the machine |
//! | `inject.rs` | the preemption injector |
//! | `vcpu.rs` | the vCPUs' shared state and ground truth |
//! | `records.rs` | the host-owned PV records, the preempted flags |
//! | `clock.rs` | the counter and its ns conversions |
//! | `gic.rs`, `power.rs`, `console.rs` | GICv3 share, PSCI calls to the firmware, the UART |
//!
//! This file holds what they share: the system register macros and the
//! [`Facts`] fixed at boot.

mod boot;
mod clock;
mod console;
mod exit;
mod gic;
mod hypercall;
mod inject;
mod pcpu;
mod power;
mod records;
mod start;
mod trap;
mod vcpu;

use core::ops::Range;

use host::args::Fault;
use host::hvc::Offer;
use host::policy::Steal;
use host::MAX_VCPUS;

/// Reads a system register (no effect beyond the read).
macro_rules! sysreg {
    ($name:literal) => {{
        let value: u64;
        // SAFETY: an MRS of a register that has no read side effects.
        unsafe {
            core::arch::asm!(concat!("mrs {}, ", $name), out(reg) value,
                options(nomem, nostack, preserves_flags))
        };
        value
    }};
}
pub(crate) use sysreg;

/// Writes a system register; the caller's `unsafe` block says why it is fine.
macro_rules! set_sysreg {
    ($name:literal, $value:expr) => {
        core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) $value,
            options(nomem, nostack, preserves_flags))
    };
}
pub(crate) use set_sysreg;

pub const MAX_PCPUS: usize = MAX_VCPUS;

/// Facts fixed at boot, read by every pCPU.
#[derive(Clone)]
struct Facts {
    offer: Offer,
    steal: Steal,
    fault: Fault,
    guest_ram: Range<u64>,
    /// pCPU (= vCPU) `i`'s MPIDR affinity, in the DTB's `/cpus` order.
    mpidr: [u64; MAX_PCPUS],
    pcpus: usize,
    gicr: u64,
    counter_hz: u64,
}

/// Set once, by [`boot`] before the guest first runs.
static FACTS: spin::Once<Facts> = spin::Once::new();

fn facts() -> &'static Facts {
    FACTS
        .get()
        .expect("pvhost facts read before boot_main set them")
}

/// Prints why pvhost cannot go on and powers the machine off.
fn fail(why: core::fmt::Arguments<'_>) -> ! {
    console::line(format_args!("pvhost: error: {why}"));
    power::system_off()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::line(format_args!(
        "pvhost: panic on pCPU {}: {info}",
        pcpu::cpu_index()
    ));
    power::system_off()
}
