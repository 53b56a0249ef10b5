//! The interface the kernel needs from a CPU architecture and its
//! platform, one trait per concern (as Hermit and ArceOS group theirs);
//! [`Arch`] is all of them. All functions are static: there is one CPU
//! architecture per image.

use crate::{pv, Access, IrqState, MapError, MemAttr, ShootdownStats, TrapHooks};

/// The calling CPU: who it is, and how it waits.
pub trait Cpu {
    /// Architecture name as printed in the banner.
    const NAME: &'static str;

    /// Logical index of the calling CPU (0 = boot CPU), as given to
    /// [`Devices::init_cpu`].
    fn cpu_id() -> usize;

    /// Hardware id of the calling CPU, as the FDT's `/cpus` nodes give it
    /// (aarch64: MPIDR affinity fields; LoongArch: physical CPU id).
    fn hw_id() -> u64;

    /// Sleeps until an interrupt is pending (returns even when masked).
    fn wait_for_interrupt();

    /// Hint for a spin-wait loop iteration.
    fn spin_hint();
}

/// Masking and unmasking this CPU's interrupts.
pub trait Interrupts {
    /// Masks interrupts on this CPU and returns the previous state.
    fn irq_save() -> IrqState;

    /// Restores the state returned by [`Interrupts::irq_save`].
    fn irq_restore(state: IrqState);

    /// Unmasks interrupts on this CPU.
    fn irq_enable();
}

/// The shared counter and this CPU's timer.
pub trait Timer {
    /// Free-running counter shared by all CPUs (guest time).
    fn ticks() -> u64;

    /// Frequency of [`Timer::ticks`].
    fn ticks_per_sec() -> u64;

    /// Arms this CPU's timer to interrupt after `ticks` counter ticks.
    fn timer_arm(ticks: u64);
}

/// The boot console.
pub trait Console {
    /// Writes raw bytes to the console; the caller serialises.
    fn console_write(bytes: &[u8]);
}

/// The platform's devices, from the FDT: set up once, then per CPU.
pub trait Devices {
    /// Reads the platform devices (interrupt controller, timer, console,
    /// power/CPU control) from the FDT and initialises the shared parts.
    /// `cpu_hw_ids[i]` is the hardware id of logical CPU `i`.
    fn init_platform(
        fdt: &fdt::Fdt,
        cpu_hw_ids: &[u64],
        hooks: TrapHooks,
    ) -> Result<(), &'static str>;

    /// Per-CPU setup (exception vectors, interrupt controller CPU interface,
    /// timer interrupt, per-CPU id register). Called on each CPU once.
    fn init_cpu(cpu: usize);

    /// Writes one line of the hardware facts worth a banner entry
    /// (e.g. "GICv3 ..., PSCI 1.1 via hvc").
    fn platform_summary(out: &mut dyn core::fmt::Write) -> core::fmt::Result;
}

/// Starting the other CPUs and interrupting them.
pub trait Smp {
    /// Starts logical CPU `cpu` at `lodger_secondary_entry(cpu)` on
    /// `stack_top`. It may return before the CPU runs: the kernel starts
    /// every CPU, then waits for them all, calling [`Smp::poll_starts`].
    fn start_cpu(cpu: usize, stack_top: usize) -> Result<(), &'static str>;

    /// Called while the kernel waits for started CPUs to come online: an
    /// architecture whose start can be lost repeats it here.
    fn poll_starts() {}

    /// Sends the IPI to logical CPU `cpu`.
    fn send_ipi(cpu: usize);
}

/// Thread contexts: a new thread's first frame and the switch.
pub trait Context {
    /// Writes a new thread's first switch frame below `stack_top` and
    /// returns the stack pointer to hand [`Context::switch_context`]: switching
    /// to it calls `entry(arg)` on that stack, interrupts still masked.
    fn init_context(stack_top: usize, entry: extern "C" fn(usize) -> !, arg: usize) -> usize;

    /// Saves the calling thread's callee-saved registers on its stack,
    /// stores its stack pointer to `*save_sp`, and resumes the thread whose
    /// stack pointer is `load_sp`. Returns when some CPU switches back.
    ///
    /// # Safety
    /// Interrupts masked; `load_sp` came from [`Context::init_context`] or an
    /// earlier save and that thread runs nowhere; `save_sp` is valid.
    unsafe fn switch_context(save_sp: *mut usize, load_sp: usize);
}

/// The kernel's address space: the linear map, mappings, and the TLB shootdowns they need.
pub trait Mmu {
    /// Translation granule (bytes) for [`Mmu::map`].
    const PAGE_SIZE: usize;

    /// The physical range the boot map treats as RAM before the FDT is read;
    /// the kernel unmaps whatever part of it is not RAM ((0, 0) if none).
    const BOOT_RAM_WINDOW: (usize, usize);

    /// Kernel virtual address of physical address `pa` in the kernel's
    /// linear map of RAM and devices (aarch64: identity; LoongArch: a DMW).
    fn phys_to_virt(pa: usize) -> usize;

    /// Physical address of a kernel linear-map address (inverse of
    /// [`Mmu::phys_to_virt`]).
    fn virt_to_phys(va: usize) -> usize;

    /// Makes RAM `[pa, pa+size)` usable at `phys_to_virt(pa)` (a no-op where
    /// the linear map is not built from page tables).
    fn map_ram(pa: usize, size: usize) -> Result<(), MapError>;

    /// Maps `[va, va+size)` to `[pa, pa+size)` on every CPU.
    fn map(va: usize, pa: usize, size: usize, attr: MemAttr) -> Result<(), MapError>;

    /// Removes the translation for `[va, va+size)` on every CPU.
    fn unmap(va: usize, size: usize) -> Result<(), MapError>;

    /// Changes what the mapped pages of `[va, va+size)` allow, on every CPU
    /// (unmapped parts are skipped). Like [`Mmu::map`] and [`Mmu::unmap`],
    /// it returns once no CPU can use the old translation.
    fn protect(va: usize, size: usize, access: Access) -> Result<(), MapError>;

    /// What the shootdowns behind [`Mmu::map`], [`Mmu::unmap`] and
    /// [`Mmu::protect`] cost since boot.
    fn shootdown_stats() -> ShootdownStats;
}

/// Ending the machine's run.
pub trait Power {
    /// Powers the machine off; the kernel printed the exit marker already.
    fn power_off() -> !;
}

/// Paravirtualisation (see [`pv`](crate::pv)). All of it is optional: with nothing offered, every query answers `None`/`false` and the kernel runs native.
pub trait Pv {
    /// Probes the host as `switches` allow, on the boot CPU after
    /// [`Devices::init_platform`], before the secondaries start, interrupts
    /// masked; registers the boot CPU's records. Issues no call the host has
    /// not advertised, and none at all with `pv=off`.
    fn pv_probe(switches: &pv::PvSwitches) -> pv::PvReport;

    /// Registers the calling secondary CPU with what [`Pv::pv_probe`]
    /// chose (per-vCPU records); `Some` says which features run native on
    /// it, why, and what it keeps. For the boot CPU (`cpu` 0), registered
    /// by the probe, it only says how that went.
    fn pv_init_cpu(cpu: usize) -> Option<pv::FallbackLine>;

    /// Stolen time of `cpu` in nanoseconds, if a steal clock is in use.
    fn pv_steal_ns(cpu: usize) -> Option<u64>;

    /// Whether `cpu`'s vCPU is preempted, if the host tells.
    fn pv_vcpu_preempted(cpu: usize) -> Option<bool>;

    /// At each tick of the calling CPU `cpu` (interrupts masked): a running
    /// vCPU's own preempted flag must read clear; one that stays set is
    /// ignored from then on, said in one line ([`pv::PreemptedGuard`]).
    fn pv_check_own_preempted(cpu: usize);

    /// Sends the IPI to every CPU in `mask` with one paravirtual multicast;
    /// false if none is in use (the caller then sends one by one).
    fn pv_send_ipi_mask(mask: pv::CpuMask) -> bool;

    /// Wakes `cpu` from a PV halt through the host; false if not in use.
    fn pv_kick(cpu: usize) -> bool;

    /// The calling CPU is stopping: release its PV registrations.
    fn pv_cpu_off();

    /// Issues one raw hypercall in the host's own convention, for the
    /// hypercall fuzz app only (through `kernel::pv::raw_call`): the
    /// [`pv::RawRegs`] in, the same registers after it back. Only where the
    /// probe found a convention under which every call gets an answer
    /// ([`pv::RawCallError::Unavailable`] otherwise: `pv=off`, no SMCCC >=
    /// 1.1, no KVM signature); calls that could take a CPU, the machine or
    /// the kernel's memory away from it are refused, not issued
    /// ([`pv::arm64::raw_call_refusal`], [`pv::loongarch::raw::refusal`]).
    fn pv_raw_call(regs: pv::RawRegs) -> Result<pv::RawRegs, pv::RawCallError>;

    /// The convention of [`Pv::pv_raw_call`]'s registers here.
    const RAW_CONVENTION: pv::RawConvention;

    /// The calling CPU's live FUNC_NOTIFY a2 (its steal-time record's
    /// physical address | VALID), if it registered one (LoongArch): the one
    /// accepted FUNC_NOTIFY the fuzz may issue.
    fn pv_hvcl_registration() -> Option<u64> {
        None
    }
}

/// Everything the kernel needs from a CPU architecture and its platform:
/// implemented by implementing each concern's trait.
pub trait Arch:
    Cpu + Interrupts + Timer + Console + Devices + Smp + Context + Mmu + Power + Pv
{
}

impl<T: Cpu + Interrupts + Timer + Console + Devices + Smp + Context + Mmu + Power + Pv> Arch
    for T
{
}
