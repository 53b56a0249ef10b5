//! `cargo xtask demo`: what lodger is for, in about a minute. `lockstorm`
//! with PV on and with PV off, side by side, on one host: a small cell set
//! of the lock benchmark ([`super::locks`]): the spinlocks contended
//! (`ms=300 slowpath=boot`) and the sleeping mutex (`kinds=mutex ms=300`),
//! each PV on and off, booted in paired rounds (3; `--quick` 1) with the
//! bench's machinery: its boots and checks, summaries, ratios with their
//! bootstrap CIs, and its report, written to `target/demo/demo.{md,json,svg}`.
//!
//! It prints a short table, a row per lock kind and mutex spin policy:
//! throughput PV on and off, their ratio per round (median, min..max, and
//! the 95% CI from 3 rounds on), fairness, p99 wait, and the steal the boot
//! saw. The steal comes from pvhost's ground-truth lines (`pvhost: cpu=N
//! preemptions=K stolen_ns=S ...`, printed after the guest exits), the
//! only account of it on the console: `lockstorm` prints none, and TCG and
//! nested KVM report none.
//!
//! The default is pvhost (needs only QEMU) with the suite's staggered half
//! steal ([`PVHOST_STEAL`]), aarch64, 4 vCPUs; `--host`, `--arch`, `--smp`
//! and `--steal` run the same demo elsewhere. A combination that cannot run
//! (pvhost or nested-kvm with loongarch64, `--steal` off pvhost) is a bad
//! command line: exit 2. A failed boot: exit 1, after the table.

use std::fmt::Write as _;
use std::path::Path;

use crate::qemu::MAX_SMP;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

use super::locks::{
    self, Cell, Done, Options, Output, Ratio, Report, Workload, KINDS, MUTEX, MUTEX_POLICIES,
    PVHOST_STEAL,
};
use super::render::{plural, rate, sig3, time};
use super::stats::{self, Metric, Series, Spread};
use super::BootFlags;
use crate::arch::Arch;
use crate::guest;
use crate::host::{Host, HostKind, Pv, MAX_L1_LOAD};

/// Paired rounds by default: the fewest that give a CI.
const REPS: u32 = 3;
/// The demo's files: `target/demo/demo.{md,json,svg}`.
pub const OUTPUT: Output = Output {
    tag: "demo",
    stem: "demo",
};
/// The workloads of the demo's cells, in the order each round boots them.
const WORKLOADS: [Workload; 2] = [Workload::Contended, Workload::Mutex];

#[derive(clap::Args)]
pub struct Args {
    /// Where the guest runs.
    #[arg(long, value_enum, default_value_t = HostKind::Pvhost)]
    host: HostKind,
    /// Guest architecture.
    #[arg(long, value_enum, default_value_t = Arch::Aarch64)]
    arch: Arch,
    /// vCPUs (1..=16).
    #[arg(long, default_value_t = locks::SMP, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_SMP)))]
    smp: u16,
    /// pvhost: the preemption schedule, as for `run --steal`
    /// [default: periodic:10000,50,2500, i.e. periodic:10ms,50%,2.5ms]
    #[arg(long, value_name = "POLICY")]
    steal: Option<String>,
    /// nested-kvm: busy loops in L1 next to the guest (see `run --l1-load`).
    #[arg(long, value_name = "K",
          value_parser = clap::value_parser!(u8).range(0..=i64::from(MAX_L1_LOAD)))]
    l1_load: Option<u8>,
    /// Paired rounds (boots per cell) [default: 3; with --quick 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20))]
    reps: Option<u32>,
    /// One round: a smoke run (no CI).
    #[arg(long)]
    quick: bool,
    #[command(flatten)]
    boot: BootFlags,
}

pub fn main(args: Args) -> Result<ExitCode> {
    let (cells, options) = match plan(&args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("xtask: error: demo: {e:#}");
            return Ok(ExitCode::from(guest::EXIT_BAD_COMMAND_LINE));
        }
    };
    let done = run(cells, &options)?;
    print!("{}", table(&done.report));
    let show = |path: &Path| {
        let root = crate::cmd::workspace_root();
        path.strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    println!(
        "full report: {} (and {}); plot: {}",
        show(&done.files.markdown),
        show(&done.files.json),
        show(&done.files.svg)
    );
    Ok(done.finish(&options))
}

/// The demo's cells and the bench's options for them, checked: the host
/// must take the settings given and run the architecture.
fn plan(args: &Args) -> Result<(Vec<Cell>, Options)> {
    let reps = match (args.reps, args.quick) {
        (None, false) => REPS,
        (None, true) => 1,
        (Some(n), false) => n,
        (Some(n), true) => bail!("--quick is one round: drop --reps {n} or --quick"),
    };
    let steal = match (args.host, &args.steal) {
        (HostKind::Pvhost, None) => Some(PVHOST_STEAL),
        (_, steal) => steal.as_deref(),
    };
    let host = Host::from_args(args.host, None, args.l1_load, steal)?;
    host.check(args.arch, false).map_err(|e| {
        anyhow!(
            "{} cannot run the demo: {e:#} (--host tcg runs every --arch)",
            locks::host_name(args.host)
        )
    })?;
    let steal = match host {
        Host::Pvhost(settings) => settings.steal,
        Host::Tcg | Host::NestedKvm(_) | Host::Kvm(_) => PVHOST_STEAL,
    };
    let cells = cells(args.host, args.arch, args.smp, steal);
    let options = Options {
        reps: reps as usize,
        max_reps: reps as usize,
        quick: args.quick || reps == 1,
        hosts: vec![args.host],
        workloads: WORKLOADS.to_vec(),
        arches: vec![args.arch],
        l1_load: args.l1_load.unwrap_or(0),
        timeout: args.boot.timeout.map(Duration::from_secs),
        image: args.boot.image.clone(),
        verbose: args.boot.verbose,
        output: OUTPUT,
    };
    Ok((cells, options))
}

/// The spinlocks contended and the mutex, each PV on then off.
fn cells(host: HostKind, arch: Arch, smp: u16, steal: &'static str) -> Vec<Cell> {
    WORKLOADS
        .iter()
        .flat_map(|&workload| {
            [Pv::On, Pv::Off].map(|pv| Cell {
                host,
                smp,
                pv,
                workload,
                arch,
                steal,
            })
        })
        .collect()
}

/// Boots the cells, swaps the bench's ratios for the demo's (PV on / off
/// per row) and writes the report.
fn run(cells: Vec<Cell>, options: &Options) -> Result<Done> {
    let mut report = locks::execute(cells, options)?;
    report.ratios = rows(&report.cells)
        .into_iter()
        .map(|row| row.ratio(&report))
        .collect();
    Done::write(report, options)
}

/// One line of the table: a lock kind (or the mutex under one policy) in
/// the PV-on cell and the PV-off cell of its workload.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Row {
    /// `tas`, ..., `mutex spin-owner-pv`.
    name: &'static str,
    on: Series,
    off: Series,
}

/// The rows: each spinlock kind, then the mutex per spin policy, where
/// both cells of its workload are among `cells`.
fn rows(cells: &[Cell]) -> Vec<Row> {
    let find = |workload, pv| {
        cells
            .iter()
            .position(|c| c.workload == workload && c.pv == pv)
    };
    let mut rows = Vec::new();
    let spinlocks = KINDS.iter().map(|&k| (Workload::Contended, k, None, k));
    let mutex = MUTEX_POLICIES
        .iter()
        .zip(["mutex sleep", "mutex spin-owner", "mutex spin-owner-pv"])
        .map(|(&policy, name)| (Workload::Mutex, MUTEX, Some(policy), name));
    for (workload, kind, slowpath, name) in spinlocks.chain(mutex) {
        let (Some(on), Some(off)) = (find(workload, Pv::On), find(workload, Pv::Off)) else {
            continue;
        };
        let series = |cell| Series {
            cell,
            kind,
            slowpath,
        };
        rows.push(Row {
            name,
            on: series(on),
            off: series(off),
        });
    }
    rows
}

impl Row {
    fn ratio(self, report: &Report) -> Ratio {
        let cell = report.cells[self.on.cell];
        Ratio::new(
            format!(
                "{} smp {}: {} throughput, PV on / PV off",
                cell.host_name(),
                cell.smp,
                self.name
            ),
            Metric::PerSec,
            self.on,
            Some(self.off),
            &report.runs,
        )
    }
}

/// `metric` of `series`: the median over its successful runs.
fn median(report: &Report, series: Series, metric: Metric) -> Option<f64> {
    Spread::of(&stats::per_round(&report.runs, series, metric)).map(|s| s.median)
}

/// The steal the runs of `cell` saw (pvhost's): the median share of host
/// time stolen per vCPU, and of the time per vCPU.
fn steal(report: &Report, cell: usize) -> Option<(Option<f64>, f64)> {
    let seen: Vec<_> = report
        .runs
        .iter()
        .filter(|r| r.cell == cell && r.ok())
        .filter_map(|r| r.steal)
        .collect();
    let shares: Vec<f64> = seen
        .iter()
        .map(|s| s.share)
        .filter(|s| s.is_finite())
        .collect();
    let share = Spread::of(&shares).map(|s| s.median);
    let ns = Spread::of(&seen.iter().map(|s| s.stolen_ns).collect::<Vec<_>>())?;
    Some((share, ns.median))
}

/// `a / b`, `-` for a side without a value.
fn pair(on: Option<String>, off: Option<String>) -> String {
    let dash = || "-".to_owned();
    format!("{} / {}", on.unwrap_or_else(dash), off.unwrap_or_else(dash))
}

/// The printed table: a heading line, a row per [`Row`] and what its
/// columns are.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let Some(&first) = report.cells.first() else {
        return out;
    };
    let meta = &report.meta;
    let steal_note = match first.host {
        HostKind::Pvhost => format!(", steal {}", first.steal),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "\nlockstorm, PV on vs off: {} smp {} ({}{steal_note}), {}, {} boots in {:.0} s{}\n",
        first.host_name(),
        first.smp,
        first.arch.name(),
        plural(meta.reps, "paired round"),
        report.runs.len(),
        meta.wall.as_secs_f64(),
        if meta.quick { " (quick: no CI)" } else { "" }
    );
    let ci_shown = meta.reps >= 3;
    let ratios = rows(&report.cells);
    let body: Vec<Vec<String>> = ratios
        .iter()
        .zip(&report.ratios)
        .map(|(row, ratio)| {
            let fmt = |series, metric, f: fn(f64) -> String| median(report, series, metric).map(f);
            let p99 = |series: Series| {
                report
                    .groups
                    .iter()
                    .find(|g| g.cell == series.cell && series.matches(&g.kind, &g.slowpath))
                    .map(|g| time(g.p99_ns.median))
            };
            let seen = |series: Series| {
                steal(report, series.cell).map(|(share, ns)| {
                    let ns = time(ns).replace(' ', "");
                    share.map_or(ns.clone(), |share| format!("{:.0}% {ns}", share * 100.0))
                })
            };
            let x = |v: f64| format!("{}x", sig3(v));
            vec![
                row.name.to_owned(),
                fmt(row.on, Metric::PerSec, rate).unwrap_or_else(|| "-".into()),
                fmt(row.off, Metric::PerSec, rate).unwrap_or_else(|| "-".into()),
                ratio.spread.map_or("-".into(), |s| x(s.median)),
                ratio
                    .spread
                    .map_or("-".into(), |s| format!("{}..{}", x(s.min), x(s.max))),
                match ratio.ci {
                    Some(ci) if ci_shown => format!("{}..{}", x(ci.low), x(ci.high)),
                    _ => "-".into(),
                },
                pair(
                    fmt(row.on, Metric::Fairness, |v| format!("{v:.2}")),
                    fmt(row.off, Metric::Fairness, |v| format!("{v:.2}")),
                ),
                pair(p99(row.on), p99(row.off)),
                pair(seen(row.on), seen(row.off)),
            ]
        })
        .collect();
    let header = [
        "lock",
        "PV on acq/s",
        "PV off acq/s",
        "on/off",
        "min..max",
        "95% CI",
        "fairness on / off",
        "p99 wait on / off",
        "steal seen on / off",
    ];
    out.push_str(&aligned(&header, "lrrrrrrrr", &body));
    let _ = writeln!(
        out,
        "\non/off: the median of the per-round ratios of throughput (acquisitions/s, all CPUs), \
         min..max over the rounds{}; fairness: the smallest / largest per-CPU share; p99 wait: \
         from the lock call to holding it (guest clock); medians over the runs.",
        if ci_shown {
            ", 95% bootstrap CI of the median"
        } else {
            " (a CI needs 3 rounds or more)"
        }
    );
    let _ = writeln!(
        out,
        "{}",
        match first.host {
            HostKind::Pvhost => {
                "steal seen: pvhost's ground truth (its `pvhost: cpu=N ... stolen_ns=S` lines \
                 after the guest exits): per vCPU, the share of host time until the last \
                 preemption, and the time; one figure per boot, so the same for every row of a boot."
            }
            _ => {
                "steal seen: - (only pvhost prints the steal it injected; lockstorm prints no \
                 steal of its own, and this host reports none on the console)."
            }
        }
    );
    out
}

/// A Markdown table padded into columns (`align`: an `l` or `r` per
/// column), readable on a terminal as it is.
fn aligned(header: &[&str], align: &str, rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    let pad = |text: &str, i: usize| {
        let fill = " ".repeat(widths[i] - text.chars().count());
        if align.as_bytes().get(i) == Some(&b'r') {
            format!("{fill}{text}")
        } else {
            format!("{text}{fill}")
        }
    };
    let mut out = line(header.iter().enumerate().map(|(i, h)| pad(h, i)).collect());
    out.push_str(&line(
        widths
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let dashes = "-".repeat(w.max(3));
                if align.as_bytes().get(i) == Some(&b'r') {
                    format!("{}:", &dashes[1..])
                } else {
                    dashes
                }
            })
            .collect(),
    ));
    for row in rows {
        out.push_str(&line(
            row.iter().enumerate().map(|(i, c)| pad(c, i)).collect(),
        ));
    }
    out
}

/// `cargo xtask test`'s demo step: the demo with `--quick` on its default
/// host, its report checked for every cell and ratio.
pub fn test_step(image: Option<&Path>, timeout: Option<u64>) -> Result<(), String> {
    let args = Args {
        host: HostKind::Pvhost,
        arch: Arch::Aarch64,
        smp: locks::SMP,
        steal: None,
        l1_load: None,
        reps: None,
        quick: true,
        boot: BootFlags {
            timeout,
            image: image.map(Path::to_owned),
            verbose: false,
        },
    };
    let (cells, options) = plan(&args).map_err(|e| format!("{e:#}"))?;
    let done = run(cells, &options).map_err(|e| format!("{e:#}"))?;
    print!("{}", table(&done.report));
    let json = std::fs::read_to_string(&done.files.json)
        .map_err(|e| format!("reading {}: {e}", done.files.json.display()))?;
    let json: Value = serde_json::from_str(&json).map_err(|e| format!("demo.json: {e}"))?;
    let mut problems = check(&json);
    for file in [&done.files.markdown, &done.files.svg] {
        if !std::fs::metadata(file).is_ok_and(|m| m.len() > 0) {
            problems.push(format!("{} is missing or empty", file.display()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// What `demo.json` lacks: a successful run of each of the four cells, a
/// summary group of every row in its cell, and a PV on / off ratio with a
/// value for every row.
pub fn check(json: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let cells = list(&json["cells"]);
    if cells.len() != 4 {
        problems.push(format!("{} cells, expected 4", cells.len()));
    }
    let runs = list(&json["runs"]);
    let groups = list(&json["summary"]["groups"]);
    for (index, cell) in cells.iter().enumerate() {
        let what = format!(
            "cell {index} ({} pv {})",
            cell["workload"].as_str().unwrap_or("?"),
            cell["pv"].as_str().unwrap_or("?")
        );
        let of_cell = |v: &&Value| v["cell"].as_u64() == Some(index as u64);
        if !runs.iter().filter(of_cell).any(|r| r["ok"] == true) {
            problems.push(format!("{what}: no successful run"));
        }
        let expected: Vec<(&str, Option<&str>)> = match cell["workload"].as_str() {
            Some("mutex") => MUTEX_POLICIES.iter().map(|&p| (MUTEX, Some(p))).collect(),
            _ => KINDS.iter().map(|&k| (k, None)).collect(),
        };
        for (kind, policy) in expected {
            let found = groups
                .iter()
                .filter(of_cell)
                .any(|g| g["kind"] == kind && policy.is_none_or(|p| g["slowpath"] == p));
            if !found {
                problems.push(format!(
                    "{what}: no summary of {kind} {}",
                    policy.unwrap_or("")
                ));
            }
        }
    }
    let ratios = list(&json["summary"]["ratios"]);
    let wanted = KINDS.len() + MUTEX_POLICIES.len();
    if ratios.len() != wanted {
        problems.push(format!("{} ratios, expected {wanted}", ratios.len()));
    }
    for ratio in &ratios {
        let what = ratio["what"].as_str().unwrap_or("a ratio");
        let median = ratio["spread"]["median"].as_f64();
        if list(&ratio["paired"]).is_empty() || !median.is_some_and(|m| m.is_finite() && m > 0.0) {
            problems.push(format!("{what}: no value"));
        }
    }
    problems
}

#[cfg(test)]
mod tests;
