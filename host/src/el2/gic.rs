//! pvhost's share of the GICv3: two Group 0 interrupts, delivered as FIQs
//! to EL2 (HCR_EL2.FMO), while the guest keeps Group 1 (its IRQs at EL1)
//! and programs the distributor and redistributors itself.
//!
//! | INTID | what | why Group 0 |
//! |---|---|---|
//! | SGI 15 ([`KICK_SGI`]) | PV_SCHED_KICK_CPU's wake-up | it must reach EL2 even when the guest masks interrupts |
//! | PPI 10 (INTID 26) | CNTHP, the EL2 physical timer: the preemption injector | the guest cannot touch CNTHP, nor take its interrupt |
//!
//! The guest's GIC driver may reset every SGI/PPI to Group 1, priority
//! 0x80, disabled (lodger's `arm-gic` setup does, on every redistributor):
//! [`ensure_host_interrupts`] puts pvhost's two back on every exit to EL2.
//! With FMO set, the guest's writes to ICC_PMR_EL1, ICC_CTLR_EL1,
//! ICC_DIR_EL1 (and reads of ICC_RPR_EL1) reach the virtual interface
//! registers, not the physical ones: the physical priority mask and EOI mode
//! are pvhost's (0xff and "EOI also deactivates", which is what lodger
//! expects). Its SGI generation (ICC_SGI1R_EL1) traps to EL2 and is
//! forwarded (see `super::exit`).

use core::sync::atomic::{AtomicU64, Ordering};

/// The SGI pvhost keeps for itself; a guest's SGI 15 is dropped.
pub const KICK_SGI: u32 = 15;
/// Priority of pvhost's interrupts: above every guest interrupt, and above
/// [`PMR_HOST_ONLY`].
const HOST_PRIORITY: u8 = 0x00;
/// The physical priority mask while a vCPU is preempted: the guest's
/// interrupts (priority 0x80 and lower) stay pending instead of waking the
/// waiting pCPU; pvhost's get through.
pub const PMR_HOST_ONLY: u8 = 0x40;
pub const PMR_ALL: u8 = 0xff;

const GICD_CTLR: u64 = 0x0;
/// GICD_CTLR with DS = 1 (QEMU `virt` without `secure=on`): EnableGrp0,
/// EnableGrp1, ARE.
const GICD_CTLR_GRP0_GRP1_ARE: u32 = (1 << 0) | (1 << 1) | (1 << 4);
const GICD_CTLR_RWP: u32 = 1 << 31;

use arch::gicv3::{self, GICR_TYPER, TYPER_LAST as GICR_TYPER_LAST};
const GICR_WAKER: u64 = 0x14;
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// The SGI/PPI frame follows the RD frame.
const SGI_FRAME: u64 = gicv3::FRAME_SIZE;
const GICR_IGROUPR0: u64 = SGI_FRAME + 0x80;
const GICR_ISENABLER0: u64 = SGI_FRAME + 0x100;
const GICR_IPRIORITYR: u64 = SGI_FRAME + 0x400;

fn read32(addr: u64) -> u32 {
    // SAFETY: GIC registers in the device window (Device memory in the EL2
    // map), at addresses from the DTB's GICv3 node.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn write32(addr: u64, value: u32) {
    // SAFETY: as in `read32`.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
}

fn read64(addr: u64) -> u64 {
    // SAFETY: as in `read32`; GICR_TYPER is a 64-bit register.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

/// The hypervisor timer's INTID (from the DTB's timer node).
static HYP_TIMER_INTID: AtomicU64 = AtomicU64::new(26);

pub fn hyp_timer_intid() -> u32 {
    HYP_TIMER_INTID.load(Ordering::Relaxed) as u32
}

/// Enables both groups and affinity routing in the distributor, keeping
/// whatever else is set.
pub fn init_distributor(gicd: u64, hyp_timer_intid: u32) {
    HYP_TIMER_INTID.store(hyp_timer_intid.into(), Ordering::Relaxed);
    let ctlr = read32(gicd + GICD_CTLR);
    write32(gicd + GICD_CTLR, ctlr | GICD_CTLR_GRP0_GRP1_ARE);
    while read32(gicd + GICD_CTLR) & GICD_CTLR_RWP != 0 {
        core::hint::spin_loop();
    }
}

/// The RD frame of the redistributor whose affinity is `mpidr`'s.
pub fn find_redistributor(gicr: u64, mpidr: u64) -> Option<u64> {
    let mut frame = gicr;
    // At most 64 frames: QEMU `virt` has one per CPU.
    for _ in 0..64 {
        let typer = read64(frame + GICR_TYPER);
        if gicv3::serves(typer, mpidr) {
            return Some(frame);
        }
        if typer & GICR_TYPER_LAST != 0 {
            return None;
        }
        frame += gicv3::stride(typer);
    }
    None
}

/// Wakes this pCPU's redistributor, sets pvhost's interrupts up and turns
/// on the CPU interface for Group 0.
pub fn init_cpu(rd: u64) {
    let waker = read32(rd + GICR_WAKER);
    write32(rd + GICR_WAKER, waker & !WAKER_PROCESSOR_SLEEP);
    while read32(rd + GICR_WAKER) & WAKER_CHILDREN_ASLEEP != 0 {
        core::hint::spin_loop();
    }
    ensure_host_interrupts(rd);
    // SAFETY: the GICv3 CPU interface registers at EL2, configured before
    // the guest runs on this pCPU: system-register access for EL2 and EL1
    // (SRE, DFB, DIB, Enable), all priorities unmasked, EOI deactivates
    // (EOImode 0), Group 0 on. (ICC_IGRPEN1_EL1 is the guest's.)
    unsafe {
        core::arch::asm!(
            "mov {t}, #0xf",
            "msr icc_sre_el2, {t}",
            "isb",
            "mov {t}, #0xff",
            "msr icc_pmr_el1, {t}",
            "msr icc_ctlr_el1, xzr",
            "mov {t}, #1",
            "msr icc_igrpen0_el1, {t}",
            "isb",
            t = out(reg) _,
            options(nostack),
        );
    }
}

/// Makes pvhost's interrupts Group 0, top priority and enabled again, in
/// case the guest's driver reset them.
pub fn ensure_host_interrupts(rd: u64) {
    let ours = (1u32 << KICK_SGI) | (1u32 << hyp_timer_intid());
    let group = read32(rd + GICR_IGROUPR0);
    if group & ours != 0 {
        write32(rd + GICR_IGROUPR0, group & !ours);
    }
    for intid in [KICK_SGI, hyp_timer_intid()] {
        let addr = rd + GICR_IPRIORITYR + u64::from(intid);
        // SAFETY: IPRIORITYR is byte-accessible (GICv3 architecture).
        unsafe {
            if core::ptr::read_volatile(addr as *const u8) != HOST_PRIORITY {
                core::ptr::write_volatile(addr as *mut u8, HOST_PRIORITY);
            }
        }
    }
    if read32(rd + GICR_ISENABLER0) & ours != ours {
        write32(rd + GICR_ISENABLER0, ours);
    }
}

/// Acknowledges the highest-priority pending Group 0 interrupt.
pub fn ack() -> Option<u32> {
    let intid: u64;
    // SAFETY: reading ICC_IAR0_EL1 at EL2 acknowledges a physical Group 0
    // interrupt; it touches no memory.
    unsafe { core::arch::asm!("mrs {}, icc_iar0_el1", out(reg) intid, options(nomem, nostack)) };
    let intid = (intid & 0xff_ffff) as u32;
    (intid < 1020).then_some(intid)
}

/// Ends (drops the priority of and deactivates) an acknowledged interrupt.
pub fn eoi(intid: u32) {
    // SAFETY: ICC_EOIR0_EL1 with an INTID `ack` returned (EOImode 0).
    unsafe {
        core::arch::asm!("msr icc_eoir0_el1, {}", in(reg) u64::from(intid), options(nomem, nostack));
    }
}

/// Sets the physical priority mask.
pub fn set_priority_mask(pmr: u8) {
    // SAFETY: ICC_PMR_EL1 at EL2 is the physical mask, pvhost's alone (the
    // guest's writes go to the virtual one while FMO is set).
    unsafe {
        core::arch::asm!("msr icc_pmr_el1, {}", "isb", in(reg) u64::from(pmr), options(nomem, nostack));
    }
}

/// The SGI register value for `intid` to the one CPU `mpidr`.
fn sgi_value(intid: u32, mpidr: u64) -> u64 {
    let aff0 = mpidr & 0xff;
    let aff1 = (mpidr >> 8) & 0xff;
    let aff2 = (mpidr >> 16) & 0xff;
    let aff3 = (mpidr >> 32) & 0xff;
    (aff3 << 48)
        | ((aff0 >> 4) << 44)
        | (aff2 << 32)
        | (u64::from(intid) << 24)
        | (aff1 << 16)
        | (1 << (aff0 & 0xf))
}

/// Sends pvhost's kick SGI (Group 0) to the pCPU `mpidr`.
pub fn send_kick(mpidr: u64) {
    let value = sgi_value(KICK_SGI, mpidr);
    // SAFETY: ICC_SGI0R_EL1 generates a Group 0 SGI and touches no memory.
    // The DSB orders the kick flag's store before the interrupt.
    unsafe {
        core::arch::asm!(
            "dsb ishst",
            "msr icc_sgi0r_el1, {}",
            "isb",
            in(reg) value,
            options(nostack),
        );
    }
}

/// Sends a guest's Group 1 SGI as it wrote it to ICC_SGI1R_EL1 (the
/// affinities are the real ones: VMPIDR_EL2 = MPIDR_EL1).
pub fn forward_sgi1r(value: u64) {
    // SAFETY: ICC_SGI1R_EL1 generates a Group 1 SGI and touches no memory.
    unsafe {
        core::arch::asm!("msr icc_sgi1r_el1, {}", "isb", in(reg) value, options(nostack));
    }
}

/// The INTID field of an ICC_SGI*R_EL1 value.
pub fn sgi_intid(value: u64) -> u32 {
    ((value >> 24) & 0xf) as u32
}
