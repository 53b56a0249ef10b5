//! pvhost: an aarch64 EL2 reference host for lodger (see `el2/mod.rs` and its file table).
//!
//! It only runs at EL2 under `qemu-system-aarch64 -M virt,virtualization=on`
//! (`cargo xtask run --host pvhost`); on the development machine this file
//! builds a stub so that the workspace's `cargo clippy` covers the crate.

#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(all(target_os = "none", target_arch = "aarch64"))]
mod el2;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "pvhost runs at EL2 under QEMU: build it for aarch64-unknown-none \
         (cargo xtask run --host pvhost)"
    );
    std::process::exit(2);
}
