//! The `locks` suite: `apps/src/lockstorm.rs` on each host, PV on and off,
//! every cell booted `--reps` times, the repetitions interleaved.
//!
//! A cell is one kind of boot (host, CPUs, PV setting, workload); each
//! boot prints one `lockstorm:` line per lock kind. The matrix, per host:
//!
//! | host | smp | PV | app arguments | what for |
//! |---|---|---|---|---|
//! | tcg, nested-kvm, pvhost | 4 | on, off | `ms=300 slowpath=boot` | throughput, fairness, latency per kind; on nested-kvm 4 vCPUs on L1's 2 CPUs: real overcommit; on pvhost half of each vCPU's time stolen, staggered ([`PVHOST_STEAL`]) |
//! | tcg, nested-kvm | 4 | on, off | `cpus=1 cs=0 out=0 ms=200` | uncontended cost of lock+unlock |
//! | tcg | 2 | on, off | `ms=300 slowpath=boot` | PV-on overhead without overcommit |
//! | tcg | 16 | on, off | `ms=300 slowpath=boot` (workload `overcommit`) | 8 vCPU threads per core of this 2-core machine, preempted by its scheduler |
//! | tcg, nested-kvm, pvhost | 4 | on, off | `kinds=mutex ms=300` | the sleeping mutex under each spin policy ([`MUTEX_POLICIES`]), one pinned thread per CPU |
//! | pvhost (loongarch64) | 4 | on, off | `ms=300 slowpath=boot` | the LoongArch PV QEMU under the same steal: PV against native, and against Linux's choice there, test-and-set |
//! | tcg (aarch64, loongarch64) | 64 | on | `ms=300 slowpath=boot` (workload `scale`) | 32 vCPU threads per core |
//!
//! Every row but the last two is aarch64's. `--workloads` keeps some rows
//! only (`mutex`: the mutex row; `overcommit`: tcg smp 16; `scale`: tcg
//! smp 64), `--arches` the cells of some guest architectures
//! (`--hosts pvhost --arches loongarch64`: the LoongArch pvhost pair
//! only). The mutex cells
//! compare the policies within each boot: the preempted check
//! (`spin-owner-pv`) against spinning on a running owner regardless
//! (`spin-owner`) and against never spinning (`sleep`). The check sees a
//! preempted vCPU only where the host reports it (pvhost with PV on: PV
//! lock and PV sched); upstream KVM on arm64 offers PV time only, and
//! `pv=off` nothing, so there `spin-owner-pv` behaves as `spin-owner`,
//! and the ratio between them shows the noise. On nested-kvm the
//! overcommit is the cells' 4 vCPUs on L1's 2 CPUs (plus `--l1-load`, as
//! for every nested-kvm cell).
//!
//! PV on is the default boot; PV off adds the boot argument `pv=off` (and
//! on nested-kvm and pvhost `--pv off`: the host offers nothing either).
//! With `slowpath=boot` the qspinlock uses the slow path chosen at boot:
//! halting with PV on, spin-only with `pv=off`. pvhost has no uncontended
//! cell: with half the time stolen it would measure the steal, not the
//! lock.
//!
//! Every cell is bounded in time, pvhost's too: `ms=` ends each CPU's loop
//! at its first acquisition past the deadline, however slow hand-overs are
//! (under pvhost's staggered steal the FIFO locks, the qspinlock's queue
//! among them, hand the lock to preempted waiters and manage a few thousand
//! acquisitions a second; a run still takes about 1.5 s), and every boot
//! has the host's timeout.
//!
//! Round `r` boots every cell once, in the same order, before round `r+1`
//! starts, so drift over the run (the machine's load, its clock) hits every
//! cell alike and the two runs of a ratio come from the same round. After
//! `--reps` rounds, whole rounds are added while a goal's figure is
//! unsettled ([`goals::unsettled`]), up to `--max-reps`.
//!
//! A benchmark, not a test: the figures never fail it. A run fails when
//! the guest does not exit 0, loses an update, or leaves out a result line;
//! the suite then still reports what it measured, and exits 1.
//!
//! Past 600 lines: over 400 of them are the unit tests at the end, which
//! pin the matrix, the commands and the ratios' names; the rest is the
//! matrix, the runner and the judging of a run, which share [`Cell`].

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use clap::ValueEnum;

use super::ci::Ci;
use super::goals::{self, Goal};
use super::render;
use super::stats::{self, Group, Metric, Sample, Series, Spread};
use crate::arch::Arch;
use crate::host::{Host, HostKind, Preparations, Pv};
use crate::nested_kvm::{self, Settings};
use crate::qemu::{self, Boot, Outcome};
use crate::{build, cmd, guest, progress};

const APP: &str = "lockstorm";
/// The kinds every boot must report, one line each (`slowpath=boot` gives
/// the qspinlock one line too).
pub const KINDS: [&str; 4] = ["tas", "ticket", "mcs", "qspinlock"];
/// The qspinlock, whose PV slow path the suite is about.
pub const QSPINLOCK: &str = "qspinlock";
/// The sleeping mutex's kind in `lockstorm`.
pub const MUTEX: &str = "mutex";
/// The mutex's spin policies (`kernel::sync::MutexSpin`), in the order
/// `lockstorm` runs them; each a result line of every mutex boot.
pub const MUTEX_POLICIES: [&str; 3] = ["sleep", "spin-owner", "spin-owner-pv"];
/// The policy with the preempted check.
pub const MUTEX_PV: &str = "spin-owner-pv";
/// CPUs of the main cells: on nested-kvm, twice L1's CPUs.
pub const SMP: u16 = 4;
/// CPUs of the no-overcommit cell on TCG (one vCPU thread per core here).
pub const SMP_NO_OVERCOMMIT: u16 = 2;
/// CPUs of the overcommitted TCG cell: 8 vCPU threads per core of this
/// 2-core machine, preempted by the host's scheduler.
pub const SMP_OVERCOMMIT: u16 = 16;
/// CPUs of the scale cells (TCG, each arch): 32 vCPU threads per core.
pub const SMP_SCALE: u16 = 64;
/// The guest's architecture of most cells: every host here runs aarch64
/// (the scale cells and pvhost run loongarch64 too).
pub const ARCH: Arch = Arch::Aarch64;
/// Every guest architecture, the default of `--arches`.
pub const ARCHES: [Arch; 2] = [Arch::Aarch64, Arch::Loongarch64];
/// pvhost's schedule: half of every 10 ms stolen from each vCPU, CPU `c`'s
/// windows 2.5 ms after CPU `c-1`'s, so two of the four vCPUs are preempted
/// at any time and a lock holder or the next waiter often is: the
/// preemption the PV slow path is for (`host/src/policy.rs`: µs).
pub const PVHOST_STEAL: &str = "periodic:10000,50,2500";
/// The PV-on overhead the project hopes for without overcommit (reported,
/// never asserted).
pub const OVERHEAD_GOAL: f64 = 0.02;
/// Console lines kept from a failed run.
const TAIL_LINES: usize = 30;

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
    fn cpus(self, smp: u16) -> u32 {
        match self {
            Workload::Contended | Workload::Overcommit | Workload::Scale | Workload::Mutex => {
                u32::from(smp)
            }
            Workload::Uncontended => 1,
        }
    }

    /// The result lines every boot must print, once each: (kind, slow
    /// path or policy; `None`: whichever).
    fn expected(self) -> Vec<(&'static str, Option<&'static str>)> {
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
    fn estimate(self) -> Duration {
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

/// What `cargo xtask bench --suite locks` was asked to do.
#[derive(Debug)]
pub struct Options {
    /// The first rounds.
    pub reps: usize,
    /// The most rounds, growing while a goal's figure is unsettled.
    pub max_reps: usize,
    pub quick: bool,
    pub hosts: Vec<HostKind>,
    pub workloads: Vec<Workload>,
    /// The guest architectures whose cells run (`--arches`).
    pub arches: Vec<Arch>,
    pub l1_load: u8,
    pub timeout: Option<Duration>,
    pub image: Option<PathBuf>,
    pub verbose: bool,
    pub output: Output,
}

/// One boot of one cell.
#[derive(Debug)]
pub struct RunRecord {
    /// 0-based position in the whole run.
    pub seq: usize,
    /// 0-based round.
    pub rep: usize,
    /// Index into the cells.
    pub cell: usize,
    pub wall: Duration,
    /// How the boot ended ([`Outcome`]'s words, or why it did not start).
    pub outcome: String,
    /// Every result line, also from a failed run (which the summary skips).
    pub samples: Vec<Sample>,
    /// Why the run failed; `None` if it succeeded.
    pub error: Option<String>,
    /// The end of a failed run's console.
    pub console_tail: Option<String>,
    /// The steal pvhost reports (`None` on other hosts).
    pub steal: Option<crate::steal::Seen>,
}

impl RunRecord {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

impl Ratio {
    /// `metric` of `numerator` over `denominator`'s (or alone) in each
    /// round of `runs`, with its median, spread and interval.
    pub fn new(
        what: String,
        metric: Metric,
        numerator: Series,
        denominator: Option<Series>,
        runs: &[RunRecord],
    ) -> Ratio {
        let paired = match denominator {
            Some(den) => stats::paired_ratios(runs, numerator, den, metric),
            None => stats::per_round(runs, numerator, metric),
        };
        Ratio {
            what,
            metric,
            numerator,
            denominator,
            spread: Spread::of(&paired),
            ci: Ci::of(&paired),
            paired,
            overhead_goal: None,
        }
    }
}

/// A ratio between two cells (or two lines of one cell), per round; or,
/// without a denominator, a figure of one line per round.
#[derive(Debug)]
pub struct Ratio {
    /// What is compared, for a person.
    pub what: String,
    pub metric: Metric,
    pub numerator: Series,
    pub denominator: Option<Series>,
    /// One value per round in which both runs (or the one) succeeded.
    pub paired: Vec<f64>,
    pub spread: Option<Spread>,
    /// The median of `paired` and its 95% bootstrap interval.
    pub ci: Option<Ci>,
    /// Shown as an overhead (`1 - ratio`) against this goal.
    pub overhead_goal: Option<f64>,
}

/// Where and how the suite ran.
#[derive(Debug)]
pub struct Meta {
    /// RFC 3339, UTC, when the suite started.
    pub date: String,
    /// The command line, as typed.
    pub command: String,
    /// The rounds run.
    pub reps: usize,
    /// The first rounds (`--reps`) and the most (`--max-reps`).
    pub first_reps: usize,
    pub max_reps: usize,
    pub quick: bool,
    pub l1_load: u8,
    /// From the guest's banner.
    pub guest: Option<String>,
    /// The commit, `-dirty` with uncommitted changes to tracked files.
    pub git: String,
    pub qemu: String,
    /// The ELF built (or given); the suite boots a copy of it.
    pub image: PathBuf,
    /// Where the copy is: `target/bench/` ([`Output::tag`]).
    pub copy_dir: &'static str,
    pub wall: Duration,
}

impl Report {
    /// The report of `runs`: their summary, ratios and goals.
    pub fn new(meta: Meta, cells: Vec<Cell>, runs: Vec<RunRecord>) -> Report {
        let l1_load = meta.l1_load;
        Report {
            groups: stats::summarize(&runs),
            ratios: ratios(&cells, &runs, l1_load),
            versus_linux: goals::versus_linux(&cells, &runs, l1_load),
            goals: goals::goals(&cells, &runs, l1_load),
            meta,
            cells,
            runs,
        }
    }
}

/// Everything the report is made of.
#[derive(Debug)]
pub struct Report {
    pub meta: Meta,
    pub cells: Vec<Cell>,
    pub runs: Vec<RunRecord>,
    pub groups: Vec<Group>,
    pub ratios: Vec<Ratio>,
    /// Lodger's default lock over Linux's choice, per contended cell.
    pub versus_linux: Vec<Ratio>,
    pub goals: Vec<Goal>,
}

pub fn main(options: Options) -> Result<ExitCode> {
    let cells = matrix(&options.hosts, &options.workloads, &options.arches);
    let done = Done::write(execute(cells, &options)?, &options)?;
    println!("{}", done.files.markdown_text);
    Ok(done.finish(&options))
}

/// Where a run of cells reports: the word its progress lines start with
/// (also its directory under `target/`) and its files' name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Output {
    /// `bench`: lines `bench: ...`, files in `target/bench/`.
    pub tag: &'static str,
    /// `locks`: `locks.{md,json,svg}`.
    pub stem: &'static str,
}

/// The suite's: `target/bench/locks.{md,json,svg}`.
pub const BENCH_OUTPUT: Output = Output {
    tag: "bench",
    stem: "locks",
};

/// A finished run: its report and the files it wrote.
pub struct Done {
    pub report: Report,
    pub files: render::Files,
}

impl Done {
    /// Writes `report` into `target/TAG/STEM.{md,json,svg}` ([`Output`]).
    pub fn write(report: Report, options: &Options) -> Result<Done> {
        let Output { tag, stem } = options.output;
        let files = render::write(&report, &cmd::target_dir().join(tag), stem)?;
        Ok(Done { report, files })
    }

    /// The closing lines (how long, which files, how many runs failed),
    /// and the exit status: failure if any run failed.
    pub fn finish(&self, options: &Options) -> ExitCode {
        let tag = options.output.tag;
        let boots = self.report.runs.len();
        let failed = self.report.runs.iter().filter(|r| !r.ok()).count();
        eprintln!(
            "{tag}: {boots} boots in {:.1} min; wrote {}, {} and {}",
            self.report.meta.wall.as_secs_f64() / 60.0,
            self.files.markdown.display(),
            self.files.json.display(),
            self.files.svg.display()
        );
        if failed > 0 {
            eprintln!("{tag}: {failed} of {boots} runs failed (their figures are left out)");
            return ExitCode::FAILURE;
        }
        ExitCode::SUCCESS
    }
}

/// Boots `cells` (the first cell's guest architecture is the main one,
/// `--image`'s; the others are built) in rounds as `options`
/// say (from a copy of the guest in `target/TAG/`, [`Output`]) and
/// reports on the runs.
pub fn execute(cells: Vec<Cell>, options: &Options) -> Result<Report> {
    let Output { tag, stem } = options.output;
    let arch = cells.first().map_or(ARCH, |c| c.arch);
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let command = {
        let args: Vec<String> = std::env::args().skip(1).collect();
        format!("cargo xtask {}", cmd::quote(&args))
    };
    let dir = cmd::target_dir().join(tag);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // An image per arch of the cells (`--image` is the main arch's).
    let mut images: Vec<(Arch, PathBuf)> = Vec::new();
    let mut main_built = PathBuf::new();
    for cell in &cells {
        if images.iter().any(|(a, _)| *a == cell.arch) {
            continue;
        }
        let built = match &options.image {
            Some(image) if cell.arch == arch => image.clone(),
            _ => build::image(cell.arch)?,
        };
        if cell.arch == arch {
            main_built.clone_from(&built);
        }
        // Boot a copy: a build during the run (`cargo xtask test` in
        // another shell) would otherwise change the guest between rounds.
        let suffix = if cell.arch == arch {
            String::new()
        } else {
            format!("-{}", cell.arch.name())
        };
        let image = dir.join(format!("{stem}-guest{suffix}.elf"));
        fs::copy(&built, &image)
            .with_context(|| format!("copying {} to {}", built.display(), image.display()))?;
        images.push((cell.arch, image));
    }
    let git = git_version();
    let qemu = qemu_version(arch);

    let estimate: Duration =
        cells.iter().map(|c| c.estimate()).sum::<Duration>() * options.reps as u32;
    eprintln!(
        "{tag}: {stem}: {} cells x {} rounds = {} boots, about {} min{}",
        cells.len(),
        options.reps,
        cells.len() * options.reps,
        estimate.as_secs().div_ceil(60),
        if options.max_reps > options.reps {
            format!(
                "; up to {} rounds while a goal's figure is unsettled",
                options.max_reps
            )
        } else {
            String::new()
        }
    );

    let start = Instant::now();
    // A live line on a terminal (not while `--verbose` streams consoles),
    // else the lines below ([`progress::Step`]).
    let step = progress::Step::with_mode(tag, progress::live() && !options.verbose);
    let mut prep = Preparations::default();
    let mut runs: Vec<RunRecord> = Vec::new();
    let mut guest_version = None;
    let mut rounds = options.reps;
    let mut rep = 0;
    while rep < rounds {
        for (index, &cell) in cells.iter().enumerate() {
            let seq = runs.len();
            let total = (cells.len() * rounds) as u64;
            let (left, _) = left(&cells, &runs, index, rep, rounds);
            step.count(seq as u64, Some(total), Some(left));
            step.message(&format!(
                "{}, round {}",
                cell.label(),
                round_of(rep, options)
            ));
            step.plain(&progress(
                &cells,
                &runs,
                index,
                rep,
                rounds,
                options,
                start.elapsed(),
            ));
            let image = &images
                .iter()
                .find(|(a, _)| *a == cell.arch)
                .expect("built above")
                .1;
            let (record, console) = boot(cell, image, options, &mut prep, seq, rep, index);
            if guest_version.is_none() {
                guest_version = console.as_deref().and_then(stats::guest_version);
            }
            match &record.error {
                None => step.plain(&format!("{tag}: ok, {:.1} s", record.wall.as_secs_f64())),
                Some(why) => {
                    progress::say(&format!(
                        "{tag}: run FAILED after {:.1} s: {why}",
                        record.wall.as_secs_f64()
                    ));
                    if let Some(tail) = &record.console_tail {
                        progress::say(&format!("--- the end of its console ---\n{tail}---"));
                    }
                }
            }
            runs.push(record);
        }
        rep += 1;
        if rep == rounds && rounds < options.max_reps {
            let goals = goals::goals(&cells, &runs, options.l1_load);
            let unsettled = goals::unsettled(&goals);
            if !unsettled.is_empty() {
                rounds += 1;
                progress::say(&format!(
                    "{tag}: round {rounds} of at most {}: {} unsettled, e.g. {}",
                    options.max_reps,
                    render::plural(unsettled.len(), "goal figure"),
                    unsettled[0]
                ));
            }
        }
    }
    Ok(Report::new(
        Meta {
            date,
            command,
            reps: rounds,
            first_reps: options.reps,
            max_reps: options.max_reps,
            quick: options.quick,
            l1_load: options.l1_load,
            guest: guest_version,
            git,
            qemu,
            image: main_built,
            copy_dir: tag,
            wall: start.elapsed(),
        },
        cells,
        runs,
    ))
}

/// What is left of the planned rounds before boot `index` of round `rep`,
/// and what one round takes, from each cell's mean boot time so far (its
/// [`Cell::estimate`] until it has booted).
fn left(
    cells: &[Cell],
    runs: &[RunRecord],
    index: usize,
    rep: usize,
    rounds: usize,
) -> (Duration, Duration) {
    let mean = |cell: usize| {
        let walls: Vec<Duration> = runs
            .iter()
            .filter(|r| r.cell == cell)
            .map(|r| r.wall)
            .collect();
        match walls.len() {
            0 => cells[cell].estimate(),
            n => walls.iter().sum::<Duration>() / n as u32,
        }
    };
    let round: Duration = (0..cells.len()).map(mean).sum();
    let this_round: Duration = (index..cells.len()).map(mean).sum();
    (this_round + round * (rounds - rep - 1) as u32, round)
}

/// The round of boot `rep`: of the first rounds, or of the most while
/// growing.
fn round_of(rep: usize, options: &Options) -> String {
    if rep < options.reps {
        format!("{}/{}", rep + 1, options.reps)
    } else {
        format!("{}/{} (growing)", rep + 1, options.max_reps)
    }
}

/// The line printed before each boot: the cell, the round ([`round_of`]),
/// the time so far, and what is left of the planned rounds ([`left`]).
fn progress(
    cells: &[Cell],
    runs: &[RunRecord],
    index: usize,
    rep: usize,
    rounds: usize,
    options: &Options,
    elapsed: Duration,
) -> String {
    let (left, round) = left(cells, runs, index, rep, rounds);
    let of = round_of(rep, options);
    format!(
        "{}: {}: round {of}, boot {}; {} elapsed, about {} left{}",
        options.output.tag,
        cells[index].label(),
        runs.len() + 1,
        minutes(elapsed),
        minutes(left),
        if rounds < options.max_reps {
            format!(
                " (up to {} more if it grows to {} rounds)",
                minutes(round * (options.max_reps - rounds) as u32),
                options.max_reps
            )
        } else {
            String::new()
        }
    )
}

/// `42 s`, `3.4 min`.
fn minutes(d: Duration) -> String {
    if d.as_secs() < 100 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} min", d.as_secs_f64() / 60.0)
    }
}

/// Boots `cell` once and judges the run; also returns the console.
fn boot(
    cell: Cell,
    image: &std::path::Path,
    options: &Options,
    prep: &mut Preparations,
    seq: usize,
    rep: usize,
    index: usize,
) -> (RunRecord, Option<String>) {
    let start = Instant::now();
    let mut record = RunRecord {
        seq,
        rep,
        cell: index,
        wall: Duration::ZERO,
        outcome: String::new(),
        samples: Vec::new(),
        error: None,
        console_tail: None,
        steal: None,
    };
    let host = cell.host(options.l1_load);
    let launched = cell.bootargs().and_then(|bootargs| {
        let boot = Boot {
            arch: cell.arch,
            host,
            smp: cell.smp,
            mem: crate::qemu::GUEST_MEMORY,
            el2: false,
            image: image.to_owned(),
            bootargs,
        };
        let launch = boot.command(prep)?;
        let timeout = options.timeout.unwrap_or(host.default_timeout());
        qemu::run(launch, timeout, options.verbose)
    });
    record.wall = start.elapsed();
    let run = match launched {
        Ok(run) => run,
        Err(e) => {
            record.outcome = "did not run".into();
            record.error = Some(format!("{e:#}"));
            return (record, None);
        }
    };
    if options.verbose && !run.console.is_empty() && !run.console.ends_with('\n') {
        println!();
    }
    record.outcome = run.outcome.to_string();
    record.steal = crate::steal::seen(&run.console);
    let (samples, problems) = judge(cell, run.outcome, &run.console);
    record.samples = samples;
    if !problems.is_empty() {
        record.error = Some(problems.join("; "));
        let mut tail = tail(&run.console, TAIL_LINES);
        if !run.stderr.trim().is_empty() {
            tail.push_str("--- QEMU said ---\n");
            tail.push_str(&run.stderr);
        }
        record.console_tail = Some(tail);
    }
    (record, Some(run.console))
}

/// The results on a run's console, and what is wrong with the run (empty
/// if nothing): it must exit 0 and print each line its workload expects
/// once (each of [`KINDS`], or the mutex under each of
/// [`MUTEX_POLICIES`], with its counters), with the CPUs asked for, some
/// acquisitions and no lost update.
fn judge(cell: Cell, outcome: Outcome, console: &str) -> (Vec<Sample>, Vec<String>) {
    let mut problems = Vec::new();
    if outcome != Outcome::Exited(0) {
        problems.push(outcome.to_string());
    }
    let (samples, malformed) = stats::parse_console(console);
    problems.extend(malformed.iter().map(|e| format!("{e:#}")));
    for (kind, slowpath) in cell.workload.expected() {
        let series = Series {
            cell: 0,
            kind,
            slowpath,
        };
        let what = match slowpath {
            Some(policy) => format!("{kind} {policy}"),
            None => kind.to_owned(),
        };
        match samples
            .iter()
            .filter(|s| series.matches(&s.kind, &s.slowpath))
            .count()
        {
            1 => {}
            0 => problems.push(format!("no result line for {what}")),
            n => problems.push(format!("{n} result lines for {what}, expected one")),
        }
    }
    let cpus = cell.workload.cpus(cell.smp);
    for s in &samples {
        let what = if s.kind == MUTEX {
            format!("{} {}", s.kind, s.slowpath)
        } else {
            s.kind.clone()
        };
        if s.cpus != cpus {
            problems.push(format!("{what}: cpus={}, expected {cpus}", s.cpus));
        }
        if s.acquisitions == 0 {
            problems.push(format!("{what}: no acquisitions"));
        }
        if s.lost != 0 {
            problems.push(format!("{what}: {} lost updates", s.lost));
        }
        if s.kind == MUTEX && s.mutex.is_none() {
            problems.push(format!("{what}: no spun/slept/preempted_owner counters"));
        }
    }
    (samples, problems)
}

/// The last `lines` lines of `text`, each ending in a newline.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for line in &all[all.len().saturating_sub(lines)..] {
        let _ = writeln!(out, "{}", line.trim_end_matches('\r'));
    }
    out
}

/// The ratios the report shows: for each host and CPU count measured with
/// PV on and off, the qspinlock's contended throughput (on nested-kvm
/// with overcommit and on pvhost with its steal: PV against native; on TCG
/// smp 2: the PV-on overhead) and its uncontended cost; and in every mutex
/// cell, the throughput of `spin-owner-pv` against `spin-owner` and
/// against `sleep`, from the same boot.
pub fn ratios(cells: &[Cell], runs: &[RunRecord], l1_load: u8) -> Vec<Ratio> {
    let find = |cell: Cell| cells.iter().position(|&c| c == cell);
    let mut ratios = Vec::new();
    for (index, &on) in cells.iter().enumerate() {
        if on.workload == Workload::Mutex {
            let policy = |slowpath| Series {
                cell: index,
                kind: MUTEX,
                slowpath: Some(slowpath),
            };
            for other in ["spin-owner", "sleep"] {
                ratios.push(Ratio::new(
                    format!(
                        "{} ({}): mutex {MUTEX_PV} / {other}, throughput",
                        on.label_without_workload(),
                        mutex_context(on, l1_load)
                    ),
                    Metric::PerSec,
                    policy(MUTEX_PV),
                    Some(policy(other)),
                    runs,
                ));
            }
            continue;
        }
        if on.pv != Pv::On {
            continue;
        }
        let Some(off) = find(Cell { pv: Pv::Off, ..on }) else {
            continue;
        };
        let label = on.host_label(l1_load);
        let (what, metric, overhead_goal) = match on.workload {
            Workload::Contended if on.host != HostKind::Tcg => (
                format!("{label}: PV qspinlock / native qspinlock (pv=off), throughput"),
                Metric::PerSec,
                None,
            ),
            Workload::Contended if on.smp == SMP_NO_OVERCOMMIT => (
                format!("{label}: PV-on overhead, qspinlock throughput"),
                Metric::PerSec,
                Some(OVERHEAD_GOAL),
            ),
            Workload::Contended | Workload::Overcommit | Workload::Scale => (
                format!("{label}: qspinlock throughput, PV on / PV off"),
                Metric::PerSec,
                None,
            ),
            Workload::Uncontended => (
                format!(
                    "{}: uncontended qspinlock lock+unlock cost, PV on / PV off",
                    on.host_name()
                ),
                Metric::NsPerOp,
                None,
            ),
            Workload::Mutex => unreachable!("handled above"),
        };
        ratios.push(Ratio {
            overhead_goal,
            ..Ratio::new(what, metric, qspinlock(index), Some(qspinlock(off)), runs)
        });
    }
    ratios
}

/// The qspinlock's lines in cell `cell`, whichever its slow path.
pub fn qspinlock(cell: usize) -> Series {
    Series {
        cell,
        kind: QSPINLOCK,
        slowpath: None,
    }
}

/// What a mutex cell's preempted check can see, for its ratio lines.
pub fn mutex_context(cell: Cell, l1_load: u8) -> String {
    let sees = match (cell.host, cell.pv) {
        (_, Pv::Off) => "pv=off: the check sees no preemption".to_owned(),
        (HostKind::Pvhost, Pv::On) => {
            format!(
                "steal {}, reported by PV lock and PV sched: the check sees it",
                cell.steal
            )
        }
        (HostKind::NestedKvm, Pv::On) => {
            "KVM offers no preempted flag on arm64: the check sees no preemption".to_owned()
        }
        (HostKind::Tcg, Pv::On) => "no hypervisor: the check sees no preemption".to_owned(),
        (HostKind::Kvm, Pv::On) => "QEMU+KVM offers no preempted flag (arm64 has none, QEMU 10 \
                                    leaves LoongArch's PREEMPT off): the check sees no preemption"
            .to_owned(),
    };
    match cell.host {
        HostKind::NestedKvm => format!(
            "{}; {sees}",
            cell.overcommit_note(l1_load).unwrap_or_default()
        ),
        _ => sees,
    }
}

/// The checked-out commit, `-dirty` if tracked files changed; `unknown`
/// without git.
fn git_version() -> String {
    let run = |args: &[&str]| {
        let mut git = Command::new("git");
        git.current_dir(cmd::workspace_root()).args(args);
        cmd::output(&mut git).ok()
    };
    match run(&["rev-parse", "--short=12", "HEAD"]) {
        Some(commit) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.trim().is_empty());
            format!("{}{}", commit.trim(), if dirty { "-dirty" } else { "" })
        }
        None => "unknown".into(),
    }
}

/// The first line of `qemu-system-ARCH --version` (L0's QEMU).
fn qemu_version(arch: Arch) -> String {
    let mut qemu = Command::new(arch.qemu());
    qemu.arg("--version");
    cmd::output(&mut qemu)
        .context("asking QEMU its version")
        .map(|out| out.lines().next().unwrap_or_default().trim().to_owned())
        .unwrap_or_else(|e| format!("unknown ({e:#})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "lockstorm: kind=KIND slowpath=- cpus=4 cs=50 out=100 acquisitions=10 elapsed_ns=300 per_sec=5 fair_min=1 fair_max=1 p50_ns=1 p99_ns=2 max_ns=3 lost=0";

    fn console(kinds: &[&str]) -> String {
        let mut text = String::from("[   0.1 0] lodger 0.1.0 (aarch64), entered at EL1\r\n");
        for kind in kinds {
            text.push_str(&OK.replace("KIND", kind));
            text.push_str("\r\n");
        }
        text.push_str("[[lodger:exit=0]]\r\n");
        text
    }

    fn cell(host: HostKind, smp: u16, pv: Pv, workload: Workload) -> Cell {
        Cell {
            host,
            smp,
            pv,
            workload,
            arch: ARCH,
            steal: PVHOST_STEAL,
        }
    }

    fn all() -> &'static [Workload] {
        Workload::value_variants()
    }

    #[test]
    fn the_matrix() {
        let labels: Vec<String> = matrix(&[HostKind::Tcg, HostKind::NestedKvm], all(), &ARCHES)
            .iter()
            .map(|c| c.label())
            .collect();
        assert_eq!(
            labels,
            [
                "tcg smp 4 pv on contended",
                "tcg smp 4 pv off contended",
                "tcg smp 4 pv on uncontended",
                "tcg smp 4 pv off uncontended",
                "tcg smp 2 pv on contended",
                "tcg smp 2 pv off contended",
                "tcg smp 16 pv on overcommit",
                "tcg smp 16 pv off overcommit",
                "tcg smp 4 pv on mutex",
                "tcg smp 4 pv off mutex",
                "tcg smp 64 pv on scale",
                "tcg loongarch64 smp 64 pv on scale",
                "nested-kvm smp 4 pv on contended",
                "nested-kvm smp 4 pv off contended",
                "nested-kvm smp 4 pv on uncontended",
                "nested-kvm smp 4 pv off uncontended",
                "nested-kvm smp 4 pv on mutex",
                "nested-kvm smp 4 pv off mutex",
            ]
        );
        assert_eq!(matrix(&[HostKind::NestedKvm], all(), &ARCHES).len(), 6);
        let pvhost: Vec<String> = matrix(&[HostKind::Pvhost], all(), &ARCHES)
            .iter()
            .map(|c| c.label())
            .collect();
        assert_eq!(
            pvhost,
            [
                "pvhost smp 4 pv on contended",
                "pvhost smp 4 pv off contended",
                "pvhost loongarch64 smp 4 pv on contended",
                "pvhost loongarch64 smp 4 pv off contended",
                "pvhost smp 4 pv on mutex",
                "pvhost smp 4 pv off mutex"
            ]
        );
        // aarch64 alone: the matrix as before LoongArch had a pvhost.
        assert_eq!(matrix(&[HostKind::Pvhost], all(), &[ARCH]).len(), 4);
        assert_eq!(
            matrix(&[HostKind::Tcg], &[Workload::Scale], &[Arch::Loongarch64])[0].label(),
            "tcg loongarch64 smp 64 pv on scale"
        );
        let mutex: Vec<String> = matrix(
            &[HostKind::NestedKvm, HostKind::Pvhost],
            &[Workload::Mutex],
            &ARCHES,
        )
        .iter()
        .map(|c| c.label())
        .collect();
        assert_eq!(
            mutex,
            [
                "nested-kvm smp 4 pv on mutex",
                "nested-kvm smp 4 pv off mutex",
                "pvhost smp 4 pv on mutex",
                "pvhost smp 4 pv off mutex"
            ]
        );
        assert_eq!(
            matrix(&[HostKind::Pvhost], &[Workload::Uncontended], &ARCHES),
            []
        );
        assert_eq!(
            matrix(&[HostKind::NestedKvm], &[Workload::Overcommit], &ARCHES),
            []
        );
        assert_eq!(
            matrix(&[HostKind::NestedKvm], all(), &[Arch::Loongarch64]),
            []
        );
        let tcg16 = cell(HostKind::Tcg, 16, Pv::Off, Workload::Overcommit);
        assert_eq!(
            tcg16.command(0),
            "cargo xtask run --host tcg --smp 16 --app lockstorm --bootargs pv=off -- ms=300 slowpath=boot"
        );
        assert!(tcg16.overcommitted());
        assert_eq!(
            tcg16.host_label(0),
            "tcg smp 16 (16 vCPUs on this machine's 2 cores)"
        );
        let nested = cell(HostKind::NestedKvm, 4, Pv::On, Workload::Contended);
        assert_eq!(
            nested.host_label(2),
            "nested-kvm smp 4 (4 vCPUs on L1's 2 CPUs, 2 busy loops in L1 (--l1-load 2))"
        );
        assert!(!cell(HostKind::Tcg, 4, Pv::On, Workload::Contended).overcommitted());
    }

    #[test]
    fn mutex_cells_run_every_policy_on_threads() {
        let on = cell(HostKind::NestedKvm, 4, Pv::On, Workload::Mutex);
        assert_eq!(
            on.command(0),
            "cargo xtask run --host nested-kvm --smp 4 --app lockstorm -- kinds=mutex ms=300"
        );
        let off = cell(HostKind::Pvhost, 4, Pv::Off, Workload::Mutex);
        assert_eq!(
            off.bootargs().unwrap(),
            "app=lockstorm pv=off -- kinds=mutex ms=300"
        );
        assert_eq!(
            off.command(0),
            "cargo xtask run --host pvhost --pv off --steal periodic:10000,50,2500 --smp 4 --app lockstorm --bootargs pv=off -- kinds=mutex ms=300"
        );
    }

    #[test]
    fn pvhost_cells_steal_half_and_switch_pv_on_both_sides() {
        let on = cell(HostKind::Pvhost, 4, Pv::On, Workload::Contended);
        assert_eq!(
            on.host(0),
            Host::Pvhost(crate::pvhost::Settings {
                pv: Pv::On,
                offer: crate::pvhost::Offer::ALL,
                steal: "periodic:10000,50,2500",
                fault: "none",
            })
        );
        assert_eq!(
            on.command(0),
            "cargo xtask run --host pvhost --steal periodic:10000,50,2500 --smp 4 --app lockstorm -- ms=300 slowpath=boot"
        );
        let off = Cell { pv: Pv::Off, ..on };
        assert_eq!(
            off.host(0),
            Host::Pvhost(crate::pvhost::Settings {
                pv: Pv::Off,
                offer: crate::pvhost::Offer::ALL,
                steal: PVHOST_STEAL,
                fault: "none",
            })
        );
        assert_eq!(
            off.command(0),
            "cargo xtask run --host pvhost --pv off --steal periodic:10000,50,2500 --smp 4 --app lockstorm --bootargs pv=off -- ms=300 slowpath=boot"
        );
        assert_eq!(
            off.bootargs().unwrap(),
            "app=lockstorm pv=off -- ms=300 slowpath=boot"
        );
        assert_eq!(
            crate::pvhost::normalize_steal(PVHOST_STEAL).unwrap(),
            PVHOST_STEAL
        );
        let whats: Vec<String> = ratios(
            &matrix(&[HostKind::Pvhost], &[Workload::Contended], &ARCHES),
            &[],
            0,
        )
        .into_iter()
        .map(|r| r.what)
        .collect();
        assert_eq!(
            whats,
            [
                "pvhost smp 4 (half of each vCPU's time stolen, staggered: periodic:10000,50,2500): PV qspinlock / native qspinlock (pv=off), throughput",
                "pvhost loongarch64 smp 4 (half of each vCPU's time stolen, staggered: periodic:10000,50,2500): PV qspinlock / native qspinlock (pv=off), throughput"
            ]
        );
        let la = Cell {
            arch: Arch::Loongarch64,
            ..off
        };
        assert_eq!(
            la.command(0),
            "cargo xtask run --arch loongarch64 --host pvhost --pv off --steal periodic:10000,50,2500 --smp 4 --app lockstorm --bootargs pv=off -- ms=300 slowpath=boot"
        );
        assert!(la.overcommitted());
    }

    #[test]
    fn cells_boot_as_the_goals_ask() {
        let on = cell(HostKind::Tcg, 4, Pv::On, Workload::Contended);
        assert_eq!(
            on.bootargs().unwrap(),
            "app=lockstorm -- ms=300 slowpath=boot"
        );
        assert_eq!(on.host(3), Host::Tcg);
        assert_eq!(
            on.command(3),
            "cargo xtask run --host tcg --smp 4 --app lockstorm -- ms=300 slowpath=boot"
        );
        let off = cell(HostKind::NestedKvm, 4, Pv::Off, Workload::Uncontended);
        assert_eq!(
            off.bootargs().unwrap(),
            "app=lockstorm pv=off -- cpus=1 cs=0 out=0 ms=200"
        );
        assert_eq!(
            off.host(0),
            Host::NestedKvm(Settings {
                pv: Pv::Off,
                l1_load: 0
            })
        );
        assert_eq!(
            off.command(2),
            "cargo xtask run --host nested-kvm --pv off --l1-load 2 --smp 4 --app lockstorm --bootargs pv=off -- cpus=1 cs=0 out=0 ms=200"
        );
    }

    #[test]
    fn judging_a_run() {
        let contended = cell(HostKind::Tcg, 4, Pv::On, Workload::Contended);
        let (samples, problems) = judge(contended, Outcome::Exited(0), &console(&KINDS));
        assert_eq!(samples.len(), 4);
        assert_eq!(problems, [""; 0]);

        let (_, problems) = judge(
            contended,
            Outcome::Exited(1),
            &console(&["tas", "tas", "mcs", "qspinlock", "new"]),
        );
        assert_eq!(
            problems,
            [
                "guest exited with status 1",
                "2 result lines for tas, expected one",
                "no result line for ticket"
            ]
        );

        let uncontended = cell(HostKind::Tcg, 4, Pv::On, Workload::Uncontended);
        let lost = console(&KINDS).replacen("lost=0", "lost=2", 1);
        let (samples, problems) = judge(uncontended, Outcome::Exited(0), &lost);
        assert_eq!(samples.len(), 4);
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert_eq!(problems[0], "tas: cpus=4, expected 1");
        assert_eq!(problems[1], "tas: 2 lost updates");

        let malformed = console(&KINDS).replacen("acquisitions=10", "acquisitions=x", 1);
        let (samples, problems) = judge(contended, Outcome::Exited(0), &malformed);
        assert_eq!(samples.len(), 3);
        assert!(
            problems[0].starts_with("malformed result line"),
            "{problems:?}"
        );
        assert_eq!(problems[1], "no result line for tas");
    }

    #[test]
    fn ratios_name_what_the_goals_ask_for() {
        let cells = matrix(
            &[HostKind::Tcg, HostKind::NestedKvm],
            &[Workload::Contended, Workload::Uncontended],
            &ARCHES,
        );
        let whats: Vec<(String, Option<f64>)> = ratios(&cells, &[], 0)
            .into_iter()
            .map(|r| (r.what, r.overhead_goal))
            .collect();
        assert_eq!(
            whats,
            [
                ("tcg smp 4: qspinlock throughput, PV on / PV off".to_owned(), None),
                ("tcg: uncontended qspinlock lock+unlock cost, PV on / PV off".to_owned(), None),
                ("tcg smp 2 (no overcommit): PV-on overhead, qspinlock throughput".to_owned(), Some(0.02)),
                ("nested-kvm smp 4 (4 vCPUs on L1's 2 CPUs): PV qspinlock / native qspinlock (pv=off), throughput".to_owned(), None),
                ("nested-kvm: uncontended qspinlock lock+unlock cost, PV on / PV off".to_owned(), None),
            ]
        );
    }

    #[test]
    fn mutex_ratios_compare_policies_within_each_cell() {
        let cells = matrix(
            &[HostKind::NestedKvm, HostKind::Pvhost],
            &[Workload::Mutex],
            &ARCHES,
        );
        let ratios = ratios(&cells, &[], 0);
        let whats: Vec<&str> = ratios.iter().map(|r| r.what.as_str()).collect();
        assert_eq!(
            whats,
            [
                "nested-kvm smp 4 pv on (4 vCPUs on L1's 2 CPUs; KVM offers no preempted flag on arm64: the check sees no preemption): mutex spin-owner-pv / spin-owner, throughput",
                "nested-kvm smp 4 pv on (4 vCPUs on L1's 2 CPUs; KVM offers no preempted flag on arm64: the check sees no preemption): mutex spin-owner-pv / sleep, throughput",
                "nested-kvm smp 4 pv off (4 vCPUs on L1's 2 CPUs; pv=off: the check sees no preemption): mutex spin-owner-pv / spin-owner, throughput",
                "nested-kvm smp 4 pv off (4 vCPUs on L1's 2 CPUs; pv=off: the check sees no preemption): mutex spin-owner-pv / sleep, throughput",
                "pvhost smp 4 pv on (steal periodic:10000,50,2500, reported by PV lock and PV sched: the check sees it): mutex spin-owner-pv / spin-owner, throughput",
                "pvhost smp 4 pv on (steal periodic:10000,50,2500, reported by PV lock and PV sched: the check sees it): mutex spin-owner-pv / sleep, throughput",
                "pvhost smp 4 pv off (pv=off: the check sees no preemption): mutex spin-owner-pv / spin-owner, throughput",
                "pvhost smp 4 pv off (pv=off: the check sees no preemption): mutex spin-owner-pv / sleep, throughput",
            ]
        );
        // Both sides are lines of the same cell.
        assert_eq!(
            (ratios[4].numerator, ratios[4].denominator.unwrap()),
            (
                Series {
                    cell: 2,
                    kind: "mutex",
                    slowpath: Some("spin-owner-pv")
                },
                Series {
                    cell: 2,
                    kind: "mutex",
                    slowpath: Some("spin-owner")
                }
            )
        );
        assert_eq!(
            cell(HostKind::Tcg, 4, Pv::On, Workload::Mutex).label_without_workload(),
            "tcg smp 4 pv on"
        );
        assert_eq!(
            mutex_context(cell(HostKind::Tcg, 4, Pv::On, Workload::Mutex), 0),
            "no hypervisor: the check sees no preemption"
        );
    }

    fn mutex_console(policies: &[&str]) -> String {
        let mut text = String::from("[   0.1 0] lodger 0.1.0 (aarch64), entered at EL1\r\n");
        for policy in policies {
            text.push_str(&OK.replace(
                "kind=KIND slowpath=-",
                &format!("kind=mutex slowpath={policy}"),
            ));
            text.push_str(" threads=4 spun=1 slept=2 preempted_owner=0\r\n");
        }
        text.push_str("[[lodger:exit=0]]\r\n");
        text
    }

    #[test]
    fn judging_a_mutex_run() {
        let mutex = cell(HostKind::Pvhost, 4, Pv::On, Workload::Mutex);
        let all = mutex_console(&MUTEX_POLICIES);
        let (samples, problems) = judge(mutex, Outcome::Exited(0), &all);
        assert_eq!(samples.len(), 3);
        assert_eq!(problems, [""; 0]);
        assert_eq!(samples[2].mutex.unwrap().slept, 2);

        let (_, problems) = judge(
            mutex,
            Outcome::Exited(0),
            &mutex_console(&["sleep", "sleep", "spin-owner-pv"]),
        );
        assert_eq!(
            problems,
            [
                "2 result lines for mutex sleep, expected one",
                "no result line for mutex spin-owner"
            ]
        );

        let bare = all.replace(" threads=4 spun=1 slept=2 preempted_owner=0", "");
        let lost = all.replacen("lost=0", "lost=3", 1);
        let (_, problems) = judge(mutex, Outcome::Exited(1), &lost);
        assert_eq!(
            problems,
            ["guest exited with status 1", "mutex sleep: 3 lost updates"]
        );
        let (_, problems) = judge(mutex, Outcome::Exited(0), &bare);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert_eq!(
            problems[0],
            "mutex sleep: no spun/slept/preempted_owner counters"
        );
        // A spinlock boot's lines are not a mutex boot's.
        let (_, problems) = judge(mutex, Outcome::Exited(0), &console(&KINDS));
        assert_eq!(problems[0], "no result line for mutex sleep");
    }

    #[test]
    fn progress_lines_estimate_what_is_left_from_the_boots_so_far() {
        let cells = matrix(&[HostKind::Tcg], &[Workload::Contended], &ARCHES);
        let options = Options {
            reps: 5,
            max_reps: 15,
            quick: false,
            hosts: vec![HostKind::Tcg],
            workloads: vec![Workload::Contended],
            arches: vec![ARCH],
            l1_load: 0,
            timeout: None,
            image: None,
            verbose: false,
            output: BENCH_OUTPUT,
        };
        let run = |cell, secs| RunRecord {
            seq: 0,
            rep: 0,
            cell,
            wall: Duration::from_secs(secs),
            outcome: String::new(),
            samples: Vec::new(),
            error: None,
            console_tail: None,
            steal: None,
        };
        // 4 cells; after cells 0 and 1 of round 1 (2 s and 4 s a boot),
        // cells 2 and 3 still at their estimate (1.5 s).
        let runs = [run(0, 2), run(1, 4)];
        let line = progress(&cells, &runs, 2, 0, 5, &options, Duration::from_secs(6));
        assert_eq!(
            line,
            "bench: tcg smp 2 pv on contended: round 1/5, boot 3; 6 s elapsed, about 39 s left (up to 90 s more if it grows to 15 rounds)"
        );
        let line = progress(&cells, &runs, 0, 7, 8, &options, Duration::from_secs(300));
        assert!(
            line.starts_with("bench: tcg smp 4 pv on contended: round 8/15 (growing), boot 3; 5.0 min elapsed, about 9 s left (up to"),
            "{line}"
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\r\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a", 5), "a\n");
        assert_eq!(tail("", 5), "");
    }
}
