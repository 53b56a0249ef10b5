//! Where the guest runs: the hosts, their own settings, and what they need
//! prepared before a boot.
//!
//! Adding a host is a [`HostKind`] (its `--host` name), a [`Host`] variant
//! carrying its settings, a row in each `match` here, and its command line
//! in [`crate::qemu::Boot::command`]. Settings only exist on the hosts they
//! mean something to, so `--pv` on TCG is an error, not silently ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::ValueEnum;

use crate::arch::Arch;
use crate::kvm;
use crate::nested_kvm::{self, L1};
use crate::pvhost;

/// `--host`: the kinds of host, as the command line names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HostKind {
    /// QEMU's emulator (TCG) on this machine (docs/hosts/tcg.md).
    Tcg,
    /// Real KVM: QEMU+KVM inside a Linux (L1) that runs under QEMU TCG with
    /// `virtualization=on` (aarch64 only; docs/hosts/nested-kvm.md).
    NestedKvm,
    /// pvhost (`host/`), lodger's own EL2 host offering PV time, PV lock v2
    /// and PV sched, under QEMU TCG with `virtualization=on` (aarch64); for
    /// loongarch64 a patched QEMU modelling KVM's guest interface
    /// (docs/hosts/pvhost.md, docs/hosts/loongarch-pvhost.md).
    Pvhost,
    /// QEMU+KVM on this machine (`-accel kvm -cpu host`): an aarch64 or
    /// loongarch64 Linux with a usable `/dev/kvm`, guests of its own
    /// architecture (docs/hosts/kvm.md).
    Kvm,
}

impl HostKind {
    /// The `--host` name.
    pub fn name(self) -> &'static str {
        match self {
            HostKind::Tcg => "tcg",
            HostKind::NestedKvm => "nested-kvm",
            HostKind::Pvhost => "pvhost",
            HostKind::Kvm => "kvm",
        }
    }
}

/// `--pv`: whether the host offers the guest its paravirtual interfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Pv {
    On,
    Off,
}

impl Pv {
    pub fn name(self) -> &'static str {
        match self {
            Pv::On => "on",
            Pv::Off => "off",
        }
    }
}

/// A host with its settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    Tcg,
    NestedKvm(nested_kvm::Settings),
    Pvhost(pvhost::Settings),
    Kvm(kvm::Settings),
}

/// The most busy loops `--l1-load` starts (L1 has 2 CPUs).
pub const MAX_L1_LOAD: u8 = 16;

impl Host {
    /// The host `--host KIND` names, with its settings from `--pv`,
    /// `--l1-load` and `--steal` (`None`: not given). A setting the host does
    /// not have is an error.
    pub fn from_args(
        kind: HostKind,
        pv: Option<Pv>,
        l1_load: Option<u8>,
        steal: Option<&str>,
    ) -> Result<Host> {
        if steal.is_some() && kind != HostKind::Pvhost {
            bail!("--steal only with --host pvhost (the only host that preempts on a schedule)");
        }
        match kind {
            HostKind::Tcg => {
                let given: Vec<&str> = [pv.map(|_| "--pv"), l1_load.map(|_| "--l1-load")]
                    .into_iter()
                    .flatten()
                    .collect();
                if !given.is_empty() {
                    bail!(
                        "{} only with --host nested-kvm (TCG offers no PV and has no L1)",
                        given.join(" and ")
                    );
                }
                Ok(Host::Tcg)
            }
            HostKind::Pvhost => {
                if l1_load.is_some() {
                    bail!("--l1-load only with --host nested-kvm (pvhost has no L1)");
                }
                let steal = match steal {
                    Some(policy) => {
                        let policy = pvhost::normalize_steal(policy)?;
                        // Settings are Copy and live for the whole run.
                        &*Box::leak(policy.into_boxed_str())
                    }
                    None => pvhost::Settings::DEFAULT.steal,
                };
                Ok(Host::Pvhost(pvhost::Settings {
                    pv: pv.unwrap_or(pvhost::Settings::DEFAULT.pv),
                    offer: pvhost::Offer::ALL,
                    steal,
                    fault: "none",
                }))
            }
            HostKind::Kvm => {
                if l1_load.is_some() {
                    bail!("--l1-load only with --host nested-kvm (--host kvm has no L1)");
                }
                Ok(Host::Kvm(kvm::Settings {
                    pv: pv.unwrap_or(kvm::Settings::DEFAULT.pv),
                }))
            }
            HostKind::NestedKvm => {
                let defaults = nested_kvm::Settings::DEFAULT;
                let settings = nested_kvm::Settings {
                    pv: pv.unwrap_or(defaults.pv),
                    l1_load: l1_load.unwrap_or(defaults.l1_load),
                };
                if settings.l1_load > MAX_L1_LOAD {
                    bail!("--l1-load {} is more than {MAX_L1_LOAD}", settings.l1_load);
                }
                Ok(Host::NestedKvm(settings))
            }
        }
    }

    /// This host offering only `offer` (`--offer`): pvhost with PV on only.
    pub fn with_offer(self, offer: pvhost::Offer) -> Result<Host> {
        match self {
            Host::Pvhost(settings) if settings.pv == Pv::On => {
                Ok(Host::Pvhost(pvhost::Settings { offer, ..settings }))
            }
            Host::Pvhost(_) => bail!("--offer with --pv off: --pv off offers nothing"),
            _ => bail!("--offer only with --host pvhost"),
        }
    }

    /// Fails if the guest cannot run here as asked. For `--host kvm` this
    /// looks at the machine ([`kvm::Machine::probe`]).
    pub fn check(self, arch: Arch, el2: bool) -> Result<()> {
        match self {
            Host::Tcg => {}
            Host::Pvhost(settings) => {
                settings.offer.check(arch)?;
                // loongarch64: the patched QEMU of `crate::qemu_pv`.
                if el2 {
                    bail!(
                        "--el2 is not available with --host pvhost: the guest runs at EL1 under it"
                    );
                }
            }
            Host::NestedKvm(_) => {
                if arch != Arch::Aarch64 {
                    bail!(
                        "--host nested-kvm runs aarch64 guests only (not {}): L1 is an arm64 Linux",
                        arch.name()
                    );
                }
                if el2 {
                    bail!("--el2 is not available with --host nested-kvm: L1's KVM offers no nested virtualization");
                }
            }
            Host::Kvm(_) => {
                if el2 {
                    bail!(
                        "--el2 is not available with --host kvm: the guest runs at EL1 under KVM"
                    );
                }
                kvm::check(&kvm::Machine::probe(arch), arch)?;
            }
        }
        arch.machine_args(el2)?;
        Ok(())
    }

    /// How long a run may take unless `--timeout` says otherwise.
    pub fn default_timeout(self) -> Duration {
        match self {
            Host::Tcg | Host::Pvhost(_) | Host::Kvm(_) => Duration::from_secs(60),
            // L1 boots under TCG first (2-3 s here); a loaded L1 slows
            // the guest down on purpose.
            Host::NestedKvm(_) => Duration::from_secs(180),
        }
    }

    /// How long QEMU may take to exit after the guest printed its exit
    /// marker.
    pub fn power_off_grace(self) -> Duration {
        match self {
            Host::Tcg | Host::Pvhost(_) | Host::Kvm(_) => Duration::from_secs(5),
            // Then the guest's QEMU exits and L1 powers off, next to the
            // busy loops of `--l1-load` (under 1 s with 4 of them here).
            Host::NestedKvm(_) => Duration::from_secs(15),
        }
    }
}

/// What hosts need made once per xtask process before their first boot,
/// made on first use (and a failure remembered, not retried per boot).
#[derive(Default)]
pub struct Preparations {
    l1: Option<Result<L1, String>>,
    pvhost: Option<Result<PathBuf, String>>,
    qemu_pv: Option<Result<PathBuf, String>>,
}

impl Preparations {
    /// The nested-KVM L1 (kernel and initramfs, cached on disk).
    pub fn l1(&mut self) -> Result<&L1> {
        self.l1
            .get_or_insert_with(|| L1::prepare().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow!("preparing the nested-KVM L1 failed: {e}"))
    }

    /// pvhost's EL2 image, built once.
    pub fn pvhost(&mut self) -> Result<&Path> {
        self.pvhost
            .get_or_insert_with(|| pvhost::build().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map(PathBuf::as_path)
            .map_err(|e| anyhow!("building pvhost failed: {e}"))
    }

    /// The LoongArch PV QEMU, built once per patch (cached on disk).
    pub fn qemu_pv(&mut self) -> Result<&Path> {
        self.qemu_pv
            .get_or_insert_with(|| crate::qemu_pv::ensure().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map(PathBuf::as_path)
            .map_err(|e| anyhow!("building the LoongArch PV QEMU failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nested_kvm::Settings;

    #[test]
    fn settings_belong_to_their_host() {
        assert_eq!(
            Host::from_args(HostKind::Tcg, None, None, None).unwrap(),
            Host::Tcg
        );
        let err = Host::from_args(HostKind::Tcg, Some(Pv::Off), None, None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--pv only with --host nested-kvm"),
            "{err}"
        );
        let err = Host::from_args(HostKind::Tcg, Some(Pv::On), Some(0), None).unwrap_err();
        assert!(
            err.to_string().starts_with("--pv and --l1-load only"),
            "{err}"
        );
        assert!(Host::from_args(HostKind::Tcg, None, Some(2), None).is_err());

        assert_eq!(
            Host::from_args(HostKind::NestedKvm, None, None, None).unwrap(),
            Host::NestedKvm(Settings {
                pv: Pv::On,
                l1_load: 0
            })
        );
        assert_eq!(
            Host::from_args(HostKind::NestedKvm, Some(Pv::Off), Some(2), None).unwrap(),
            Host::NestedKvm(Settings {
                pv: Pv::Off,
                l1_load: 2
            })
        );
        assert!(Host::from_args(HostKind::NestedKvm, None, Some(MAX_L1_LOAD + 1), None).is_err());
    }

    #[test]
    fn nested_kvm_runs_aarch64_at_el1_only() {
        let nested = Host::NestedKvm(Settings::DEFAULT);
        assert!(nested.check(Arch::Aarch64, false).is_ok());
        let err = nested.check(Arch::Loongarch64, false).unwrap_err();
        assert!(err.to_string().contains("aarch64 guests only"), "{err}");
        assert!(nested.check(Arch::Aarch64, true).is_err());
        assert!(Host::Tcg.check(Arch::Aarch64, true).is_ok());
        assert!(Host::Tcg.check(Arch::Loongarch64, true).is_err());
        assert!(nested.default_timeout() > Host::Tcg.default_timeout());
    }

    #[test]
    fn kvm_takes_pv_only() {
        assert_eq!(
            Host::from_args(HostKind::Kvm, None, None, None).unwrap(),
            Host::Kvm(kvm::Settings { pv: Pv::On })
        );
        assert_eq!(
            Host::from_args(HostKind::Kvm, Some(Pv::Off), None, None).unwrap(),
            Host::Kvm(kvm::Settings { pv: Pv::Off })
        );
        let err = Host::from_args(HostKind::Kvm, None, Some(1), None).unwrap_err();
        assert!(err.to_string().starts_with("--l1-load only"), "{err}");
        assert!(Host::from_args(HostKind::Kvm, None, None, Some("none")).is_err());
        let err = Host::Kvm(kvm::Settings::DEFAULT)
            .check(Arch::Aarch64, true)
            .unwrap_err();
        assert!(err
            .to_string()
            .contains("--el2 is not available with --host kvm"));
    }

    #[test]
    fn pvhost_takes_pv_and_steal() {
        let host = Host::from_args(
            HostKind::Pvhost,
            Some(Pv::Off),
            None,
            Some("periodic:1000,50"),
        );
        assert_eq!(
            host.unwrap(),
            Host::Pvhost(pvhost::Settings {
                pv: Pv::Off,
                offer: pvhost::Offer::ALL,
                steal: "periodic:1000,50",
                fault: "none",
            })
        );
        assert_eq!(
            Host::from_args(HostKind::Pvhost, None, None, None).unwrap(),
            Host::Pvhost(pvhost::Settings::DEFAULT)
        );
        assert!(Host::from_args(HostKind::Pvhost, None, Some(1), None).is_err());
        assert!(Host::from_args(HostKind::Pvhost, None, None, Some("often")).is_err());
        assert_eq!(
            Host::from_args(HostKind::Pvhost, None, None, Some("periodic:10ms,50%@2s")).unwrap(),
            Host::Pvhost(pvhost::Settings {
                pv: Pv::On,
                offer: pvhost::Offer::ALL,
                steal: "periodic:10000,50@2000",
                fault: "none",
            })
        );
        let err = Host::from_args(HostKind::Tcg, None, None, Some("none")).unwrap_err();
        assert!(
            err.to_string().contains("--steal only with --host pvhost"),
            "{err}"
        );
        let pvhost = Host::Pvhost(pvhost::Settings::DEFAULT);
        assert!(pvhost.check(Arch::Aarch64, false).is_ok());
        assert!(pvhost.check(Arch::Aarch64, true).is_err());
        assert!(pvhost.check(Arch::Loongarch64, false).is_ok());
        let ipi = pvhost::Offer::only(&[pvhost::Feature::Ipi]);
        let la = pvhost.with_offer(ipi).unwrap();
        assert!(la.check(Arch::Loongarch64, false).is_ok());
        assert!(la.check(Arch::Aarch64, false).is_err());
        assert!(Host::Tcg.with_offer(ipi).is_err());
        let off = Host::from_args(HostKind::Pvhost, Some(Pv::Off), None, None).unwrap();
        assert!(off.with_offer(ipi).is_err());
    }
}
