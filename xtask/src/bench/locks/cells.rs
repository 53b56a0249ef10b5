//! The cells of the `locks` suite: what one boot runs ([`Workload`]), on
//! which host, and the matrix the flags select.

use super::*;

/// What the guest runs in one boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Every CPU takes each spinlock: `ms=300 slowpath=boot`.
    Contended,
    /// One CPU, nothing inside or between: the cost of lock+unlock.
    Uncontended,
    /// A pinned thread per CPU takes the sleeping mutex, once per spin
    /// policy: `kinds=mutex ms=300`.
    Mutex,
    /// TCG with 16 CPUs (8 per core here) takes each spinlock:
    /// `ms=300 slowpath=boot`.
    Overcommit,
    /// TCG with 64 CPUs, aarch64 and loongarch64, takes each spinlock:
    /// `ms=300 slowpath=boot`.
    Scale,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Contended => "contended",
            Workload::Uncontended => "uncontended",
            Workload::Mutex => "mutex",
            Workload::Overcommit => "overcommit",
            Workload::Scale => "scale",
        }
    }

    /// Every CPU takes each spinlock (the contended tables and plots).
    pub fn contended(self) -> bool {
        matches!(
            self,
            Workload::Contended | Workload::Overcommit | Workload::Scale
        )
    }

    pub fn app_args(self) -> &'static [&'static str] {
        match self {
            Workload::Contended | Workload::Overcommit | Workload::Scale => {
                &["ms=300", "slowpath=boot"]
            }
            Workload::Uncontended => &["cpus=1", "cs=0", "out=0", "ms=200"],
            Workload::Mutex => &["kinds=mutex", "ms=300"],
        }
    }

    /// The `cpus=` every result line of this workload must show.
    pub(super) fn cpus(self, smp: u16) -> u32 {
        match self {
            Workload::Contended | Workload::Overcommit | Workload::Scale | Workload::Mutex => {
                u32::from(smp)
            }
            Workload::Uncontended => 1,
        }
    }

    /// The result lines every boot must print, once each: (kind, slow
    /// path or policy; `None`: whichever).
    pub(super) fn expected(self) -> Vec<(&'static str, Option<&'static str>)> {
        match self {
            Workload::Contended
            | Workload::Overcommit
            | Workload::Scale
            | Workload::Uncontended => KINDS.iter().map(|&kind| (kind, None)).collect(),
            Workload::Mutex => MUTEX_POLICIES
                .iter()
                .map(|&policy| (MUTEX, Some(policy)))
                .collect(),
        }
    }
}

/// One kind of boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    pub host: HostKind,
    pub smp: u16,
    pub pv: Pv,
    pub workload: Workload,
    /// The guest's architecture ([`ARCH`] in the suite; the demo's `--arch`).
    pub arch: Arch,
    /// pvhost's `--steal` schedule ([`PVHOST_STEAL`] in the suite); other
    /// hosts ignore it.
    pub steal: &'static str,
}

/// The name `--host` and `--hosts` take.
pub fn host_name(host: HostKind) -> &'static str {
    match host {
        HostKind::Tcg => "tcg",
        HostKind::NestedKvm => "nested-kvm",
        HostKind::Pvhost => "pvhost",
        HostKind::Kvm => "kvm",
    }
}

impl Cell {
    pub fn host_name(self) -> &'static str {
        host_name(self.host)
    }

    /// Whether this is the boot of `arch`, `host`, `smp`, `pv`, `workload`
    /// (whichever steal: a run has one schedule).
    pub fn is(self, arch: Arch, host: HostKind, smp: u16, pv: Pv, workload: Workload) -> bool {
        (self.arch, self.host, self.smp, self.pv, self.workload) == (arch, host, smp, pv, workload)
    }

    /// Kernel arguments before the app's: `pv=off` for PV off.
    fn extra_bootargs(self) -> &'static str {
        match self.pv {
            Pv::On => "",
            Pv::Off => "pv=off",
        }
    }

    pub fn bootargs(self) -> Result<String> {
        guest::bootargs(APP, self.extra_bootargs(), self.workload.app_args())
    }

    pub fn host(self, l1_load: u8) -> Host {
        match self.host {
            HostKind::Tcg => Host::Tcg,
            HostKind::NestedKvm => Host::NestedKvm(Settings {
                pv: self.pv,
                l1_load,
            }),
            HostKind::Pvhost => Host::Pvhost(crate::pvhost::Settings {
                pv: self.pv,
                offer: crate::pvhost::Offer::ALL,
                steal: self.steal,
                fault: "none",
            }),
            HostKind::Kvm => Host::Kvm(crate::kvm::Settings { pv: self.pv }),
        }
    }

    /// The `cargo xtask run` command that boots this cell once.
    pub fn command(self, l1_load: u8) -> String {
        let mut words = vec!["cargo", "xtask", "run"];
        if self.arch != ARCH {
            words.extend(["--arch", self.arch.name()]);
        }
        words.extend(["--host", self.host_name()]);
        let smp = self.smp.to_string();
        let load = l1_load.to_string();
        if self.host != HostKind::Tcg && self.pv == Pv::Off {
            words.extend(["--pv", "off"]);
        }
        if self.host == HostKind::NestedKvm && l1_load > 0 {
            words.extend(["--l1-load", &load]);
        }
        if self.host == HostKind::Pvhost {
            words.extend(["--steal", self.steal]);
        }
        words.extend(["--smp", &smp, "--app", APP]);
        if !self.extra_bootargs().is_empty() {
            words.extend(["--bootargs", self.extra_bootargs()]);
        }
        words.push("--");
        words.extend(self.workload.app_args());
        cmd::quote(&words.into_iter().map(String::from).collect::<Vec<_>>())
    }

    /// `tcg smp 4 pv on contended`.
    pub fn label(self) -> String {
        format!("{} {}", self.label_without_workload(), self.workload.name())
    }

    /// `tcg smp 4 pv on`, `tcg loongarch64 smp 64 pv on`.
    pub fn label_without_workload(self) -> String {
        format!(
            "{} smp {} pv {}",
            self.host_arch_name(),
            self.smp,
            self.pv.name()
        )
    }

    /// `64`, or `64 (loongarch64)` where the arch is not [`ARCH`].
    pub fn smp_label(self) -> String {
        if self.arch == ARCH {
            self.smp.to_string()
        } else {
            format!("{} ({})", self.smp, self.arch.name())
        }
    }

    /// The host's name, and the arch where it is not [`ARCH`].
    pub fn host_arch_name(self) -> String {
        if self.arch == ARCH {
            self.host_name().to_owned()
        } else {
            format!("{} {}", self.host_name(), self.arch.name())
        }
    }

    /// What the host does to this cell's vCPUs, for the report: the
    /// overcommit (with `--l1-load`'s busy loops on nested-kvm) or pvhost's
    /// steal; `None` on TCG at 4 CPUs.
    pub fn overcommit_note(self, l1_load: u8) -> Option<String> {
        match self.host {
            HostKind::NestedKvm => Some(format!(
                "{} vCPUs on L1's {} CPUs{}",
                self.smp,
                nested_kvm::L1_CPUS,
                if l1_load > 0 {
                    format!(", {l1_load} busy loops in L1 (--l1-load {l1_load})")
                } else {
                    String::new()
                }
            )),
            HostKind::Pvhost if self.steal == PVHOST_STEAL => Some(format!(
                "half of each vCPU's time stolen, staggered: {PVHOST_STEAL}"
            )),
            HostKind::Pvhost => Some(format!("preempted on the schedule {}", self.steal)),
            HostKind::Tcg if self.smp == SMP_NO_OVERCOMMIT => Some("no overcommit".into()),
            HostKind::Tcg if self.smp >= SMP_OVERCOMMIT => {
                Some(format!("{} vCPUs on this machine's 2 cores", self.smp))
            }
            HostKind::Tcg | HostKind::Kvm => None,
        }
    }

    /// `nested-kvm smp 4 (4 vCPUs on L1's 2 CPUs)`, `tcg smp 4`,
    /// `tcg loongarch64 smp 64 (...)`.
    pub fn host_label(self, l1_load: u8) -> String {
        let base = format!("{} smp {}", self.host_arch_name(), self.smp);
        match self.overcommit_note(l1_load) {
            Some(note) => format!("{base} ({note})"),
            None => base,
        }
    }

    /// Whether the host preempts this cell's vCPUs (the cells the
    /// goals for overcommit are about): nested-kvm beyond L1's CPUs,
    /// pvhost's steal, TCG at 16 CPUs.
    pub fn overcommitted(self) -> bool {
        match self.host {
            HostKind::NestedKvm => self.smp > nested_kvm::L1_CPUS,
            HostKind::Pvhost => true,
            HostKind::Tcg => self.smp >= SMP_OVERCOMMIT,
            // This machine's own cores.
            HostKind::Kvm => {
                usize::from(self.smp) > std::thread::available_parallelism().map_or(1, |n| n.get())
            }
        }
    }

    /// A rough time for one boot, for the estimate printed up front.
    pub(super) fn estimate(self) -> Duration {
        match self.host {
            HostKind::Tcg if self.smp >= SMP_SCALE => Duration::from_secs(12),
            HostKind::Tcg if self.smp > SMP => Duration::from_secs(5),
            HostKind::Tcg => Duration::from_millis(1500),
            HostKind::Pvhost | HostKind::Kvm => Duration::from_secs(2),
            // L1 boots under TCG first, then the guest under KVM in it.
            HostKind::NestedKvm => Duration::from_secs(15),
        }
    }
}

/// The cells for `hosts`, `workloads` and guest architectures `arches`,
/// in the order each round boots them.
pub fn matrix(hosts: &[HostKind], workloads: &[Workload], arches: &[Arch]) -> Vec<Cell> {
    let mut cells = Vec::new();
    for &host in hosts {
        let mut add = |arch, smp, workload| {
            if !workloads.contains(&workload) || !arches.contains(&arch) {
                return;
            }
            for pv in [Pv::On, Pv::Off] {
                cells.push(Cell {
                    host,
                    smp,
                    pv,
                    workload,
                    arch,
                    steal: PVHOST_STEAL,
                });
            }
        };
        add(ARCH, SMP, Workload::Contended);
        if host == HostKind::Pvhost {
            // The LoongArch PV QEMU, under the same schedule.
            add(Arch::Loongarch64, SMP, Workload::Contended);
        } else {
            add(ARCH, SMP, Workload::Uncontended);
        }
        if host == HostKind::Tcg {
            add(ARCH, SMP_NO_OVERCOMMIT, Workload::Contended);
            add(ARCH, SMP_OVERCOMMIT, Workload::Overcommit);
        }
        add(ARCH, SMP, Workload::Mutex);
        if host == HostKind::Tcg && workloads.contains(&Workload::Scale) {
            // TCG has no hypervisor to ask: PV on only (pv=off is the same
            // boot).
            for arch in ARCHES.into_iter().filter(|a| arches.contains(a)) {
                cells.push(Cell {
                    host,
                    smp: SMP_SCALE,
                    pv: Pv::On,
                    workload: Workload::Scale,
                    arch,
                    steal: PVHOST_STEAL,
                });
            }
        }
    }
    cells
}
