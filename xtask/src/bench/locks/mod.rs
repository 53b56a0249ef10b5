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

mod cells;
mod run;
#[cfg(test)]
mod tests;

pub use cells::{host_name, matrix, Cell, Workload};
pub use run::execute;

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
