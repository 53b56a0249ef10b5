//! What differs per guest architecture: target triple, toolchain, QEMU binary
//! and machine arguments. Adding an architecture is a variant and a row in
//! each `match` here.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Result};
use clap::ValueEnum;

use crate::cmd;

/// The package that builds the bootable image, and the name of its ELF.
const BOOT_PACKAGE: &str = "boot";
const IMAGE_NAME: &str = "lodger";

/// The nightly that builds `core`/`alloc` for targets without a prebuilt
/// standard library: `run.sh`'s `readonly NIGHTLY=...`, the one definition
/// (run.sh installs it before there is an xtask to ask).
pub fn nightly() -> &'static str {
    const RUN_SH: &str = include_str!("../../run.sh");
    RUN_SH
        .lines()
        .find_map(|line| line.strip_prefix("readonly NIGHTLY="))
        .expect("run.sh pins the nightly in a `readonly NIGHTLY=` line")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum Arch {
    Aarch64,
    /// Built with the nightly toolchain run.sh pins (`-Zbuild-std`).
    Loongarch64,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64",
            Arch::Loongarch64 => "loongarch64",
        }
    }

    pub fn triple(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64-unknown-none",
            Arch::Loongarch64 => "loongarch64-unknown-none",
        }
    }

    /// The rustup toolchain to build with, when not the default one. Stable
    /// has no prebuilt `core` for loongarch64-unknown-none, so it is built
    /// from source on nightly.
    fn toolchain(self) -> Option<&'static str> {
        match self {
            Arch::Aarch64 => None,
            Arch::Loongarch64 => Some(nightly()),
        }
    }

    /// Cargo arguments the target needs beyond `--target`.
    fn extra_cargo_args(self) -> &'static [&'static str] {
        match self {
            Arch::Aarch64 => &[],
            Arch::Loongarch64 => &["-Zbuild-std=core,alloc"],
        }
    }

    /// `cargo [+TOOLCHAIN] SUBCOMMAND -p boot --release --target TRIPLE ...`:
    /// the image's build, or any other cargo subcommand on it (clippy).
    pub fn cargo_boot(self, subcommand: &str) -> Command {
        let mut cmd = cmd::cargo();
        if let Some(toolchain) = self.toolchain() {
            cmd.arg(format!("+{toolchain}"));
        }
        cmd.args([subcommand, "-p", BOOT_PACKAGE, "--release", "--target"])
            .arg(self.triple())
            .args(self.extra_cargo_args());
        cmd
    }

    /// The ELF that `cargo_boot("build")` produces.
    pub fn image(self) -> PathBuf {
        cmd::target_dir()
            .join(self.triple())
            .join("release")
            .join(IMAGE_NAME)
    }

    pub fn qemu(self) -> &'static str {
        match self {
            Arch::Aarch64 => "qemu-system-aarch64",
            Arch::Loongarch64 => "qemu-system-loongarch64",
        }
    }

    /// Board and CPU. `el2` enters the guest at EL2 (aarch64 only).
    pub fn machine_args(self, el2: bool) -> Result<Vec<String>> {
        let args = match self {
            Arch::Aarch64 => {
                let virt = if el2 {
                    "virt,gic-version=3,virtualization=on"
                } else {
                    "virt,gic-version=3"
                };
                ["-M", virt, "-cpu", "max"]
            }
            Arch::Loongarch64 => {
                if el2 {
                    bail!("--el2 is an aarch64 option: loongarch64 has no EL2");
                }
                ["-M", "virt", "-cpu", "la464"]
            }
        };
        Ok(args.map(String::from).to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nightly_is_run_shs_pin() {
        let pin = nightly();
        assert!(pin.starts_with("nightly-20"), "{pin:?}");
        assert!(
            !pin.contains(|c: char| c.is_whitespace() || c == '"'),
            "{pin:?}"
        );
    }

    #[test]
    fn el2_turns_on_virtualization() {
        assert_eq!(
            Arch::Aarch64.machine_args(false).unwrap(),
            ["-M", "virt,gic-version=3", "-cpu", "max"]
        );
        assert_eq!(
            Arch::Aarch64.machine_args(true).unwrap(),
            ["-M", "virt,gic-version=3,virtualization=on", "-cpu", "max"]
        );
        assert!(Arch::Loongarch64.machine_args(true).is_err());
    }

    #[test]
    fn build_command() {
        let words = |cmd: Command| {
            cmd.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            words(Arch::Aarch64.cargo_boot("build")),
            "build -p boot --release --target aarch64-unknown-none"
        );
        assert_eq!(
            words(Arch::Loongarch64.cargo_boot("build")),
            format!(
                "+{} build -p boot --release --target loongarch64-unknown-none -Zbuild-std=core,alloc",
                nightly()
            )
        );
        assert!(Arch::Aarch64
            .image()
            .ends_with("aarch64-unknown-none/release/lodger"));
    }
}
