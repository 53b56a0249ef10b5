//! aarch64 (Armv8-A, EL1) on QEMU `virt` / KVM: GICv3, virtual timer, PSCI,
//! PL011. The kernel runs at EL1 whether entered at EL1 or EL2.

mod console;
mod context;
mod irq;
mod mmu;
mod psci;
mod pv;
mod start;
mod timer;
mod trap;

use core::fmt;

use aarch64_cpu::registers::{Readable, Writeable, DAIF, MPIDR_EL1, TPIDR_EL1};

use crate::{
    Access, Console, Context, Cpu, Devices, Interrupts, IrqState, MapError, MemAttr, Mmu, Power,
    Pv, ShootdownStats, Smp, Timer, TrapHooks, MAX_CPUS,
};

/// The aarch64 implementation of [`Arch`].
#[derive(Debug)]
pub struct Aarch64;

/// Facts read from the FDT by [`Devices::init_platform`].
struct Platform {
    conduit: psci::Conduit,
    psci_version: (u16, u16),
    mpidr: [u64; MAX_CPUS],
    /// Each logical CPU's vCPU index (its position in the FDT's `/cpus`,
    /// which is KVM's creation order), for PV_SCHED_KICK_CPU.
    vcpu_index: [u32; MAX_CPUS],
    gicd: usize,
    /// The first redistributor region.
    gicr: usize,
    uart: usize,
    timer_ppi: u32,
    hooks: TrapHooks,
}

/// Redistributor regions lodger handles (QEMU's `virt` uses two).
const MAX_GICR_REGIONS: usize = 4;

static PLATFORM: spin::Once<Platform> = spin::Once::new();

fn platform() -> &'static Platform {
    PLATFORM.get().expect("platform used before init_platform")
}

fn hooks() -> &'static TrapHooks {
    &platform().hooks
}

fn cpu_id() -> usize {
    TPIDR_EL1.get() as usize
}

/// Reads `reg`'s first (address, size) as an address, or fails with `what`.
fn reg_base(
    node: Option<fdt::node::FdtNode<'_, '_>>,
    what: &'static str,
) -> Result<usize, &'static str> {
    node.and_then(|n| n.reg())
        .and_then(|mut r| r.next())
        .map(|r| r.starting_address as usize)
        .ok_or(what)
}

/// The virtual timer's PPI from `/timer` `interrupts`: four (type, number,
/// flags) triples — secure, non-secure physical, virtual, hypervisor.
fn virtual_timer_ppi(fdt: &fdt::Fdt) -> Result<u32, &'static str> {
    const MISSING: &str = "FDT: no arm,armv8-timer node with four interrupts";
    let node = fdt
        .find_compatible(&["arm,armv8-timer", "arm,armv7-timer"])
        .ok_or(MISSING)?;
    let cells = node.property("interrupts").ok_or(MISSING)?.value;
    let word = |i: usize| -> Option<u32> {
        cells
            .get(i * 4..i * 4 + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    // Triple 2 (virtual timer), cell 1 (PPI number).
    word(2 * 3 + 1).ok_or(MISSING)
}

impl Cpu for Aarch64 {
    const NAME: &'static str = "aarch64";

    #[inline(always)] // One register read on every per-CPU access.
    fn cpu_id() -> usize {
        cpu_id()
    }

    fn hw_id() -> u64 {
        // Aff3 and Aff2..Aff0; the MT and U bits are not part of the id.
        MPIDR_EL1.get() & crate::abi::arm64::MPIDR_AFFINITY_MASK
    }

    fn wait_for_interrupt() {
        aarch64_cpu::asm::wfi();
    }

    fn spin_hint() {
        core::hint::spin_loop();
    }
}

impl Interrupts for Aarch64 {
    fn irq_save() -> IrqState {
        let daif = DAIF.get();
        DAIF.write(DAIF::I::Masked);
        IrqState(daif as usize)
    }

    fn irq_restore(state: IrqState) {
        DAIF.set(state.0 as u64);
    }

    fn irq_enable() {
        DAIF.write(DAIF::I::Unmasked);
    }
}

impl Timer for Aarch64 {
    fn ticks() -> u64 {
        timer::ticks()
    }

    fn ticks_per_sec() -> u64 {
        timer::ticks_per_sec()
    }

    fn timer_arm(ticks: u64) {
        timer::arm(ticks);
    }
}

impl Console for Aarch64 {
    fn console_write(bytes: &[u8]) {
        console::write(bytes);
    }
}

impl Devices for Aarch64 {
    fn init_platform(
        fdt: &fdt::Fdt,
        cpu_hw_ids: &[u64],
        hooks: TrapHooks,
    ) -> Result<(), &'static str> {
        let uart = reg_base(
            fdt.chosen()
                .stdout()
                .or_else(|| fdt.find_compatible(&["arm,pl011"])),
            "FDT: no PL011 console (chosen/stdout-path or arm,pl011)",
        )?;
        // SAFETY: the FDT names this PL011; the boot map covers the device window.
        unsafe { console::init(uart) };

        let method = fdt
            .find_node("/psci")
            .and_then(|n| n.property("method"))
            .and_then(|p| p.as_str())
            .ok_or("FDT: no /psci node with a method")?;
        let conduit =
            psci::Conduit::from_method(method).ok_or("FDT: /psci method is neither hvc nor smc")?;
        let psci_version = conduit.psci_version().ok_or("PSCI_VERSION failed")?;

        let gic = fdt
            .find_compatible(&["arm,gic-v3"])
            .ok_or("FDT: no arm,gic-v3 interrupt controller")?;
        let mut regs = gic.reg().ok_or("FDT: GICv3 node has no reg")?;
        let gicd = regs
            .next()
            .ok_or("FDT: GICv3 without distributor")?
            .starting_address as usize;
        // `reg` is GICD, then `#redistributor-regions` GICR regions (QEMU's
        // `virt` puts the redistributors of CPUs past 123 in a second one,
        // above RAM), then GICC/GICH/GICV, which a GICv3 guest ignores.
        let regions = gic
            .property("#redistributor-regions")
            .and_then(|p| p.as_usize())
            .unwrap_or(1);
        let mut gicr = heapless::Vec::<irq::Region, MAX_GICR_REGIONS>::new();
        for r in regs.take(regions) {
            let region = (r.starting_address as usize, r.size.unwrap_or(0));
            gicr.push(region)
                .map_err(|_| "FDT: more GICv3 redistributor regions than lodger handles")?;
        }
        if gicr.is_empty() {
            return Err("FDT: GICv3 without redistributors");
        }
        for &(base, size) in gicr
            .iter()
            .filter(|(base, _)| *base >= mmu::BOOT_DEVICE_WINDOW_END)
        {
            // The boot map's device window ends at 1 GiB: map the rest.
            mmu::map(base, base, size, MemAttr::Device)
                .map_err(|_| "cannot map a GICv3 redistributor region")?;
        }
        let timer_ppi = virtual_timer_ppi(fdt)?;

        let mut mpidr = [0; MAX_CPUS];
        mpidr[..cpu_hw_ids.len()].copy_from_slice(cpu_hw_ids);
        let mut vcpu_index = [0; MAX_CPUS];
        for (position, cpu) in fdt.cpus().enumerate() {
            let id = cpu.ids().first() as u64;
            if let Some(logical) = cpu_hw_ids.iter().position(|&m| m == id) {
                vcpu_index[logical] = position as u32;
            }
        }
        PLATFORM.call_once(|| Platform {
            conduit,
            psci_version,
            mpidr,
            vcpu_index,
            gicd,
            gicr: gicr[0].0,
            uart,
            timer_ppi,
            hooks,
        });
        // SAFETY: addresses from the FDT's GICv3 node, inside the device window.
        unsafe { irq::init(gicd, &gicr, cpu_hw_ids, timer_ppi) }
    }

    fn init_cpu(cpu: usize) {
        TPIDR_EL1.set(cpu as u64);
        irq::init_cpu(cpu);
    }

    fn platform_summary(out: &mut dyn fmt::Write) -> fmt::Result {
        let p = platform();
        write!(
            out,
            "GICv3 (GICD {:#x}, GICR {:#x}), virtual timer PPI {}, PSCI {}.{} via {}, PL011 at {:#x}",
            p.gicd,
            p.gicr,
            p.timer_ppi,
            p.psci_version.0,
            p.psci_version.1,
            p.conduit.name(),
            p.uart
        )
    }
}

impl Smp for Aarch64 {
    fn start_cpu(cpu: usize, stack_top: usize) -> Result<(), &'static str> {
        let p = platform();
        start::set_stack_top(cpu, stack_top);
        p.conduit
            .cpu_on(p.mpidr[cpu], start::secondary_entry_pa() as u64, cpu as u64)
            .map_err(|_| "PSCI CPU_ON failed")
    }

    fn send_ipi(cpu: usize) {
        irq::send_ipi(platform().mpidr[cpu]);
    }
}

impl Context for Aarch64 {
    fn init_context(stack_top: usize, entry: extern "C" fn(usize) -> !, arg: usize) -> usize {
        context::init_context(stack_top, entry, arg)
    }

    unsafe fn switch_context(save_sp: *mut usize, load_sp: usize) {
        // SAFETY: forwarded to the caller.
        unsafe { context::switch_context(save_sp, load_sp) }
    }
}

impl Mmu for Aarch64 {
    const PAGE_SIZE: usize = mmu::PAGE_SIZE;

    const BOOT_RAM_WINDOW: (usize, usize) = mmu::BOOT_RAM_WINDOW;

    fn phys_to_virt(pa: usize) -> usize {
        pa
    }

    fn virt_to_phys(va: usize) -> usize {
        va
    }

    fn map_ram(pa: usize, size: usize) -> Result<(), MapError> {
        mmu::map(pa, pa, size, MemAttr::Normal)
    }

    fn map(va: usize, pa: usize, size: usize, attr: MemAttr) -> Result<(), MapError> {
        mmu::map(va, pa, size, attr)
    }

    fn unmap(va: usize, size: usize) -> Result<(), MapError> {
        mmu::unmap(va, size)
    }

    fn protect(va: usize, size: usize, access: Access) -> Result<(), MapError> {
        mmu::protect(va, size, access)
    }

    fn shootdown_stats() -> ShootdownStats {
        mmu::stats()
    }
}

impl Power for Aarch64 {
    fn power_off() -> ! {
        if let Some(p) = PLATFORM.get() {
            let _ = p.conduit.system_off();
        }
        loop {
            aarch64_cpu::asm::wfi();
        }
    }
}

impl Pv for Aarch64 {
    fn pv_probe(switches: &crate::pv::PvSwitches) -> crate::pv::PvReport {
        pv::probe(switches)
    }

    fn pv_init_cpu(cpu: usize) -> Option<crate::pv::FallbackLine> {
        pv::init_cpu(cpu)
    }

    fn pv_steal_ns(cpu: usize) -> Option<u64> {
        pv::steal_ns(cpu)
    }

    fn pv_vcpu_preempted(cpu: usize) -> Option<bool> {
        pv::vcpu_preempted(cpu)
    }

    fn pv_check_own_preempted(cpu: usize) {
        pv::check_own_preempted(cpu);
    }

    fn pv_send_ipi_mask(_: crate::pv::CpuMask) -> bool {
        false // arm64 has no PV IPI.
    }

    fn pv_kick(cpu: usize) -> bool {
        pv::kick(cpu)
    }

    fn pv_cpu_off() {
        pv::cpu_off(cpu_id());
    }

    const RAW_CONVENTION: crate::pv::RawConvention = crate::pv::RawConvention::Smccc;

    fn pv_raw_call(
        regs: crate::pv::RawRegs,
    ) -> Result<crate::pv::RawRegs, crate::pv::RawCallError> {
        // SMCCC: the function ID is w0.
        let [x0, x1, x2, x3] = pv::raw_call(regs[0] as u32, [regs[1], regs[2], regs[3]])?;
        Ok([x0, x1, x2, x3, 0, 0])
    }
}
