//! lodger's architecture-independent core.
//!
//! Everything here reaches the hardware only through [`arch::Arch`], so this
//! crate builds for the host too and its logic is unit-tested with
//! `cargo test`. The `boot` crate wires it to an architecture and the apps.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod app;
pub mod boot;
pub mod bootargs;
pub mod bootinfo;
pub mod console;
pub mod exit;
pub mod heap;
pub mod mm;
pub mod percpu;
pub mod pv;
pub mod sched;
pub mod smp;
pub mod sync;
pub mod time;

/// The architecture this kernel runs on.
pub(crate) type A = arch::Current;

pub use arch::MAX_CPUS;

/// The architecture's name, as the banner prints it.
pub fn arch_name() -> &'static str {
    use arch::Cpu;
    A::NAME
}

/// Logical index of the calling CPU (0 = boot CPU).
pub fn cpu_id() -> usize {
    use arch::Cpu;
    A::cpu_id()
}
