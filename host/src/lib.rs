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

/// The most vCPUs (= pCPUs) pvhost runs: its EL2 stacks (`link.ld`) and
/// its one page of PV records are sized for 16. The guest supports more
/// (`arch::MAX_CPUS`); pvhost uses the first 16 CPUs of a larger DTB and
/// says so.
pub const MAX_VCPUS: usize = 16;
const _: () = assert!(MAX_VCPUS <= arch::MAX_CPUS);
