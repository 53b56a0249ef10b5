//! lodger's CPU and platform layer.
//!
//! One module per architecture implements the [`Arch`] traits (one per
//! concern, [`interface`]); [`Current`] names
//! the one being built. The kernel calls only what the trait offers, so an
//! architecture that drifts from the interface fails to compile instead of
//! failing at boot. On the host (unit tests) [`Current`] is a `hosted` stand-in
//! built on `std`, so the kernel's logic can be tested with `cargo test`.
//!
//! Boot contract, the same on every architecture:
//! 1. The arch entry code sets up a stack, drops to the kernel's privilege
//!    level, turns the MMU on with an identity map of the boot RAM and the
//!    device window, and calls `lodger_primary_entry(&BootHandoff)`.
//! 2. The kernel parses the FDT, then calls [`Devices::init_platform`] once and
//!    [`Devices::init_cpu`] on every CPU before that CPU enables interrupts.
//! 3. Secondary CPUs enter `lodger_secondary_entry(cpu)` with the MMU on,
//!    on the stack the kernel gave [`Smp::start_cpu`], interrupts masked.

#![cfg_attr(target_os = "none", no_std)]

#[cfg(target_arch = "aarch64")]
pub mod aarch64_pte;
pub mod abi;
pub mod gicv3;
pub mod interface;
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

pub use interface::{Arch, Console, Context, Cpu, Devices, Interrupts, Mmu, Power, Pv, Smp, Timer};

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

/// Page attributes for [`Mmu::map`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemAttr {
    /// Cacheable RAM (write-back, inner shareable).
    Normal,
    /// Device registers (no gathering/reordering; early write ack allowed).
    Device,
}

/// What [`Mmu::protect`] allows on a page (nothing lodger maps is code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    /// A store faults.
    ReadOnly,
}

/// Why [`Mmu::map`] / [`Mmu::unmap`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// Address or size not page-aligned, or outside the translatable range.
    BadRange,
    /// No memory left for page tables.
    NoTables,
}

/// What the TLB shootdowns cost since boot, as the guest counts them
/// ([`Mmu::shootdown_stats`]).
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

/// Saved interrupt-enable state, returned by [`Interrupts::irq_save`].
#[derive(Debug, Clone, Copy)]
pub struct IrqState(pub usize);
