//! lodger's architecture-independent core.
//!
//! Everything here reaches the hardware only through [`arch::Arch`], so this
//! crate builds for the host too and its logic is unit-tested with
//! `cargo test`. The `boot` crate wires it to an architecture and the apps.

#![cfg_attr(not(test), no_std)]
// Under `--cfg loom` only the lock algorithms are built, for model checking.
#![cfg_attr(loom, allow(dead_code))]

extern crate alloc;

#[cfg(not(loom))]
pub mod app;
#[cfg(not(loom))]
pub mod boot;
#[cfg(not(loom))]
pub mod bootargs;
#[cfg(not(loom))]
pub mod bootinfo;
#[cfg(not(loom))]
pub mod console;
#[cfg(not(loom))]
pub mod exit;
#[cfg(not(loom))]
pub mod heap;
#[cfg(not(loom))]
pub mod mm;
#[cfg(not(loom))]
pub mod percpu;
#[cfg(not(loom))]
pub mod pv;
#[cfg(not(loom))]
pub mod sched;
#[cfg(not(loom))]
pub mod smp;
pub mod sync;
#[cfg(not(loom))]
pub mod time;

/// The architecture this kernel runs on.
#[cfg(not(loom))]
pub(crate) type A = arch::Current;

pub use arch::MAX_CPUS;

/// The architecture's name, as the banner prints it.
#[cfg(not(loom))]
pub fn arch_name() -> &'static str {
    use arch::Arch;
    A::NAME
}

/// Logical index of the calling CPU (0 = boot CPU).
#[cfg(not(loom))]
pub fn cpu_id() -> usize {
    use arch::Arch;
    A::cpu_id()
}
