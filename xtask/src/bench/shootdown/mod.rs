//! `cargo xtask bench --suite shootdown`: what a TLB shootdown costs against
//! the vCPU count, the `shootdown` app (apps/src/shootdown.rs) per cell.
//!
//! Cells, for each vCPU count of `--cpus`:
//!
//! | series | host | how the others are flushed |
//! |---|---|---|
//! | `aarch64-tlbi` (the baseline) | TCG | broadcast `tlbi ...is`, no IPI |
//! | `la-tcg-iocsr` | TCG | one IOCSR IPI per target |
//! | `la-pvhost-pv` | LoongArch pvhost | FUNC_IPI multicast, one call per 128 CPUs |
//! | `la-pvhost-iocsr` | LoongArch pvhost, `pv.ipi=off` | one IOCSR IPI per target |
//!
//! A count above what the kernel supports (`arch::MAX_CPUS`, read from its
//! source) is listed as skipped, not booted. Rounds are paired as in the
//! locks suite: each round boots every cell once, in order, so a ratio of
//! two cells (IOCSR over PV at one count) is taken within a round; figures
//! are medians over rounds with their spread, ratios with a 95% bootstrap
//! interval ([`super::ci`]). Per cell: the app's p50/p99 latency and
//! shootdowns per second, the guest's count of IPIs and hypercalls per
//! shootdown and, under pvhost, the host's ground truth of them (every
//! vCPU's `hvcl_ipi` and `ipis_iocsr` over the guest's shootdowns, less
//! what a boot of the same cell with `rounds=0` counted: the IPIs of the
//! boot, of the app's threads and of its setup, which are not the
//! shootdowns' and would swamp them in a short run).
//!
//! A benchmark measures; it fails only when a boot fails (or reads a stale
//! entry), never on its figures.

mod render;

use std::fs;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::ci::Ci;
use super::stats::Spread;
use crate::arch::Arch;
use crate::host::{Host, HostKind, Preparations, Pv};
use crate::qemu::{self, Boot, Outcome};
use crate::{build, cmd, guest, progress};

const APP: &str = "shootdown";
/// The goal: IOCSR's p50 over PV's at least this, from this many vCPUs on.
pub const GOAL_RATIO: f64 = 2.0;
pub const GOAL_FROM_CPUS: u16 = 32;

/// The series of the table above.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Series {
    Aarch64Tlbi,
    LaTcgIocsr,
    LaPvhostPv,
    LaPvhostIocsr,
}

impl Series {
    pub const ALL: [Series; 4] = [
        Series::Aarch64Tlbi,
        Series::LaTcgIocsr,
        Series::LaPvhostPv,
        Series::LaPvhostIocsr,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Series::Aarch64Tlbi => "aarch64-tlbi",
            Series::LaTcgIocsr => "la-tcg-iocsr",
            Series::LaPvhostPv => "la-pvhost-pv",
            Series::LaPvhostIocsr => "la-pvhost-iocsr",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Series::Aarch64Tlbi => "aarch64, TCG, broadcast TLBI (baseline)",
            Series::LaTcgIocsr => "LoongArch, TCG, IOCSR IPI",
            Series::LaPvhostPv => "LoongArch, pvhost, PV IPI",
            Series::LaPvhostIocsr => "LoongArch, pvhost, IOCSR IPI (pv.ipi=off)",
        }
    }

    fn arch(self) -> Arch {
        match self {
            Series::Aarch64Tlbi => Arch::Aarch64,
            _ => Arch::Loongarch64,
        }
    }

    fn host(self) -> HostKind {
        match self {
            Series::Aarch64Tlbi | Series::LaTcgIocsr => HostKind::Tcg,
            Series::LaPvhostPv | Series::LaPvhostIocsr => HostKind::Pvhost,
        }
    }

    fn bootargs(self) -> &'static str {
        match self {
            Series::LaPvhostIocsr => "pv.ipi=off",
            _ => "",
        }
    }
}

/// One kind of boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Cell {
    pub series: Series,
    pub cpus: u16,
}

impl Cell {
    fn host(self) -> Host {
        match self.series.host() {
            HostKind::Pvhost => Host::Pvhost(crate::pvhost::Settings {
                pv: Pv::On,
                offer: crate::pvhost::Offer::ALL,
                steal: "none",
                fault: "none",
            }),
            _ => Host::Tcg,
        }
    }
}

/// The vCPU counts of a full run.
pub const DEFAULT_CPUS: [u16; 5] = [2, 8, 32, 128, 256];

/// The suite's options (from `cargo xtask bench`).
pub struct Options {
    pub reps: usize,
    pub quick: bool,
    pub hosts: Vec<HostKind>,
    pub cpus: Vec<u16>,
    pub ms: u64,
    pub timeout: Option<Duration>,
    pub verbose: bool,
}

/// One boot's result line, with the host's ground truth.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub shootdowns: f64,
    pub per_sec: f64,
    pub p50_ns: f64,
    pub p99_ns: f64,
    pub targets_per: f64,
    pub lazy_per: f64,
    pub ipis_per: f64,
    pub hypercalls_per: f64,
    pub broadcasts_per: f64,
    pub preempted_waits: f64,
    pub stale: f64,
    /// Host: every vCPU's FUNC_IPI calls over the guest's shootdowns.
    pub truth_hypercalls_per: Option<f64>,
    /// Host: IOCSR IPIs every vCPU received over the guest's shootdowns.
    pub truth_ipis_per: Option<f64>,
}

/// The host's counts of a `rounds=0` boot of a pvhost cell: what is not
/// the measured shootdowns'.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Baseline {
    pub hvcl_ipi: f64,
    pub ipis_iocsr: f64,
}

impl Baseline {
    fn of(console: &str) -> Option<Self> {
        let count = |key| {
            crate::steal::truth_count(console, key, None)
                .ok()
                .map(|n| n as f64)
        };
        Some(Self {
            hvcl_ipi: count("hvcl_ipi")?,
            ipis_iocsr: count("ipis_iocsr")?,
        })
    }
}

/// Parses the `shootdown:` line of `console`; the host's counts less
/// `baseline`.
pub fn parse(console: &str, baseline: Baseline) -> Result<Sample> {
    let line = console
        .lines()
        .find(|l| l.starts_with("shootdown: arch="))
        .context("no `shootdown:` result line")?;
    let field = |key: &str| -> Result<f64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .with_context(|| format!("the result line has no {key}="))?
            .parse::<f64>()
            .with_context(|| format!("{key}= is not a number"))
    };
    let shootdowns = field("shootdowns")?;
    let truth = |key, less: f64| {
        crate::steal::truth_count(console, key, None)
            .ok()
            .map(|n| (n as f64 - less).max(0.0) / shootdowns.max(1.0))
    };
    Ok(Sample {
        shootdowns,
        per_sec: field("per_sec")?,
        p50_ns: field("p50_ns")?,
        p99_ns: field("p99_ns")?,
        targets_per: field("targets_per")?,
        lazy_per: field("lazy_per")?,
        ipis_per: field("ipis_per")?,
        hypercalls_per: field("hypercalls_per")?,
        broadcasts_per: field("broadcasts_per")?,
        preempted_waits: field("preempted_waits")?,
        stale: field("stale")?,
        truth_hypercalls_per: truth("hvcl_ipi", baseline.hvcl_ipi),
        truth_ipis_per: truth("ipis_iocsr", baseline.ipis_iocsr),
    })
}

/// One boot.
#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    pub rep: usize,
    pub cell: usize,
    pub wall_s: f64,
    pub sample: Option<Sample>,
    pub error: Option<String>,
}

/// A cell's figures over the rounds that succeeded.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub cell: usize,
    pub p50_ns: Option<Ci>,
    pub p50_spread: Option<Spread>,
    pub p99_ns: Option<Spread>,
    pub per_sec: Option<Spread>,
    pub ipis_per: Option<Spread>,
    pub hypercalls_per: Option<Spread>,
    pub broadcasts_per: Option<Spread>,
    pub truth_hypercalls_per: Option<Spread>,
    pub truth_ipis_per: Option<Spread>,
}

/// IOCSR's p50 over PV's at one count, per round.
#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    pub cpus: u16,
    pub numerator: Series,
    pub denominator: Series,
    pub ci: Option<Ci>,
    /// Met / not met / inconclusive against [`GOAL_RATIO`] (counts from
    /// [`GOAL_FROM_CPUS`] on only).
    pub verdict: Option<super::ci::Verdict>,
}

pub struct Report {
    pub date: String,
    pub command: String,
    pub git: String,
    pub reps: usize,
    pub quick: bool,
    pub ms: u64,
    pub kernel_cpus: u16,
    pub cells: Vec<Cell>,
    pub skipped: Vec<Cell>,
    /// Per cell: the host's counts of its `rounds=0` boot (pvhost only).
    pub baselines: Vec<Option<Baseline>>,
    pub runs: Vec<RunRecord>,
    pub summaries: Vec<Summary>,
    pub ratios: Vec<Ratio>,
    pub wall: Duration,
}

/// The kernel's `MAX_CPUS`, read from its source (the one place it is
/// set), so the suite follows it without a second constant.
pub fn kernel_cpus() -> Result<u16> {
    let path = cmd::workspace_root().join("arch/src/lib.rs");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_max_cpus(&text).context("arch/src/lib.rs has no `pub const MAX_CPUS: usize = N;`")
}

fn parse_max_cpus(text: &str) -> Option<u16> {
    let rest = text.split("pub const MAX_CPUS: usize =").nth(1)?;
    rest.split(';').next()?.trim().replace('_', "").parse().ok()
}

/// Every cell of `hosts` x `cpus`, in round order, and those above `limit`.
pub fn matrix(hosts: &[HostKind], cpus: &[u16], limit: u16) -> (Vec<Cell>, Vec<Cell>) {
    let mut run = Vec::new();
    let mut skipped = Vec::new();
    for &n in cpus {
        for series in Series::ALL {
            if !hosts.contains(&series.host()) {
                continue;
            }
            let cell = Cell { series, cpus: n };
            if n > limit {
                skipped.push(cell);
            } else {
                run.push(cell);
            }
        }
    }
    (run, skipped)
}

pub fn main(options: Options) -> Result<ExitCode> {
    let limit = kernel_cpus()?;
    let (cells, skipped) = matrix(&options.hosts, &options.cpus, limit);
    for cell in &skipped {
        eprintln!(
            "bench: shootdown: {} at {} vCPUs skipped: kernel supports {limit} CPUs",
            cell.series.name(),
            cell.cpus
        );
    }
    if cells.is_empty() {
        bail!("no cell to run: every --cpus count is above the kernel's {limit}");
    }
    let report = execute(cells, skipped, limit, &options)?;
    let dir = cmd::target_dir().join("bench");
    let files = render::write(&report, &dir, "shootdown")?;
    println!("{}", files.markdown_text);
    eprintln!(
        "bench: shootdown: wrote {}, {} and {}",
        files.markdown.display(),
        files.json.display(),
        files.svg.display()
    );
    let failed = report.runs.iter().filter(|r| r.error.is_some()).count();
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("bench: shootdown: {failed} boots failed (see the report)");
        ExitCode::FAILURE
    })
}

fn execute(cells: Vec<Cell>, skipped: Vec<Cell>, limit: u16, o: &Options) -> Result<Report> {
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = format!("cargo xtask {}", cmd::quote(&args));
    // A copy per arch: a build during the run would change the guest.
    let dir = cmd::target_dir().join("bench");
    fs::create_dir_all(&dir)?;
    let mut images = Vec::new();
    for arch in [Arch::Aarch64, Arch::Loongarch64] {
        if cells.iter().any(|c| c.series.arch() == arch) {
            let copy = dir.join(format!("shootdown-guest-{}.elf", arch.name()));
            fs::copy(build::image(arch)?, &copy)?;
            images.push((arch, copy));
        }
    }
    let start = Instant::now();
    // A live line on a terminal (not while `--verbose` streams consoles),
    // else a line per boot ([`progress::Step`]).
    let step = progress::Step::with_mode("bench: shootdown", progress::live() && !o.verbose);
    let baseline_boots = cells
        .iter()
        .filter(|c| c.series.host() == HostKind::Pvhost)
        .count();
    let total = (cells.len() * o.reps + baseline_boots) as u64;
    let mut booted = 0;
    let mut prep = Preparations::default();
    let image_of = |cell: Cell| {
        &images
            .iter()
            .find(|(a, _)| *a == cell.series.arch())
            .unwrap()
            .1
    };
    let mut baselines = Vec::new();
    for &cell in &cells {
        baselines.push(if cell.series.host() == HostKind::Pvhost {
            booted += 1;
            let left = progress::linear_left(booted - 1, total, start.elapsed());
            step.count(booted - 1, Some(total), left);
            step.message(&format!(
                "{} at {} vCPUs, rounds=0",
                cell.series.name(),
                cell.cpus
            ));
            step.plain(&format!(
                "bench: shootdown: {} at {} vCPUs, rounds=0 (the host's count of what is not shootdowns)",
                cell.series.name(),
                cell.cpus
            ));
            match console(cell, image_of(cell), "rounds=0", o, &mut prep) {
                Ok(console) => Baseline::of(&console),
                Err(e) => {
                    progress::say(&format!("bench: shootdown: the rounds=0 boot FAILED: {e:#}"));
                    None
                }
            }
        } else {
            None
        });
    }
    let mut runs = Vec::new();
    for rep in 0..o.reps {
        for (index, &cell) in cells.iter().enumerate() {
            booted += 1;
            let left = progress::linear_left(booted - 1, total, start.elapsed());
            step.count(booted - 1, Some(total), left);
            step.message(&format!(
                "round {}/{}, {} at {} vCPUs",
                rep + 1,
                o.reps,
                cell.series.name(),
                cell.cpus
            ));
            step.plain(&format!(
                "bench: shootdown: round {}/{}, {} at {} vCPUs ({:.0} s so far)",
                rep + 1,
                o.reps,
                cell.series.name(),
                cell.cpus,
                start.elapsed().as_secs_f64()
            ));
            let began = Instant::now();
            let baseline = baselines[index].unwrap_or_default();
            let ms = format!("ms={}", o.ms);
            let result = console(cell, image_of(cell), &ms, o, &mut prep)
                .and_then(|console| judge(&console, baseline));
            let record = RunRecord {
                rep,
                cell: index,
                wall_s: began.elapsed().as_secs_f64(),
                error: result.as_ref().err().map(|e| format!("{e:#}")),
                sample: result.ok(),
            };
            match (&record.sample, &record.error) {
                (Some(s), _) => step.plain(&format!(
                    "bench: shootdown: ok, p50 {:.0} us, {:.0}/s",
                    s.p50_ns / 1e3,
                    s.per_sec
                )),
                (None, Some(why)) => progress::say(&format!("bench: shootdown: run FAILED: {why}")),
                (None, None) => {}
            }
            runs.push(record);
        }
    }
    let summaries = (0..cells.len()).map(|i| summarize(&runs, i)).collect();
    let ratios = ratios(&cells, &runs);
    Ok(Report {
        date,
        command,
        git: git_version(),
        reps: o.reps,
        quick: o.quick,
        ms: o.ms,
        kernel_cpus: limit,
        cells,
        skipped,
        baselines,
        runs,
        summaries,
        ratios,
        wall: start.elapsed(),
    })
}

/// Boots `cell` once with the app's argument `arg`; its console, if it
/// exited 0.
fn console(
    cell: Cell,
    image: &std::path::Path,
    arg: &str,
    o: &Options,
    prep: &mut Preparations,
) -> Result<String> {
    let bootargs = guest::bootargs(APP, cell.series.bootargs(), &[arg.to_owned()])?;
    let host = cell.host();
    let smp = cell.cpus;
    let boot = Boot {
        arch: cell.series.arch(),
        host,
        smp,
        mem: qemu::GUEST_MEMORY,
        el2: false,
        image: image.to_owned(),
        bootargs,
    };
    let launch = boot.command(prep)?;
    let timeout = o.timeout.unwrap_or(host.default_timeout());
    let run = qemu::run(launch, timeout, o.verbose)?;
    if run.outcome != Outcome::Exited(0) {
        let tail: Vec<&str> = run.console.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{}; console ends:\n{}", run.outcome, tail.join("\n"));
    }
    Ok(run.console)
}

/// The sample of a run's console; a stale read is a failed run.
fn judge(console: &str, baseline: Baseline) -> Result<Sample> {
    let sample = parse(console, baseline)?;
    if sample.stale > 0.0 {
        bail!("{} stale reads", sample.stale);
    }
    Ok(sample)
}

fn values(runs: &[RunRecord], cell: usize, f: impl Fn(&Sample) -> Option<f64>) -> Vec<f64> {
    runs.iter()
        .filter(|r| r.cell == cell)
        .filter_map(|r| r.sample.as_ref().and_then(&f))
        .collect()
}

fn summarize(runs: &[RunRecord], cell: usize) -> Summary {
    let spread = |f: &dyn Fn(&Sample) -> Option<f64>| Spread::of(&values(runs, cell, f));
    Summary {
        cell,
        p50_ns: Ci::of(&values(runs, cell, |s| Some(s.p50_ns))),
        p50_spread: spread(&|s| Some(s.p50_ns)),
        p99_ns: spread(&|s| Some(s.p99_ns)),
        per_sec: spread(&|s| Some(s.per_sec)),
        ipis_per: spread(&|s| Some(s.ipis_per)),
        hypercalls_per: spread(&|s| Some(s.hypercalls_per)),
        broadcasts_per: spread(&|s| Some(s.broadcasts_per)),
        truth_hypercalls_per: spread(&|s| s.truth_hypercalls_per),
        truth_ipis_per: spread(&|s| s.truth_ipis_per),
    }
}

/// Per count: la-pvhost-iocsr over la-pvhost-pv (the goal's), and
/// la-tcg-iocsr over aarch64-tlbi (against the baseline), p50 per round.
fn ratios(cells: &[Cell], runs: &[RunRecord]) -> Vec<Ratio> {
    let find = |series, cpus| cells.iter().position(|c| *c == Cell { series, cpus });
    let mut out = Vec::new();
    let mut counts: Vec<u16> = cells.iter().map(|c| c.cpus).collect();
    counts.dedup();
    for cpus in counts {
        for (num, den) in [
            (Series::LaPvhostIocsr, Series::LaPvhostPv),
            (Series::LaTcgIocsr, Series::Aarch64Tlbi),
        ] {
            let (Some(n), Some(d)) = (find(num, cpus), find(den, cpus)) else {
                continue;
            };
            let per_round: Vec<f64> = (0..=runs.iter().map(|r| r.rep).max().unwrap_or(0))
                .filter_map(|rep| {
                    let p50 = |cell| {
                        runs.iter()
                            .find(|r| r.rep == rep && r.cell == cell)
                            .and_then(|r| r.sample.as_ref())
                            .map(|s| s.p50_ns)
                    };
                    let (a, b) = (p50(n)?, p50(d)?);
                    (b > 0.0).then(|| a / b)
                })
                .collect();
            let ci = Ci::of(&per_round);
            let goal = num == Series::LaPvhostIocsr && cpus >= GOAL_FROM_CPUS;
            out.push(Ratio {
                cpus,
                numerator: num,
                denominator: den,
                verdict: ci.filter(|_| goal).map(|ci| ci.at_least(GOAL_RATIO)),
                ci,
            });
        }
    }
    out
}

fn git_version() -> String {
    let mut git = std::process::Command::new("git");
    git.current_dir(cmd::workspace_root())
        .args(["rev-parse", "--short=12", "HEAD"]);
    cmd::output(&mut git).map_or_else(|_| "unknown".into(), |s| s.trim().to_owned())
}

#[cfg(test)]
mod tests;
