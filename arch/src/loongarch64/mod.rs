//! loongarch64 (LA464, PLV0) on QEMU `virt`: DMW windows for the kernel's
//! linear map, a 4-level page table with a software TLB refill for
//! everything else, IPIs as action bits rung in by an IOCSR IPI or KVM's PV
//! multicast ([`irq`]), IOCSR mailboxes for the secondary start, the
//! constant timer, an ns16550 console and the GED power-off register.
//!
//! Address map (see [`mmu`] for why):
//!
//! | virtual | what |
//! |---|---|
//! | `0x9000_xxxx_xxxx_xxxx` | DMW1: all physical memory, coherent cached (image, heap, FDT) |
//! | `0x8000_xxxx_xxxx_xxxx` | DMW0: all physical memory, strongly-ordered uncached (devices) |
//! | `[0, 2^47)` | page table ([`Mmu::map`]); nothing mapped at boot |

mod console;
mod context;
mod csr;
mod irq;
mod mmu;
mod power;
mod pv;
mod smp;
mod start;
mod timer;
mod trap;

use core::arch::asm;
use core::fmt;

use loongArch64::register::cpuid;

use crate::{
    Access, Console, Context, Cpu, Devices, Interrupts, IrqState, MapError, MemAttr, Mmu, Power,
    Pv, ShootdownStats, Smp, Timer, TrapHooks, MAX_CPUS,
};

/// The loongarch64 implementation of [`Arch`].
#[derive(Debug)]
pub struct Loongarch64;

/// Facts read from the FDT by [`Devices::init_platform`].
struct Platform {
    /// Physical CPU id (CSR.CPUID, FDT `/cpus/cpu@N/reg`) of each logical CPU.
    hw_id: [u64; MAX_CPUS],
    cpus: usize,
    uart: usize,
    power: power::PowerOff,
    hooks: TrapHooks,
}

static PLATFORM: spin::Once<Platform> = spin::Once::new();

fn platform() -> &'static Platform {
    PLATFORM.get().expect("platform used before init_platform")
}

fn hooks() -> &'static TrapHooks {
    &platform().hooks
}

/// Logical id of the calling CPU, from KScratch 0 (set by the entry code
/// before any Rust runs, so it is valid everywhere).
#[inline(always)] // One CSR read on every per-CPU access.
fn cpu_id() -> usize {
    let id: usize;
    // SAFETY: reading a KScratch CSR has no side effects. Not `pure`: a
    // thread migrates across a context switch, and a `pure` read could be
    // reused from before it (the compiler cannot see the switch).
    unsafe {
        asm!(
            "csrrd {id}, {ks0}",
            id = out(reg) id,
            ks0 = const csr::KS0_CPU_ID,
            options(nomem, nostack, preserves_flags),
        );
    }
    id
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

/// The most CPUs the IOCSR IPI and mailbox registers can address (the CPU
/// field of IPI_SEND / MAIL_SEND is 10 bits wide).
const MAX_HW_CPU_ID: u64 = 0x3ff;

impl Cpu for Loongarch64 {
    const NAME: &'static str = "loongarch64";

    #[inline(always)] // One CSR read on every per-CPU access.
    fn cpu_id() -> usize {
        cpu_id()
    }

    fn hw_id() -> u64 {
        // CPUID.CoreID is bits [8:0]; the rest reads as zero.
        cpuid::read().core_id() as u64 & 0x1ff
    }

    fn wait_for_interrupt() {
        // `idle` returns once an interrupt enabled in ECFG.LIE is pending,
        // whether or not CRMD.IE masks it (the kernel waits with it masked).
        // As a halt: shootdowns skip this CPU meanwhile, and it flushes its
        // TLB on waking if one asked it to.
        // SAFETY: `idle` has no effect beyond waiting.
        mmu::halt(|| unsafe { loongArch64::asm::idle() });
    }

    fn spin_hint() {
        core::hint::spin_loop();
    }
}

impl Interrupts for Loongarch64 {
    fn irq_save() -> IrqState {
        // SAFETY: clears CRMD.IE only; masking interrupts is always allowed.
        let old = unsafe { csr::exchange::<{ csr::CRMD }>(0, csr::CRMD_IE) };
        IrqState(old & csr::CRMD_IE)
    }

    fn irq_restore(state: IrqState) {
        // SAFETY: sets CRMD.IE back to a value `irq_save` read from it.
        unsafe { csr::exchange::<{ csr::CRMD }>(state.0 & csr::CRMD_IE, csr::CRMD_IE) };
    }

    fn irq_enable() {
        // SAFETY: sets CRMD.IE only; the trap vector is installed at entry.
        unsafe { csr::exchange::<{ csr::CRMD }>(csr::CRMD_IE, csr::CRMD_IE) };
    }
}

impl Timer for Loongarch64 {
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

impl Console for Loongarch64 {
    fn console_write(bytes: &[u8]) {
        console::write(bytes);
    }
}

impl Devices for Loongarch64 {
    fn init_platform(
        fdt: &fdt::Fdt,
        cpu_hw_ids: &[u64],
        hooks: TrapHooks,
    ) -> Result<(), &'static str> {
        let uart = reg_base(
            fdt.chosen()
                .stdout()
                .or_else(|| fdt.find_compatible(&["ns16550a", "ns16550"])),
            "FDT: no ns16550 console (chosen/stdout-path or ns16550a)",
        )?;
        // SAFETY: the FDT names this ns16550; DMW0 maps every physical address.
        unsafe { console::init(uart) };

        let power = power::PowerOff::from_fdt(fdt)?;
        if cpu_hw_ids.iter().any(|&id| id > MAX_HW_CPU_ID) {
            return Err("FDT: a CPU id does not fit the IOCSR IPI CPU field");
        }
        let mut hw_id = [0; MAX_CPUS];
        hw_id[..cpu_hw_ids.len()].copy_from_slice(cpu_hw_ids);
        PLATFORM.call_once(|| Platform {
            hw_id,
            cpus: cpu_hw_ids.len(),
            uart,
            power,
            hooks,
        });
        Ok(())
    }

    fn init_cpu(cpu: usize) {
        // SAFETY: KScratch 0 holds this CPU's logical id; the entry code
        // stored the same value already (this keeps the trait's contract
        // that init_cpu sets it).
        unsafe { csr::write::<{ csr::KS0_CPU_ID }>(cpu) };
        irq::init_cpu();
        mmu::join_shootdowns(cpu);
    }

    fn platform_summary(out: &mut dyn fmt::Write) -> fmt::Result {
        let p = platform();
        write!(
            out,
            "IOCSR IPI + mailbox boot, constant timer {} MHz, ns16550 at {:#x}, {}, \
             4-level page table + DMW",
            timer::ticks_per_sec() / 1_000_000,
            p.uart,
            p.power
        )
    }
}

impl Smp for Loongarch64 {
    fn start_cpu(cpu: usize, stack_top: usize) -> Result<(), &'static str> {
        let p = platform();
        if cpu == 0 || cpu >= p.cpus {
            return Err("no such secondary CPU");
        }
        smp::start(p.hw_id[cpu], cpu, stack_top)
    }

    fn poll_starts() {
        smp::poll();
    }

    fn send_ipi(cpu: usize) {
        // With the PV IPI in use this is a one-target FUNC_IPI.
        irq::raise(crate::pv::CpuMask::default().with(cpu), irq::ACTION_KERNEL);
    }
}

impl Context for Loongarch64 {
    fn init_context(stack_top: usize, entry: extern "C" fn(usize) -> !, arg: usize) -> usize {
        context::init_context(stack_top, entry, arg)
    }

    unsafe fn switch_context(save_sp: *mut usize, load_sp: usize) {
        // SAFETY: forwarded to the caller.
        unsafe { context::switch_context(save_sp, load_sp) }
    }
}

impl Mmu for Loongarch64 {
    const PAGE_SIZE: usize = mmu::PAGE_SIZE;

    const BOOT_RAM_WINDOW: (usize, usize) = (0, 0);

    fn phys_to_virt(pa: usize) -> usize {
        mmu::cached(pa)
    }

    fn virt_to_phys(va: usize) -> usize {
        debug_assert!(
            mmu::in_cached_window(va),
            "{va:#x} is not a linear-map address"
        );
        mmu::physical(va)
    }

    fn map_ram(_pa: usize, _size: usize) -> Result<(), MapError> {
        Ok(()) // DMW1 already covers all of RAM.
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

impl Power for Loongarch64 {
    fn power_off() -> ! {
        power::off(PLATFORM.get().map(|p| &p.power))
    }
}

impl Pv for Loongarch64 {
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

    fn pv_send_ipi_mask(mask: crate::pv::CpuMask) -> bool {
        if !pv::ipi_in_use() {
            return false;
        }
        irq::raise(mask, irq::ACTION_KERNEL);
        true
    }

    fn pv_kick(_: usize) -> bool {
        false // LoongArch KVM has no kick call: the kernel sends an IPI.
    }

    fn pv_cpu_off() {
        pv::cpu_off();
    }

    const RAW_CONVENTION: crate::pv::RawConvention = crate::pv::RawConvention::Hvcl;

    fn pv_raw_call(
        regs: crate::pv::RawRegs,
    ) -> Result<crate::pv::RawRegs, crate::pv::RawCallError> {
        pv::raw_hvcl(regs)
    }

    fn pv_hvcl_registration() -> Option<u64> {
        pv::registration(cpu_id())
    }
}
