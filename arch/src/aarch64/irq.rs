//! GICv3 (through the `arm-gic` crate): distributor and redistributors set up
//! once, each CPU's interface enabled by [`init_cpu`], SGI 0 as the IPI.
//!
//! Everything is Group 1 non-secure, the only group an EL1 guest owns under
//! KVM. Affinity routing is on, so SGIs are addressed by MPIDR affinity.

use arm_gic::gicv3::{GicCpuInterface, GicV3, SgiTarget, SgiTargetGroup};
use arm_gic::{IntId, InterruptGroup, UniqueMmioPointer};
use core::ptr::NonNull;

use crate::{Irq, MAX_CPUS};

/// The IPI's SGI number.
const IPI_SGI: u32 = 0;
/// Priority of every interrupt lodger enables; the mask lets all through.
const PRIORITY: u8 = 0x80;
const PRIORITY_MASK_ALL: u8 = 0xff;

pub(super) struct Gic {
    driver: spin::Mutex<GicV3<'static>>,
    /// Redistributor index of each logical CPU.
    redist_index: [usize; MAX_CPUS],
    timer_intid: IntId,
}

static GIC: spin::Once<Gic> = spin::Once::new();

fn gic() -> &'static Gic {
    GIC.get().expect("GIC used before init_platform")
}

/// Brings up the distributor and all redistributors.
///
/// # Safety
/// `gicd` and `gicr` must be the GICv3 distributor and redistributor bases of
/// this machine, mapped as device memory and used by nothing else.
pub(super) unsafe fn init(
    gicd: usize,
    gicr: usize,
    mpidrs: &[u64],
    timer_ppi: u32,
) -> Result<(), &'static str> {
    let gicd = NonNull::new(gicd as *mut _).ok_or("GIC distributor at address 0")?;
    let gicr = NonNull::new(gicr as *mut _).ok_or("GIC redistributor at address 0")?;
    // SAFETY: the caller guarantees the bases; the pointers are exclusively
    // owned by this driver from here on.
    let mut driver = unsafe { GicV3::new(UniqueMmioPointer::new(gicd), gicr, mpidrs.len()) }
        .map_err(|_| "GICv3 redistributor frames not recognised")?;

    let mut redist_index = [0; MAX_CPUS];
    for (cpu, &mpidr) in mpidrs.iter().enumerate() {
        let affinity = mpidr & 0xff_00ff_ffff;
        redist_index[cpu] = (0..mpidrs.len())
            .find(|&i| {
                driver
                    .gicr_typer(i)
                    .is_ok_and(|t| t.core_mpidr() & 0xff_00ff_ffff == affinity)
            })
            .ok_or("no GIC redistributor matches a CPU's MPIDR")?;
    }
    driver.setup(redist_index[0]);
    GIC.call_once(|| Gic {
        driver: spin::Mutex::new(driver),
        redist_index,
        timer_intid: IntId::ppi(timer_ppi),
    });
    Ok(())
}

/// Enables this CPU's interface, its IPI and its timer interrupt.
pub(super) fn init_cpu(cpu: usize) {
    let gic = gic();
    let index = gic.redist_index[cpu];
    let mut driver = gic.driver.lock();
    if cpu != 0 {
        driver.init_cpu(index);
    }
    for intid in [IntId::sgi(IPI_SGI), gic.timer_intid] {
        driver
            .set_interrupt_priority(intid, Some(index), PRIORITY)
            .and_then(|()| driver.enable_interrupt(intid, Some(index), true))
            .expect("redistributor index checked at init");
    }
    GicCpuInterface::set_priority_mask(PRIORITY_MASK_ALL);
    GicCpuInterface::enable_group1(true);
}

/// Sends the IPI to the CPU with this MPIDR.
pub(super) fn send_ipi(mpidr: u64) {
    let target = SgiTarget::List {
        affinity3: (mpidr >> 32) as u8,
        affinity2: (mpidr >> 16) as u8,
        affinity1: (mpidr >> 8) as u8,
        target_list: 1 << (mpidr & 0xf),
    };
    // The mailbox stores the IPI announces must be visible before it arrives:
    // the SGI register write is not ordered by `dmb`, only by `dsb`.
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISHST);
    GicCpuInterface::send_sgi(IntId::sgi(IPI_SGI), target, SgiTargetGroup::CurrentGroup1)
        .expect("SGI number is valid");
}

/// Acknowledges and dispatches one interrupt; called from the IRQ vector.
pub(super) fn handle_irq() {
    let Some(intid) = GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group1) else {
        return; // Spurious: withdrawn before we got here.
    };
    let irq = if intid == IntId::sgi(IPI_SGI) {
        Irq::Ipi
    } else if intid == gic().timer_intid {
        super::timer::silence();
        Irq::Timer
    } else {
        Irq::Other(intid.into())
    };
    // End it before the handler runs: while an interrupt is active the GIC
    // signals nothing of the same priority, so a handler that halts (the
    // qspinlock's waiting path) would never be woken by the kick IPI or the
    // next tick. PSTATE.I stays set, so nothing nests; the timer was
    // silenced above, so its level does not re-trigger.
    GicCpuInterface::end_interrupt(intid, InterruptGroup::Group1);
    (super::hooks().irq)(irq);
}
