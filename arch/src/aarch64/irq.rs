//! GICv3 (through the `arm-gic` crate): distributor and redistributors set up
//! once, each CPU's interface enabled by [`init_cpu`], SGI 0 as the IPI.
//!
//! Everything is Group 1 non-secure, the only group an EL1 guest owns under
//! KVM. Affinity routing is on, so SGIs are addressed by MPIDR affinity.

use arm_gic::gicv3::registers::GicrSgi;
use arm_gic::gicv3::{
    GicCpuInterface, GicDistributor, GicRedistributor, SgiTarget, SgiTargetGroup,
};
use arm_gic::{IntId, InterruptGroup, UniqueMmioPointer};
use core::ptr::NonNull;

use crate::{Irq, MAX_CPUS};

/// The IPI's SGI number.
const IPI_SGI: u32 = 0;
/// Priority of every interrupt lodger enables; the mask lets all through.
const PRIORITY: u8 = 0x80;
const PRIORITY_MASK_ALL: u8 = 0xff;

use crate::gicv3::{self, GICR_TYPER, TYPER_LAST};
/// One redistributor frame, in the kernel's address type.
const FRAME: usize = gicv3::FRAME_SIZE as usize;

/// A redistributor region from the FDT: `(base, size)`.
pub(super) type Region = (usize, usize);

pub(super) struct Gic {
    /// Each logical CPU's redistributor (RD_base). After [`init`] only that
    /// CPU touches it, so no lock is needed.
    redist: [usize; MAX_CPUS],
    timer_intid: IntId,
}

static GIC: spin::Once<Gic> = spin::Once::new();

fn gic() -> &'static Gic {
    GIC.get().expect("GIC used before init_platform")
}

/// Finds each CPU's redistributor in `regions` by the affinity its
/// GICR_TYPER reports: one pass over the frames (a GIC with 256 CPUs has 256
/// of them, in two regions on QEMU's `virt`), no per-CPU search of MMIO.
///
/// # Safety
/// Each region must be GICv3 redistributor frames, mapped as device memory.
unsafe fn find_redistributors(
    regions: &[Region],
    mpidrs: &[u64],
) -> Result<[usize; MAX_CPUS], &'static str> {
    let mut redist = [0; MAX_CPUS];
    for &(base, size) in regions {
        let mut frame = base;
        while frame + 2 * FRAME <= base + size {
            // SAFETY: `frame` is a redistributor's RD_base inside the region
            // (the caller's promise, and the bound above); GICR_TYPER is a
            // read-only 64-bit register.
            let typer =
                unsafe { core::ptr::read_volatile((frame + GICR_TYPER as usize) as *const u64) };
            let cpu = mpidrs.iter().position(|&m| gicv3::serves(typer, m));
            if let Some(cpu) = cpu {
                redist[cpu] = frame;
            }
            if typer & TYPER_LAST != 0 {
                break;
            }
            frame += gicv3::stride(typer) as usize;
        }
    }
    if redist[..mpidrs.len()].contains(&0) {
        return Err("no GIC redistributor matches a CPU's MPIDR");
    }
    Ok(redist)
}

/// Brings up the distributor and finds every CPU's redistributor (each CPU
/// sets up its own in [`init_cpu`], in parallel).
///
/// # Safety
/// `gicd` and `gicr` must be the GICv3 distributor and redistributor regions
/// of this machine, mapped as device memory and used by nothing else.
pub(super) unsafe fn init(
    gicd: usize,
    gicr: &[Region],
    mpidrs: &[u64],
    timer_ppi: u32,
) -> Result<(), &'static str> {
    let gicd = NonNull::new(gicd as *mut _).ok_or("GIC distributor at address 0")?;
    // SAFETY: the caller guarantees the regions.
    let redist = unsafe { find_redistributors(gicr, mpidrs) }?;
    // SAFETY: the caller guarantees the base; the pointer is used only here.
    let mut distributor = GicDistributor::new(unsafe { UniqueMmioPointer::new(gicd) });
    distributor.configure_default_settings();
    GIC.call_once(|| Gic {
        redist,
        timer_intid: IntId::ppi(timer_ppi),
    });
    Ok(())
}

/// Enables this CPU's interface and redistributor, its IPI and its timer
/// interrupt.
pub(super) fn init_cpu(cpu: usize) {
    let gic = gic();
    let rd_base = NonNull::new(gic.redist[cpu] as *mut u8).expect("checked by init");
    // SAFETY: this CPU's redistributor, found by `init`; the SGI_base frame
    // follows RD_base, and only this CPU uses it from here on.
    let mut redist =
        GicRedistributor::new(unsafe { UniqueMmioPointer::new(rd_base.cast::<GicrSgi>()) });
    GicCpuInterface::enable_system_register_el1();
    // Already awake (the boot CPU after a firmware) is fine.
    let _ = redist.mark_core_awake();
    // ICC_CTLR_EL1 = 0: EOI also deactivates; no priority drop split.
    // SAFETY: writes a GIC CPU interface register of this CPU, enabled above.
    unsafe { core::arch::asm!("msr S3_0_C12_C12_4, xzr", "isb", options(nostack)) };
    redist.configure_default_settings();
    for intid in [IntId::sgi(IPI_SGI), gic.timer_intid] {
        redist
            .set_interrupt_priority(intid, PRIORITY)
            .and_then(|()| redist.enable_interrupt(intid, true))
            .expect("SGI and PPI numbers are valid");
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
