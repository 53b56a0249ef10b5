//! lodger's CPU and platform layer.
//!
//! One module per architecture implements the [`Arch`] trait; [`Current`] names
//! the one being built. The kernel calls only what the trait offers, so an
//! architecture that drifts from the interface fails to compile instead of
//! failing at boot. On the host (unit tests) [`Current`] is a `hosted` stand-in
//! built on `std`, so the kernel's logic can be tested with `cargo test`.
//!
//! Boot contract, the same on every architecture:
//! 1. The arch entry code sets up a stack, drops to the kernel's privilege
//!    level, turns the MMU on with an identity map of the boot RAM and the
//!    device window, and calls `lodger_primary_entry(&BootHandoff)`.
//! 2. The kernel parses the FDT, then calls [`Arch::init_platform`] once and
//!    [`Arch::init_cpu`] on every CPU before that CPU enables interrupts.
//! 3. Secondary CPUs enter `lodger_secondary_entry(cpu)` with the MMU on,
//!    on the stack the kernel gave [`Arch::start_cpu`], interrupts masked.

#![cfg_attr(target_os = "none", no_std)]

#[cfg(target_arch = "aarch64")]
pub mod aarch64_pte;
pub mod abi;
pub mod pv;
pub mod tlb;
#[cfg(target_arch = "aarch64")]
pub mod trap_frame;

// The platform code (feature `platform`, on by default): without it the
// crate is only the ABI, the probe logic, the aarch64 trap frame and page
// table bits, for pvhost (`host/`).
#[cfg(all(feature = "platform", target_arch = "aarch64"))]
pub mod aarch64;
#[cfg(all(feature = "platform", target_arch = "aarch64"))]
pub use aarch64::Aarch64 as Current;

#[cfg(all(feature = "platform", target_arch = "loongarch64"))]
pub mod loongarch64;
#[cfg(all(feature = "platform", target_arch = "loongarch64"))]
pub use loongarch64::Loongarch64 as Current;

// Unit tests of the kernel's logic run on the development machine.
#[cfg(all(feature = "platform", not(target_os = "none")))]
pub mod hosted;
#[cfg(all(feature = "platform", not(target_os = "none")))]
pub use hosted::Hosted as Current;

/// The most CPUs lodger brings up; the FDT may list more, the rest stay off.
pub const MAX_CPUS: usize = 256;

/// What the architecture entry code hands to the kernel.
#[derive(Debug, Clone, Copy)]
pub struct BootHandoff {
    /// Kernel virtual address of the flattened device tree.
    pub fdt: usize,
    /// Privilege level the image was entered at, as the architecture names
    /// it ("EL1", "EL2", "PLV0").
    pub entered_at: &'static str,
    /// Counter value read first thing at entry, for the boot-time report.
    pub entry_ticks: u64,
    /// `[start, end)` of the loaded image including `.bss` (virtual).
    pub image: (usize, usize),
    /// Boot arguments the loader passed outside the FDT, for when the FDT has
    /// no `/chosen/bootargs` (QEMU `virt` on LoongArch passes `-append` only
    /// as a string at a1). `None` where the FDT is the only source.
    pub cmdline: Option<&'static str>,
}

/// Interrupts as the kernel sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Irq {
    /// The cross-CPU "look at your mailbox" interrupt.
    Ipi,
    /// This CPU's tick timer fired (already acknowledged; re-arm to continue).
    Timer,
    /// Anything else, by its controller number.
    Other(u32),
}

/// Functions the kernel registers so the arch trap code can call back into it.
#[derive(Debug, Clone, Copy)]
pub struct TrapHooks {
    /// Called with interrupts masked for every interrupt taken.
    pub irq: fn(Irq),
    /// Called after the interrupts of one exception are handled and
    /// acknowledged, on the interrupted thread's stack with its registers
    /// saved, interrupts masked, just before they are restored: the one
    /// place where the kernel may preempt (switch threads).
    pub irq_exit: fn(),
    /// Called with a fault report (several lines) for an exception the kernel
    /// cannot continue from; prints it and ends the run. Never returns.
    pub fatal: fn(report: core::fmt::Arguments<'_>) -> !,
}

/// Page attributes for [`Arch::map`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemAttr {
    /// Cacheable RAM (write-back, inner shareable).
    Normal,
    /// Device registers (no gathering/reordering; early write ack allowed).
    Device,
}

/// What [`Arch::protect`] allows on a page (nothing lodger maps is code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    /// A store faults.
    ReadOnly,
}

/// Why [`Arch::map`] / [`Arch::unmap`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// Address or size not page-aligned, or outside the translatable range.
    BadRange,
    /// No memory left for page tables.
    NoTables,
}

/// What the TLB shootdowns cost since boot, as the guest counts them
/// ([`Arch::shootdown_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShootdownStats {
    /// Changes to the tables whose stale entries had to go everywhere.
    pub shootdowns: u64,
    /// Other CPUs rung and waited for (LoongArch).
    pub targets: u64,
    /// Other CPUs found halted: flagged to flush on waking, not rung.
    pub lazy: u64,
    /// Native IPIs sent for the shootdowns.
    pub ipis: u64,
    /// Multicast hypercalls made for the shootdowns.
    pub hypercalls: u64,
    /// Waits that went on past the timeout because the host held the
    /// target off (preempted flag or growing steal).
    pub preempted_waits: u64,
    /// Broadcast invalidations issued (aarch64 `tlbi ...is`).
    pub broadcasts: u64,
}

/// Saved interrupt-enable state, returned by [`Arch::irq_save`].
#[derive(Debug, Clone, Copy)]
pub struct IrqState(pub usize);

/// Everything the kernel needs from a CPU architecture and its platform.
///
/// All functions are static: there is one CPU architecture per image.
pub trait Arch {
    /// Architecture name as printed in the banner.
    const NAME: &'static str;
    /// Translation granule (bytes) for [`Arch::map`].
    const PAGE_SIZE: usize;
    /// The physical range the boot map treats as RAM before the FDT is read;
    /// the kernel unmaps whatever part of it is not RAM ((0, 0) if none).
    const BOOT_RAM_WINDOW: (usize, usize);

    /// Logical index of the calling CPU (0 = boot CPU), as given to
    /// [`Arch::init_cpu`].
    fn cpu_id() -> usize;
    /// Hardware id of the calling CPU, as the FDT's `/cpus` nodes give it
    /// (aarch64: MPIDR affinity fields; LoongArch: physical CPU id).
    fn hw_id() -> u64;
    /// Masks interrupts on this CPU and returns the previous state.
    fn irq_save() -> IrqState;
    /// Restores the state returned by [`Arch::irq_save`].
    fn irq_restore(state: IrqState);
    /// Unmasks interrupts on this CPU.
    fn irq_enable();
    /// Sleeps until an interrupt is pending (returns even when masked).
    fn wait_for_interrupt();
    /// Hint for a spin-wait loop iteration.
    fn spin_hint();

    /// Free-running counter shared by all CPUs (guest time).
    fn ticks() -> u64;
    /// Frequency of [`Arch::ticks`].
    fn ticks_per_sec() -> u64;
    /// Arms this CPU's timer to interrupt after `ticks` counter ticks.
    fn timer_arm(ticks: u64);

    /// Writes raw bytes to the console; the caller serialises.
    fn console_write(bytes: &[u8]);

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
    /// Starts logical CPU `cpu` at `lodger_secondary_entry(cpu)` on
    /// `stack_top`. It may return before the CPU runs: the kernel starts
    /// every CPU, then waits for them all, calling [`Arch::poll_starts`].
    fn start_cpu(cpu: usize, stack_top: usize) -> Result<(), &'static str>;
    /// Called while the kernel waits for started CPUs to come online: an
    /// architecture whose start can be lost repeats it here.
    fn poll_starts() {}
    /// Sends the IPI to logical CPU `cpu`.
    fn send_ipi(cpu: usize);

    // --- Threads ---

    /// Writes a new thread's first switch frame below `stack_top` and
    /// returns the stack pointer to hand [`Arch::switch_context`]: switching
    /// to it calls `entry(arg)` on that stack, interrupts still masked.
    fn init_context(stack_top: usize, entry: extern "C" fn(usize) -> !, arg: usize) -> usize;
    /// Saves the calling thread's callee-saved registers on its stack,
    /// stores its stack pointer to `*save_sp`, and resumes the thread whose
    /// stack pointer is `load_sp`. Returns when some CPU switches back.
    ///
    /// # Safety
    /// Interrupts masked; `load_sp` came from [`Arch::init_context`] or an
    /// earlier save and that thread runs nowhere; `save_sp` is valid.
    unsafe fn switch_context(save_sp: *mut usize, load_sp: usize);

    /// Kernel virtual address of physical address `pa` in the kernel's
    /// linear map of RAM and devices (aarch64: identity; LoongArch: a DMW).
    fn phys_to_virt(pa: usize) -> usize;
    /// Physical address of a kernel linear-map address (inverse of
    /// [`Arch::phys_to_virt`]).
    fn virt_to_phys(va: usize) -> usize;
    /// Makes RAM `[pa, pa+size)` usable at `phys_to_virt(pa)` (a no-op where
    /// the linear map is not built from page tables).
    fn map_ram(pa: usize, size: usize) -> Result<(), MapError>;

    /// Maps `[va, va+size)` to `[pa, pa+size)` on every CPU.
    fn map(va: usize, pa: usize, size: usize, attr: MemAttr) -> Result<(), MapError>;
    /// Removes the translation for `[va, va+size)` on every CPU.
    fn unmap(va: usize, size: usize) -> Result<(), MapError>;
    /// Changes what the mapped pages of `[va, va+size)` allow, on every CPU
    /// (unmapped parts are skipped). Like [`Arch::map`] and [`Arch::unmap`],
    /// it returns once no CPU can use the old translation.
    fn protect(va: usize, size: usize, access: Access) -> Result<(), MapError>;
    /// What the shootdowns behind [`Arch::map`], [`Arch::unmap`] and
    /// [`Arch::protect`] cost since boot.
    fn shootdown_stats() -> ShootdownStats;

    // --- Paravirtualisation (see [`pv`]). All of it is optional: with
    // nothing offered, every query answers `None`/`false` and the kernel
    // runs native. ---

    /// Probes the host as `switches` allow, on the boot CPU after
    /// [`Arch::init_platform`], before the secondaries start, interrupts
    /// masked; registers the boot CPU's records. Issues no call the host has
    /// not advertised, and none at all with `pv=off`.
    fn pv_probe(switches: &pv::PvSwitches) -> pv::PvReport;
    /// Registers the calling secondary CPU with what [`Arch::pv_probe`]
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
    /// Issues one raw hypercall, for the hypercall fuzz app only (through
    /// `kernel::pv::raw_call`): `function_id` with `args` as its first three
    /// arguments (arm64: SMCCC x0 and x1..x3 on the conduit the FDT names),
    /// returning the host's first four result registers. Only where the
    /// probe found a convention under which every function ID gets an
    /// answer ([`pv::RawCallError::Unavailable`] otherwise: no SMCCC >= 1.1,
    /// `pv=off`, LoongArch); calls that could take a CPU, the machine or the
    /// kernel's memory away from it are refused, not issued
    /// ([`pv::arm64::raw_call_refusal`] says which and why).
    fn pv_raw_call(function_id: u32, args: [u64; 3]) -> Result<[u64; 4], pv::RawCallError>;
    /// Issues one raw `hvcl 0x100` with a0..a5 = `regs`, for the hypercall
    /// fuzz app only (through `kernel::pv::raw_hvcl`), returning a0..a5
    /// after it (LoongArch; the ABI clobbers only a0). Only where the probe
    /// found KVM's signature ([`pv::RawCallError::Unavailable`] otherwise:
    /// not LoongArch, `pv=off`, no KVM); a FUNC_NOTIFY that would move or
    /// drop the calling CPU's steal-time record is refused, not issued
    /// ([`pv::loongarch::raw::refusal`]).
    fn pv_raw_hvcl(_regs: [u64; 6]) -> Result<[u64; 6], pv::RawCallError> {
        Err(pv::RawCallError::Unavailable)
    }
    /// The calling CPU's live FUNC_NOTIFY a2 (its steal-time record's
    /// physical address | VALID), if it registered one (LoongArch): the one
    /// accepted FUNC_NOTIFY the fuzz may issue.
    fn pv_hvcl_registration() -> Option<u64> {
        None
    }

    /// Powers the machine off; the kernel printed the exit marker already.
    fn power_off() -> !;
    /// Writes one line of the hardware facts worth a banner entry
    /// (e.g. "GICv3 ..., PSCI 1.1 via hvc").
    fn platform_summary(out: &mut dyn core::fmt::Write) -> core::fmt::Result;
}
