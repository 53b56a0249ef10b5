//! `--host pvhost`: the guest under pvhost (`host/`), lodger's own EL2
//! host, on QEMU TCG with `virtualization=on`:
//!
//! ```text
//! qemu-system-aarch64 -M virt,gic-version=3,virtualization=on -cpu max -m 512M
//!  └─ pvhost at EL2 (-kernel), linked at 0x5000_0000
//!      └─ the guest at EL1: its ELF staged by QEMU's loader at 0x5800_0000,
//!         copied by pvhost into [0x4000_0000, 0x5000_0000)
//! ```
//!
//! | RAM | what |
//! |---|---|
//! | `[0x4000_0000, 0x5000_0000)` | the guest's 256 MiB ([`crate::qemu::GUEST_MEMORY`], as on every host); its FDT at the start |
//! | `[0x5000_0000, 0x5800_0000)` | pvhost: image, stacks, the PV time and PV lock records |
//! | `[0x5800_0000, 0x6000_0000)` | the guest's ELF file as QEMU's generic loader put it (`force-raw=on`) |
//!
//! The command line (`-append`) is pvhost's: `pvhost.elf=ADDR pvhost.pv=on|off
//! pvhost.steal=POLICY -- GUEST ARGS`; pvhost hands everything after `--`
//! to the guest in its FDT. At the guest's SYSTEM_OFF pvhost prints its
//! ground truth after the guest's exit marker, one line per vCPU:
//! `pvhost: cpu=N preemptions=K stolen_ns=S pv_calls=C last_end_ns=E`
//! ([`crate::steal`] compares it with the guest's reading).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

use crate::arch::Arch;
use crate::cmd;
use crate::host::Pv;
use crate::qemu::Boot;

/// QEMU's RAM: the guest's 256 MiB, then pvhost's (see the table above and
/// `host/link.ld`).
const MACHINE_MEMORY: &str = "512M";
/// Where QEMU's loader stages the guest's ELF file.
const GUEST_ELF_PA: u64 = 0x5800_0000;
/// The end of QEMU's RAM at [`MACHINE_MEMORY`].
const RAM_END: u64 = 0x6000_0000;

const PACKAGE: &str = "host";
const BINARY: &str = "pvhost";

/// The settings of a pvhost host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `pvhost.pv=`: offer PV time, PV lock v2 and PV sched, or none of them.
    pub pv: Pv,
    /// `pvhost.steal=`: the preemption injector's policy.
    pub steal: &'static str,
}

impl Settings {
    pub const DEFAULT: Settings = Settings {
        pv: Pv::On,
        steal: "none",
    };
}

/// Checks the form of a `--steal` policy (pvhost checks the values too).
pub fn check_steal(steal: &str) -> Result<()> {
    let (policy, stop_ms) = match steal.split_once('@') {
        Some((policy, stop)) => (policy, Some(stop)),
        None => (steal, None),
    };
    let numbers = |s: &str, counts: &[usize]| {
        let parts: Vec<&str> = s.split(',').collect();
        counts.contains(&parts.len())
            && parts
                .iter()
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let stop_ok = stop_ms.is_none_or(|ms| numbers(ms, &[1]));
    let ok = stop_ok
        && (policy == "none"
            || policy
                .strip_prefix("periodic:")
                .is_some_and(|r| numbers(r, &[2, 3]))
            || policy
                .strip_prefix("random:")
                .is_some_and(|r| numbers(r, &[3])));
    if !ok {
        bail!(
            "--steal {steal:?}: expected none, periodic:PERIOD_US,SHARE_PCT[,PHASE_US] \
             or random:SEED,MEAN_RUN_US,MEAN_STEAL_US (decimal numbers), optionally \
             followed by @STOP_MS (no preemption after that many ms)"
        );
    }
    Ok(())
}

/// `cargo SUBCOMMAND -p host --release --target aarch64-unknown-none`.
fn cargo_host(subcommand: &str) -> Command {
    let mut cargo = cmd::cargo();
    cargo
        .args([subcommand, "-p", PACKAGE, "--release", "--target"])
        .arg(Arch::Aarch64.triple());
    cargo
}

/// Builds pvhost and returns its ELF.
pub fn build() -> Result<PathBuf> {
    cmd::run(&mut cargo_host("build"))?;
    let elf = cmd::target_dir()
        .join(Arch::Aarch64.triple())
        .join("release")
        .join(BINARY);
    if !elf.is_file() {
        bail!("the build succeeded but {} is missing", elf.display());
    }
    Ok(elf)
}

/// The lint step of `cargo xtask test` for pvhost's EL2 code (the
/// workspace's host-side clippy sees only its logic and a stub).
pub fn clippy() -> Command {
    let mut clippy = cargo_host("clippy");
    clippy.args(["--", "-D", "warnings"]);
    clippy
}

/// pvhost's command line: its own arguments, then the guest's.
pub fn append(settings: Settings, bootargs: &str) -> String {
    format!(
        "pvhost.elf={GUEST_ELF_PA:#x} pvhost.pv={} pvhost.steal={} -- {bootargs}",
        settings.pv.name(),
        settings.steal
    )
}

/// The QEMU that boots `boot` under the pvhost at `pvhost`.
pub fn command(boot: &Boot, settings: Settings, pvhost: &Path) -> Result<Command> {
    let size = std::fs::metadata(&boot.image)?.len();
    if size > RAM_END - GUEST_ELF_PA {
        bail!(
            "the guest image {} is {size} bytes: pvhost stages at most {} MiB",
            boot.image.display(),
            (RAM_END - GUEST_ELF_PA) >> 20
        );
    }
    let mut command = Command::new(Arch::Aarch64.qemu());
    command
        .args(Arch::Aarch64.machine_args(true)?)
        .arg("-smp")
        .arg(boot.smp.to_string())
        .args(["-m", MACHINE_MEMORY])
        .args(["-nodefaults", "-display", "none"])
        .args(["-serial", "stdio", "-monitor", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(pvhost)
        .arg("-device")
        .arg(format!(
            "loader,file={},addr={GUEST_ELF_PA:#x},force-raw=on",
            boot.image.display()
        ))
        .arg("-append")
        .arg(append(settings, &boot.bootargs));
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_policies() {
        for ok in [
            "none",
            "periodic:1000,50",
            "periodic:1000,50,250",
            "random:1,500,100",
            "periodic:1000,50@2000",
            "none@0",
        ] {
            assert!(check_steal(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "periodic:1000",
            "periodic:1000,50,1,1",
            "periodic:10,x",
            "random:1,2",
            "random:1,,2",
            "sometimes",
            "periodic:1000,50@",
            "periodic:1000,50@2@3",
            "@5",
        ] {
            assert!(check_steal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn command_line_puts_the_guest_after_the_separator() {
        let s = Settings {
            pv: Pv::Off,
            steal: "periodic:1000,50",
        };
        assert_eq!(
            append(s, "app=x -- a"),
            "pvhost.elf=0x58000000 pvhost.pv=off pvhost.steal=periodic:1000,50 -- app=x -- a"
        );
    }

    #[test]
    fn the_staging_address_is_above_pvhost() {
        let link = std::fs::read_to_string(cmd::workspace_root().join("host/link.ld")).unwrap();
        assert!(
            link.contains(". = 0x50000000;"),
            "pvhost's link address moved"
        );
        // 256 MiB of guest RAM below pvhost, as on every other host.
        assert_eq!(crate::qemu::GUEST_MEMORY.to_string(), "256M");
        const { assert!(GUEST_ELF_PA > 0x5000_0000 + (16 << 20)) };
    }
}
