//! pvhost's logic, free of hardware access so `cargo test` runs it on the
//! development machine: the command line ([`args`]), the preemption
//! schedules ([`policy`]), the guest's FDT ([`fdt_patch`]), the guest's ELF
//! image ([`elf`]) and the hypercall table ([`hvc`]). The EL2 code that
//! uses them is the `pvhost` binary (`src/main.rs`, `src/el2/`).

#![cfg_attr(target_os = "none", no_std)]

pub mod args;
pub mod elf;
pub mod fdt_patch;
pub mod hvc;
pub mod policy;

/// The most vCPUs (= pCPUs) pvhost runs: its own limit (`link.ld` reserves
/// 16 EL2 stacks and the records fill one page), below the guest's
/// `arch::MAX_CPUS`; pvhost uses the DTB's first 16 CPUs and says so.
pub const MAX_VCPUS: usize = 16;
