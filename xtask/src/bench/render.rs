//! The suite's report, three ways, in `target/bench/`:
//!
//! * `locks.md`: how it ran, the ratios, then per host a table of the
//!   contended cells, one of the uncontended cells and one of the mutex
//!   cells (also printed);
//! * `locks.json`: every run with its raw result lines, and the summary;
//! * `locks.svg`: contended throughput per lock kind, PV on next to PV off,
//!   a panel per host and CPU count, log scale, whiskers from min to max;
//!   and a panel per host of the mutex per spin policy.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use serde_json::{json, Value};

use super::locks::{Cell, Report, Workload, KINDS, MUTEX, MUTEX_POLICIES, PVHOST_STEAL};
use super::stats::{Group, Series, Spread};
use crate::host::{HostKind, Pv};

/// The files written, and the Markdown (to print it too).
pub struct Files {
    pub markdown: PathBuf,
    pub json: PathBuf,
    pub svg: PathBuf,
    pub markdown_text: String,
}

pub fn write(report: &Report, dir: &Path) -> Result<Files> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = Files {
        markdown: dir.join("locks.md"),
        json: dir.join("locks.json"),
        svg: dir.join("locks.svg"),
        markdown_text: markdown(report),
    };
    let json = serde_json::to_string_pretty(&json(report))?;
    for (path, text) in [
        (&files.markdown, &files.markdown_text),
        (&files.json, &json),
        (&files.svg, &svg(report)?),
    ] {
        fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(files)
}

// ---------------------------------------------------------------- numbers

/// Three significant digits (fewer decimals for bigger numbers).
fn sig3(v: f64) -> String {
    let a = v.abs();
    if a >= 99.95 {
        format!("{v:.0}")
    } else if a >= 9.995 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A rate: `812`, `8.32k`, `178k`, `1.23M`.
fn rate(v: f64) -> String {
    if v.abs() >= 999_500.0 {
        format!("{}M", sig3(v / 1e6))
    } else if v.abs() >= 999.5 {
        format!("{}k", sig3(v / 1e3))
    } else {
        format!("{v:.0}")
    }
}

/// A rate on an axis, where the ticks are round: `1k`, `10M`, `2.5k`.
fn axis_rate(v: f64) -> String {
    let text = rate(v);
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    if digits.contains('.') {
        format!(
            "{}{unit}",
            digits.trim_end_matches('0').trim_end_matches('.')
        )
    } else {
        text
    }
}

/// A time given in ns: `448 ns`, `1.27 µs`, `20.9 ms`, `1.50 s`.
fn time(ns: f64) -> String {
    let a = ns.abs();
    if a >= 999.5e6 {
        format!("{} s", sig3(ns / 1e9))
    } else if a >= 999.5e3 {
        format!("{} ms", sig3(ns / 1e6))
    } else if a >= 999.5 {
        format!("{} µs", sig3(ns / 1e3))
    } else {
        format!("{ns:.0} ns")
    }
}

/// `1 rep`, `5 reps`.
fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

fn signed_percent(fraction: f64) -> String {
    format!("{:+.1}%", fraction * 100.0)
}

/// `min..max` of a spread, each through `f`.
fn range(s: &Spread, f: fn(f64) -> String) -> String {
    format!("{}..{}", f(s.min), f(s.max))
}

// ---------------------------------------------------------------- Markdown

fn host_title(host: HostKind) -> &'static str {
    match host {
        HostKind::Tcg => "tcg: QEMU TCG (aarch64), vCPUs as threads on this machine's 2 cores",
        HostKind::NestedKvm => {
            "nested-kvm: QEMU+KVM in an L1 Linux under TCG (aarch64), L1 has 2 CPUs"
        }
        HostKind::Pvhost => {
            "pvhost: lodger's EL2 host under TCG (aarch64), half of each vCPU's time stolen in windows staggered across CPUs"
        }
    }
}

/// A Markdown table; `align` has one `l` or `r` per column.
fn table(out: &mut String, header: &[&str], align: &str, rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let rule: Vec<&str> = align
        .chars()
        .map(|a| if a == 'r' { "---:" } else { "---" })
        .collect();
    let _ = writeln!(out, "|{}|", rule.join("|"));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
}

/// Where a group goes among its cell's: kinds in [`KINDS`] order, then the
/// mutex's policies in [`MUTEX_POLICIES`] order, then anything else.
fn group_rank(g: &Group) -> (usize, usize) {
    let kind = KINDS.iter().position(|&k| k == g.kind);
    let policy = MUTEX_POLICIES.iter().position(|&p| p == g.slowpath);
    match (kind, g.kind == MUTEX) {
        (Some(k), _) => (k, 0),
        (None, true) => (KINDS.len(), policy.unwrap_or(MUTEX_POLICIES.len())),
        (None, false) => (KINDS.len() + 1, 0),
    }
}

/// The groups of cells matching `keep`, by CPUs (more first), then kind
/// and policy ([`group_rank`]), then PV on before off.
fn rows(report: &Report, keep: impl Fn(&Cell) -> bool) -> Vec<(&Cell, &Group)> {
    let mut rows: Vec<(&Cell, &Group)> = report
        .groups
        .iter()
        .map(|g| (&report.cells[g.cell], g))
        .filter(|(c, _)| keep(c))
        .collect();
    rows.sort_by_key(|(c, g)| {
        (
            std::cmp::Reverse(c.smp),
            group_rank(g),
            c.pv == Pv::Off,
            g.cell,
        )
    });
    rows
}

fn contended_table(out: &mut String, report: &Report, host: HostKind) {
    let rows: Vec<Vec<String>> = rows(report, |c| {
        c.host == host && c.workload == Workload::Contended
    })
    .into_iter()
    .map(|(c, g)| {
        vec![
            c.smp.to_string(),
            g.kind.clone(),
            c.pv.name().to_owned(),
            g.slowpath.clone(),
            format!("**{}**", rate(g.per_sec.median)),
            range(&g.per_sec, rate),
            percent(g.per_sec.relative_iqr()),
            format!("{:.2} / {:.2}", g.fair_min.median, g.fair_max.median),
            time(g.p50_ns.median),
            time(g.p99_ns.median),
            time(g.max_ns.median),
            g.per_sec.n.to_string(),
        ]
    })
    .collect();
    if rows.is_empty() {
        out.push_str("No successful contended run.\n");
        return;
    }
    table(
        out,
        &[
            "smp",
            "kind",
            "pv",
            "slow path",
            "acq/s",
            "min..max",
            "IQR",
            "fair min / max",
            "p50",
            "p99",
            "max",
            "runs",
        ],
        "rlllrrrlrrrr",
        &rows,
    );
}

fn uncontended_table(out: &mut String, report: &Report, host: HostKind) {
    let rows: Vec<Vec<String>> = rows(report, |c| {
        c.host == host && c.workload == Workload::Uncontended
    })
    .into_iter()
    .map(|(c, g)| {
        vec![
            g.kind.clone(),
            c.pv.name().to_owned(),
            g.slowpath.clone(),
            format!("**{}**", time(g.ns_per_op.median)),
            range(&g.ns_per_op, time),
            percent(g.ns_per_op.relative_iqr()),
            g.ns_per_op.n.to_string(),
        ]
    })
    .collect();
    if rows.is_empty() {
        out.push_str("No successful uncontended run.\n");
        return;
    }
    table(
        out,
        &[
            "kind",
            "pv",
            "slow path",
            "lock+unlock",
            "min..max",
            "IQR",
            "runs",
        ],
        "llllrrr",
        &rows,
    );
}

fn mutex_table(out: &mut String, report: &Report, host: HostKind) {
    let rows: Vec<Vec<String>> = rows(report, |c| c.host == host && c.workload == Workload::Mutex)
        .into_iter()
        .map(|(c, g)| {
            let count = |f: fn(&super::stats::MutexSpreads) -> Spread| {
                g.mutex
                    .as_ref()
                    .map_or("-".to_owned(), |m| format!("{:.0}", f(m).median))
            };
            vec![
                c.smp.to_string(),
                g.slowpath.clone(),
                c.pv.name().to_owned(),
                format!("**{}**", rate(g.per_sec.median)),
                range(&g.per_sec, rate),
                percent(g.per_sec.relative_iqr()),
                format!("{:.2} / {:.2}", g.fair_min.median, g.fair_max.median),
                time(g.p50_ns.median),
                time(g.p99_ns.median),
                time(g.max_ns.median),
                count(|m| m.spun),
                count(|m| m.slept),
                count(|m| m.preempted_owner),
                g.per_sec.n.to_string(),
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("No successful mutex run.\n");
        return;
    }
    table(
        out,
        &[
            "smp",
            "policy",
            "pv",
            "acq/s",
            "min..max",
            "IQR",
            "fair min / max",
            "p50",
            "p99",
            "max",
            "spun",
            "slept",
            "preempted owner",
            "runs",
        ],
        "rllrrrlrrrrrrr",
        &rows,
    );
}

/// The group of `series`, if any run of it succeeded.
fn group<'a>(report: &'a Report, series: &Series) -> Option<&'a Group> {
    report
        .groups
        .iter()
        .find(|g| g.cell == series.cell && series.matches(&g.kind, &g.slowpath))
}

/// Whether the PV-on overhead (`1 - on/off` over the paired rounds) meets
/// `goal`: judged on the middle half of the rounds, so that a round where
/// one side collapsed (noise on a loaded machine) decides nothing. When
/// the interquartile range straddles the goal, the run cannot tell.
fn overhead_verdict(ratio: &Spread, goal: f64) -> &'static str {
    // The overhead falls as the ratio rises: its quartiles swap.
    let (least, most) = (1.0 - ratio.q3, 1.0 - ratio.q1);
    if most <= goal {
        "met"
    } else if least > goal {
        "not met"
    } else {
        "inconclusive: the middle half of the rounds straddles it"
    }
}

fn ratio_lines(out: &mut String, report: &Report) {
    for ratio in &report.ratios {
        let _ = write!(out, "- {}: ", ratio.what);
        let Some(s) = ratio.spread else {
            out.push_str("no round with both runs successful\n");
            continue;
        };
        let rounds = format!("median of {}", plural(s.n, "paired round"));
        match ratio.overhead_goal {
            Some(goal) => {
                // The ratio first: an overhead of -2600% reads worse than
                // "27x faster".
                let overhead = 1.0 - s.median;
                let _ = write!(
                    out,
                    "**{}** (1 - on/off; on/off {:.2}x, {rounds}, min..max {:.2}x..{:.2}x; goal <= {}: {})",
                    signed_percent(overhead),
                    s.median,
                    s.min,
                    s.max,
                    percent(goal),
                    overhead_verdict(&s, goal)
                );
            }
            None => {
                let _ = write!(
                    out,
                    "**{:.2}x** ({rounds}, min..max {:.2}x..{:.2}x)",
                    s.median, s.min, s.max
                );
            }
        }
        let side = |series: &Series| {
            let c = report.cells[series.cell];
            group(report, series).map(|g| {
                let value = match c.workload {
                    Workload::Contended | Workload::Mutex => {
                        format!("{} acq/s", rate(g.per_sec.median))
                    }
                    Workload::Uncontended => time(g.ns_per_op.median),
                };
                format!("pv {} {value} ({})", c.pv.name(), g.slowpath)
            })
        };
        if let (Some(num), Some(den)) = (side(&ratio.numerator), side(&ratio.denominator)) {
            let _ = write!(out, "; {num}, {den}");
        }
        out.push('\n');
    }
    // The uncontended cost of every kind, per host and PV setting.
    for cell in &report.cells {
        if cell.workload != Workload::Uncontended {
            continue;
        }
        let costs: Vec<String> = rows(report, |c| c == cell)
            .into_iter()
            .map(|(_, g)| format!("{} {}", g.kind, time(g.ns_per_op.median)))
            .collect();
        if !costs.is_empty() {
            let _ = writeln!(
                out,
                "- {} pv {}: uncontended lock+unlock: {}",
                cell.host_name(),
                cell.pv.name(),
                costs.join(", ")
            );
        }
    }
}

fn markdown(report: &Report) -> String {
    let meta = &report.meta;
    let mut out = String::new();
    let boots = report.runs.len();
    let failed = report.runs.iter().filter(|r| !r.ok()).count();
    let _ = writeln!(out, "# Lock benchmark: `lockstorm`, PV on and off\n");
    let _ = writeln!(
        out,
        "`{}` on {}: guest {} at commit {}; {} per cell, rounds interleaved; {boots} boots in {:.1} min.\n",
        meta.command,
        meta.date,
        meta.guest.as_deref().unwrap_or("(no banner seen)"),
        meta.git,
        plural(meta.reps, "rep"),
        meta.wall.as_secs_f64() / 60.0
    );
    if meta.quick {
        out.push_str("> **Smoke run** (`--quick`): too few reps to compare figures.\n\n");
    }
    if failed > 0 {
        let _ = writeln!(
            out,
            "> **{failed} of {boots} runs failed**; their figures are left out (`locks.json` has why).\n"
        );
    }
    let _ = write!(
        out,
        "Each figure is the median over the reps, with its spread: min..max and IQR \
         (interquartile range over the median). PV on is the default boot; PV off boots \
         with `pv=off` (on nested-kvm and pvhost also `--pv off`: the host offers nothing). \
         pvhost preempts every vCPU on the schedule `--steal {PVHOST_STEAL}` (period µs, \
         share %, CPU c's windows c * phase µs later). The qspinlock takes \
         the slow path chosen at boot (`halt`: spin, then halt and be kicked; `spin`: \
         spin only). Throughput: acquisitions per second over all CPUs; fairness: the \
         smallest / largest per-CPU share over the fair share (1 = fair); latency: from \
         the lock call to holding the lock, guest clock, per-run p50/p99/max (histogram \
         floors, within 12.5%), medians over the runs. Uncontended lock+unlock: \
         elapsed / acquisitions on one CPU, including the loop's two clock reads and \
         histogram update. The sleeping mutex (`kernel::sync::Mutex`) runs in one \
         pinned thread per CPU, once per spin policy in the same boot: `sleep` never \
         spins; `spin-owner` spins while the owner is the running thread of its CPU; \
         `spin-owner-pv` (the default) also stops when the PV view reports the \
         owner's vCPU preempted, which only pvhost with PV on does. Its latency \
         includes sleeping; `spun`, `slept`, `preempted owner`: the mutex's counters \
         (acquisitions that spun and won, sleeps, spins the preempted check \
         ended), medians over the runs.\n\n",
    );
    out.push_str("## Ratios (reported, not asserted)\n\n");
    ratio_lines(&mut out, report);
    let mut hosts: Vec<HostKind> = Vec::new();
    for cell in &report.cells {
        if !hosts.contains(&cell.host) {
            hosts.push(cell.host);
        }
    }
    for host in hosts {
        let _ = writeln!(out, "\n## {}", host_title(host));
        type Table = fn(&mut String, &Report, HostKind);
        let sections: [(Workload, &str, &str, Table); 3] = [
            (
                Workload::Contended,
                "Contended",
                "; cs=50 out=100",
                contended_table,
            ),
            (Workload::Uncontended, "Uncontended", "", uncontended_table),
            (
                Workload::Mutex,
                "Sleeping mutex",
                "; cs=50 out=100, one pinned thread per CPU",
                mutex_table,
            ),
        ];
        for (workload, title, note, table) in sections {
            if report
                .cells
                .iter()
                .any(|c| c.host == host && c.workload == workload)
            {
                let args = workload.app_args().join(" ");
                let _ = writeln!(out, "\n{title} (`{args}`{note}):\n");
                table(&mut out, report, host);
            }
        }
    }
    let _ = writeln!(out, "\n## How it ran\n");
    let _ = writeln!(
        out,
        "- command: `{}`; guest `{}` (copied to `target/bench/` at the start, booted from there); L0 QEMU: {}{}",
        meta.command,
        meta.image.display(),
        meta.qemu,
        if meta.l1_load > 0 {
            format!("; nested-kvm with {} busy loops in L1", meta.l1_load)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "- every round boots each cell once, in this order (one boot alone: the command shown):\n"
    );
    let rows: Vec<Vec<String>> = report
        .cells
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let runs: Vec<_> = report.runs.iter().filter(|r| r.cell == i).collect();
            let ok = runs.iter().filter(|r| r.ok()).count();
            let wall: f64 =
                runs.iter().map(|r| r.wall.as_secs_f64()).sum::<f64>() / runs.len().max(1) as f64;
            vec![
                (i + 1).to_string(),
                format!("`{}`", c.command(meta.l1_load)),
                format!("{ok}/{}", runs.len()),
                format!("{wall:.1} s"),
            ]
        })
        .collect();
    table(
        &mut out,
        &["#", "cell", "runs ok", "mean wall"],
        "lllr",
        &rows,
    );
    out
}

// ---------------------------------------------------------------- JSON

fn cell_json(cell: &Cell, l1_load: u8) -> Value {
    json!({
        "host": cell.host_name(),
        "smp": cell.smp,
        "pv": cell.pv.name(),
        "workload": cell.workload.name(),
        "bootargs": cell.bootargs().unwrap_or_default(),
        "command": cell.command(l1_load),
    })
}

/// Adds the fields of `cell` to the object `value`.
fn with_cell(mut value: Value, cell: &Cell, l1_load: u8) -> Value {
    if let (Value::Object(map), Value::Object(cell)) = (&mut value, cell_json(cell, l1_load)) {
        for (key, v) in cell {
            if key == "host" || key == "smp" || key == "pv" || key == "workload" {
                map.insert(key, v);
            }
        }
    }
    value
}

fn json(report: &Report) -> Value {
    let meta = &report.meta;
    let l1_load = meta.l1_load;
    json!({
        "suite": "locks",
        "meta": {
            "date": meta.date,
            "command": meta.command,
            "reps": meta.reps,
            "quick": meta.quick,
            "l1_load": l1_load,
            "guest": meta.guest,
            "git": meta.git,
            "qemu": meta.qemu,
            "image": meta.image.display().to_string(),
            "wall_s": meta.wall.as_secs_f64(),
            "runs": report.runs.len(),
            "runs_failed": report.runs.iter().filter(|r| !r.ok()).count(),
        },
        "cells": report.cells.iter().enumerate().map(|(i, c)| {
            let mut v = cell_json(c, l1_load);
            v["index"] = json!(i);
            v
        }).collect::<Vec<_>>(),
        "runs": report.runs.iter().map(|r| with_cell(json!({
            "seq": r.seq,
            "rep": r.rep,
            "cell": r.cell,
            "wall_s": r.wall.as_secs_f64(),
            "outcome": r.outcome,
            "ok": r.ok(),
            "error": r.error,
            "samples": r.samples,
            "console_tail": r.console_tail,
        }), &report.cells[r.cell], l1_load)).collect::<Vec<_>>(),
        "summary": {
            "groups": report.groups.iter().map(|g| {
                let value = serde_json::to_value(g).unwrap_or(Value::Null);
                with_cell(value, &report.cells[g.cell], l1_load)
            }).collect::<Vec<_>>(),
            "ratios": report.ratios.iter().map(|r| json!({
                "what": r.what,
                "kind": r.numerator.kind,
                "metric": r.metric.name(),
                "numerator_cell": r.numerator.cell,
                "numerator_slowpath": r.numerator.slowpath,
                "denominator_cell": r.denominator.cell,
                "denominator_slowpath": r.denominator.slowpath,
                "paired": r.paired,
                "spread": r.spread,
                "overhead_goal": r.overhead_goal,
            })).collect::<Vec<_>>(),
        },
    })
}

// ---------------------------------------------------------------- SVG

const WIDTH: u32 = 960;
const PANEL_HEIGHT: u32 = 330;
const TITLE_HEIGHT: u32 = 40;
const PV_ON: RGBColor = RGBColor(31, 119, 180);
const PV_OFF: RGBColor = RGBColor(255, 127, 14);
const FONT: &str = "sans-serif";

/// One bar: a kind's throughput in one cell.
struct Bar {
    x: f64,
    spread: Spread,
}

/// One panel: a host and CPU count, its kinds along x.
struct Panel {
    caption: String,
    labels: Vec<String>,
    on: Vec<Bar>,
    off: Vec<Bar>,
}

/// `nested-kvm, smp 4 (4 vCPUs on L1's 2 CPUs)`.
fn host_caption(host: HostKind, smp: u8) -> String {
    match (host, smp) {
        (HostKind::NestedKvm, smp) => format!("nested-kvm, smp {smp} ({smp} vCPUs on L1's 2 CPUs)"),
        (HostKind::Tcg, 2) => "tcg, smp 2 (no overcommit)".to_owned(),
        (HostKind::Pvhost, smp) => format!("pvhost, smp {smp} (steal {PVHOST_STEAL})"),
        (host, smp) => format!("{}, smp {smp}", super::locks::host_name(host)),
    }
}

/// A panel per host and CPU count of the contended cells (a bar per lock
/// kind) and of the mutex cells (a bar per spin policy), PV on next to off.
fn panels(report: &Report) -> Vec<Panel> {
    let mut panels = Vec::new();
    let find = |host, smp, pv, workload| {
        report.cells.iter().position(|c| {
            *c == Cell {
                host,
                smp,
                pv,
                workload,
            }
        })
    };
    let mut seen: Vec<(HostKind, u8, Workload)> = Vec::new();
    for cell in &report.cells {
        let key = (cell.host, cell.smp, cell.workload);
        if cell.workload == Workload::Uncontended || seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let (on, off) = (
            find(cell.host, cell.smp, Pv::On, cell.workload),
            find(cell.host, cell.smp, Pv::Off, cell.workload),
        );
        let mutex = cell.workload == Workload::Mutex;
        // What a bar is: a lock kind, or one of the mutex's policies.
        fn bar_name(mutex: bool, g: &Group) -> &String {
            if mutex {
                &g.slowpath
            } else {
                &g.kind
            }
        }
        let mut names: Vec<String> = if mutex {
            &MUTEX_POLICIES[..]
        } else {
            &KINDS[..]
        }
        .iter()
        .map(|k| (*k).to_owned())
        .collect();
        for g in &report.groups {
            if (Some(g.cell) == on || Some(g.cell) == off) && !names.contains(bar_name(mutex, g)) {
                names.push(bar_name(mutex, g).clone());
            }
        }
        let find_group = |cell: Option<usize>, name: &str| {
            cell.and_then(|c| {
                report
                    .groups
                    .iter()
                    .find(|g| g.cell == c && bar_name(mutex, g) == name)
            })
        };
        let caption = host_caption(cell.host, cell.smp);
        let mut panel = Panel {
            caption: if mutex {
                format!("{caption}: sleeping mutex per spin policy")
            } else {
                caption
            },
            labels: Vec::new(),
            on: Vec::new(),
            off: Vec::new(),
        };
        for name in names {
            let (g_on, g_off) = (find_group(on, &name), find_group(off, &name));
            if g_on.is_none() && g_off.is_none() {
                continue;
            }
            let x = panel.labels.len() as f64;
            let slow: Vec<&str> = [g_on, g_off]
                .iter()
                .flatten()
                .map(|g| g.slowpath.as_str())
                .filter(|s| *s != "-")
                .collect();
            panel.labels.push(if mutex || slow.is_empty() {
                name.clone()
            } else {
                format!("{name} ({})", slow.join(" / "))
            });
            if let Some(g) = g_on {
                panel.on.push(Bar {
                    x,
                    spread: g.per_sec,
                });
            }
            if let Some(g) = g_off {
                panel.off.push(Bar {
                    x,
                    spread: g.per_sec,
                });
            }
        }
        if !panel.labels.is_empty() {
            panels.push(panel);
        }
    }
    panels
}

/// The x axis of a panel: one slot per lock kind, centred on 0, 1, 2, ...,
/// with the key points (where the labels go) at the centres. (plotters'
/// `with_key_points` on an `f64` range would do, but loses its formatter.)
struct Slots(usize);

impl Ranged for Slots {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let fraction = (value + 0.5) / self.0.max(1) as f64;
        limit.0 + (fraction * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.0).map(|i| i as f64).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        -0.5..self.0 as f64 - 0.5
    }
}

/// The power of ten at or below `v` (`v` > 0).
fn decade_below(v: f64) -> f64 {
    10f64.powf(v.log10().floor())
}

fn svg(report: &Report) -> Result<String> {
    let panels = panels(report);
    let height = TITLE_HEIGHT + PANEL_HEIGHT * panels.len().max(1) as u32;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let title = format!(
            "lockstorm: contended throughput per lock kind or mutex policy, PV on vs off (bar: median of {}; whiskers: min..max)",
            plural(report.meta.reps, "rep")
        );
        let root = root.titled(&title, (FONT, 17))?;
        if panels.is_empty() {
            root.draw(&Text::new(
                "no successful contended run",
                (20, 20),
                (FONT, 16),
            ))?;
        }
        let areas = root.split_evenly((panels.len().max(1), 1));
        for (area, panel) in areas.iter().zip(&panels) {
            draw_panel(area, panel)?;
        }
        root.present()?;
    }
    Ok(text)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let spreads = || panel.on.iter().chain(&panel.off).map(|b| b.spread);
    let low = spreads()
        .map(|s| s.min)
        .fold(f64::INFINITY, f64::min)
        .max(1.0);
    let high = spreads().map(|s| s.max).fold(1.0, f64::max);
    // From the decade below the lowest whisker (strictly below: a bar on
    // the axis would have no height); the highest whisker and its value
    // take the lower 70% of the height (log scale), the legend the rest.
    let y_low = decade_below(low * 0.8);
    let used = (high * 1.3 / y_low).log10().max(0.7);
    let y_high = y_low * 10f64.powf(used / 0.7);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.caption, (FONT, 15))
        .margin(8)
        .margin_right(20)
        .x_label_area_size(28)
        .y_label_area_size(64)
        .build_cartesian_2d(Slots(panel.labels.len()), (y_low..y_high).log_scale())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let labels = panel.labels.clone();
    let x_label = move |x: &f64| {
        labels
            .get(x.round().max(0.0) as usize)
            .cloned()
            .unwrap_or_default()
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&x_label)
        .y_label_formatter(&|y| axis_rate(*y))
        // Every decade (up to 8) and nothing between: from a hint of 10
        // plotters labels every 1..9 step, below the decades' count it skips.
        .y_labels(8)
        .y_desc("acquisitions / s")
        .label_style((FONT, 13))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (bars, color, offset, label) in [
        (&panel.on, PV_ON, -0.19, "PV on"),
        (&panel.off, PV_OFF, 0.19, "PV off (pv=off)"),
    ] {
        let half = 0.17;
        chart
            .draw_series(bars.iter().map(|b| {
                Rectangle::new(
                    [
                        (b.x + offset - half, y_low),
                        (b.x + offset + half, b.spread.median),
                    ],
                    color.filled(),
                )
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        // Whiskers from min to max, with caps.
        chart
            .draw_series(bars.iter().flat_map(|b| {
                let (x, low, high, cap) = (b.x + offset, b.spread.min, b.spread.max, 0.05);
                [
                    vec![(x, low), (x, high)],
                    vec![(x - cap, low), (x + cap, low)],
                    vec![(x - cap, high), (x + cap, high)],
                ]
                .map(|points| PathElement::new(points, BLACK.stroke_width(1)))
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let value_style =
            TextStyle::from((FONT, 12))
                .color(&BLACK)
                .pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Bottom,
                ));
        chart
            .draw_series(bars.iter().map(|b| {
                Text::new(
                    rate(b.spread.median),
                    (b.x + offset, b.spread.max * 1.12),
                    value_style.clone(),
                )
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bench::locks::{self, Meta, RunRecord};
    use crate::bench::stats::{self, MutexCounts, Sample};
    use clap::ValueEnum;

    #[test]
    fn numbers_read_well() {
        assert_eq!(rate(812.4), "812");
        assert_eq!(rate(8324.0), "8.32k");
        assert_eq!(rate(178_215.0), "178k");
        assert_eq!(rate(999_999.0), "1.00M");
        assert_eq!(rate(12_345_678.0), "12.3M");
        assert_eq!(axis_rate(1000.0), "1k");
        assert_eq!(axis_rate(10e6), "10M");
        assert_eq!(axis_rate(2500.0), "2.5k");
        assert_eq!(axis_rate(100.0), "100");
        assert_eq!(time(448.0), "448 ns");
        assert_eq!(time(1270.4), "1.27 µs");
        assert_eq!(time(106_496.0), "106 µs");
        assert_eq!(time(20_971_520.0), "21.0 ms");
        assert_eq!(time(1.5e9), "1.50 s");
        assert_eq!(signed_percent(0.013), "+1.3%");
        assert_eq!(signed_percent(-0.04), "-4.0%");
        assert_eq!(decade_below(178_215.0), 100_000.0);
        assert_eq!(decade_below(1.0), 1.0);
    }

    fn sample(kind: &str, slowpath: &str, cpus: u32, per_sec: f64) -> Sample {
        Sample {
            kind: kind.into(),
            slowpath: slowpath.into(),
            cpus,
            cs: 50,
            out: 100,
            acquisitions: 1000,
            elapsed_ns: 1_270_000,
            per_sec,
            fair_min: 0.9,
            fair_max: 1.1,
            p50_ns: 448,
            p99_ns: 106_496,
            max_ns: 5_995_015,
            lost: 0,
            mutex: None,
        }
    }

    /// A small report: tcg only, two rounds, one run failed; the mutex's
    /// policies at 1k, 2k and 3k acquisitions/s times the round, PV on and
    /// off alike.
    fn report() -> Report {
        let cells = locks::matrix(&[HostKind::Tcg], Workload::value_variants());
        let mut runs = Vec::new();
        for rep in 0..2 {
            for (index, cell) in cells.iter().enumerate() {
                let on = cell.pv == Pv::On;
                let slow = if on { "halt" } else { "spin" };
                let cpus = if cell.workload == Workload::Uncontended {
                    1
                } else {
                    u32::from(cell.smp)
                };
                let scale = if on { 2.0 } else { 1.0 } * (rep + 1) as f64;
                let samples = if cell.workload == Workload::Mutex {
                    MUTEX_POLICIES
                        .iter()
                        .zip(1..)
                        .map(|(&policy, i)| Sample {
                            mutex: Some(MutexCounts {
                                threads: 4,
                                spun: 10 * i,
                                slept: 100 / i,
                                preempted_owner: 0,
                            }),
                            ..sample(MUTEX, policy, cpus, 1000.0 * (i * (rep as u64 + 1)) as f64)
                        })
                        .collect()
                } else {
                    KINDS
                        .iter()
                        .map(|&k| {
                            let slow = if k == "qspinlock" { slow } else { "-" };
                            sample(k, slow, cpus, 1000.0 * scale)
                        })
                        .collect()
                };
                let failed = rep == 1 && index == 1;
                runs.push(RunRecord {
                    seq: runs.len(),
                    rep,
                    cell: index,
                    wall: Duration::from_millis(1500),
                    outcome: "guest exited with status 0".into(),
                    samples,
                    error: failed.then(|| "no result line for mcs".into()),
                    console_tail: None,
                });
            }
        }
        let groups = stats::summarize(&runs);
        let ratios = locks::ratios(&cells, &runs);
        Report {
            meta: Meta {
                date: "2026-01-02T03:04:05Z".into(),
                command: "cargo xtask bench --suite locks --hosts tcg".into(),
                reps: 2,
                quick: true,
                l1_load: 0,
                guest: Some("lodger 0.1.0 (aarch64)".into()),
                git: "0123456789ab".into(),
                qemu: "QEMU emulator version 10.0.0".into(),
                image: PathBuf::from("/t/lodger"),
                wall: Duration::from_secs(18),
            },
            cells,
            runs,
            groups,
            ratios,
        }
    }

    #[test]
    fn the_overhead_verdict_needs_the_middle_half_on_one_side() {
        let spread = |values: &[f64]| Spread::of(values).unwrap();
        // PV on within 1% of off in every round: met.
        assert_eq!(
            overhead_verdict(&spread(&[0.99, 1.0, 1.01, 0.995, 1.005]), 0.02),
            "met"
        );
        // 10% slower throughout: not met.
        assert_eq!(
            overhead_verdict(&spread(&[0.9, 0.89, 0.91, 0.9, 0.88]), 0.02),
            "not met"
        );
        // One round where PV off collapsed (ratio 11.9) decides nothing.
        assert_eq!(
            overhead_verdict(&spread(&[0.99, 1.0, 11.9, 0.995, 1.005]), 0.02),
            "met"
        );
        // Rounds on both sides of the goal: cannot tell.
        assert!(
            overhead_verdict(&spread(&[0.7, 0.9, 1.0, 1.2, 1.5]), 0.02).starts_with("inconclusive")
        );
    }

    #[test]
    fn markdown_has_tables_ratios_and_provenance() {
        let md = markdown(&report());
        for needed in [
            "`cargo xtask bench --suite locks --hosts tcg` on 2026-01-02T03:04:05Z: guest lodger 0.1.0 (aarch64) at commit 0123456789ab; 2 reps per cell",
            "**Smoke run**",
            "**1 of 16 runs failed**",
            "## tcg: QEMU TCG",
            "| smp | kind | pv | slow path | acq/s |",
            "| 4 | qspinlock | on | halt | **3.00k** | 2.00k..4.00k | 33.3% | 0.90 / 1.10 | 448 ns | 106 µs | 6.00 ms | 2 |",
            "| 4 | qspinlock | off | spin | **1.00k** | 1.00k..1.00k | 0.0% | 0.90 / 1.10 | 448 ns | 106 µs | 6.00 ms | 1 |",
            "| tas | on | - | **1.27 µs** | 1.27 µs..1.27 µs | 0.0% | 2 |",
            "- tcg smp 4: qspinlock throughput, PV on / PV off: **2.00x** (median of 1 paired round, min..max 2.00x..2.00x); pv on 3.00k acq/s (halt), pv off 1.00k acq/s (spin)",
            "- tcg smp 2 (no overcommit): PV-on overhead, qspinlock throughput: **-100.0%** (1 - on/off; on/off 2.00x, median of 2 paired rounds, min..max 2.00x..2.00x; goal <= 2.0%: met)",
            "- tcg pv on: uncontended lock+unlock: tas 1.27 µs, ticket 1.27 µs, mcs 1.27 µs, qspinlock 1.27 µs",
            "| 2 | `cargo xtask run --host tcg --smp 4 --app lockstorm --bootargs pv=off -- ms=300 slowpath=boot` | 1/2 | 1.5 s |",
            "Sleeping mutex (`kinds=mutex ms=300`; cs=50 out=100, one pinned thread per CPU):",
            "| smp | policy | pv | acq/s | min..max | IQR | fair min / max | p50 | p99 | max | spun | slept | preempted owner | runs |",
            "| 4 | sleep | on | **1.50k** | 1.00k..2.00k | 33.3% | 0.90 / 1.10 | 448 ns | 106 µs | 6.00 ms | 10 | 100 | 0 | 2 |",
            "| 4 | spin-owner-pv | off | **4.50k** | 3.00k..6.00k | 33.3% | 0.90 / 1.10 | 448 ns | 106 µs | 6.00 ms | 30 | 33 | 0 | 2 |",
            "- tcg smp 4 pv on (no hypervisor: the check sees no preemption): mutex spin-owner-pv / spin-owner, throughput: **1.50x** (median of 2 paired rounds, min..max 1.50x..1.50x); pv on 4.50k acq/s (spin-owner-pv), pv on 3.00k acq/s (spin-owner)",
            "- tcg smp 4 pv off (pv=off: the check sees no preemption): mutex spin-owner-pv / sleep, throughput: **3.00x**",
            "| 8 | `cargo xtask run --host tcg --smp 4 --app lockstorm --bootargs pv=off -- kinds=mutex ms=300` | 2/2 | 1.5 s |",
        ] {
            assert!(md.contains(needed), "locks.md lacks {needed:?}:\n{md}");
        }
    }

    #[test]
    fn json_has_every_run_and_the_summary() {
        let report = report();
        let v = json(&report);
        assert_eq!(v["meta"]["runs"], 16);
        assert_eq!(v["meta"]["runs_failed"], 1);
        assert_eq!(v["runs"].as_array().unwrap().len(), 16);
        assert_eq!(v["runs"][1]["host"], "tcg");
        assert_eq!(v["runs"][1]["pv"], "off");
        assert_eq!(v["runs"][0]["samples"][3]["kind"], "qspinlock");
        assert_eq!(v["runs"][9]["ok"], false);
        assert_eq!(v["runs"][6]["workload"], "mutex");
        assert_eq!(v["runs"][6]["samples"][2]["slowpath"], "spin-owner-pv");
        assert_eq!(v["runs"][6]["samples"][2]["slept"], 33);
        assert_eq!(
            v["cells"][5]["bootargs"],
            "app=lockstorm pv=off -- ms=300 slowpath=boot"
        );
        let groups = v["summary"]["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 6 * 4 + 2 * 3);
        assert_eq!(groups[0]["workload"], "contended");
        assert_eq!(groups[0]["per_sec"]["median"], 3000.0);
        assert!(groups[0].get("mutex").is_none());
        assert_eq!(groups[24]["workload"], "mutex");
        assert_eq!(groups[24]["mutex"]["slept"]["median"], 100.0);
        let ratios = &v["summary"]["ratios"];
        assert_eq!(ratios[2]["overhead_goal"], 0.02);
        assert_eq!(ratios[2]["numerator_slowpath"], Value::Null);
        assert_eq!(ratios[3]["kind"], "mutex");
        assert_eq!(
            (
                ratios[3]["numerator_cell"].clone(),
                ratios[3]["denominator_cell"].clone()
            ),
            (json!(6), json!(6))
        );
        assert_eq!(ratios[3]["numerator_slowpath"], "spin-owner-pv");
        assert_eq!(ratios[3]["denominator_slowpath"], "spin-owner");
        assert_eq!(ratios[3]["paired"], json!([1.5, 1.5]));
    }

    #[test]
    fn svg_has_a_panel_per_host_and_cpu_count() {
        let text = svg(&report()).unwrap();
        assert!(text.starts_with("<svg"), "{}", &text[..100]);
        for needed in [
            "tcg, smp 4",
            "tcg, smp 2 (no overcommit)",
            "qspinlock (halt / spin)",
            "tcg, smp 4: sleeping mutex per spin policy",
            "spin-owner-pv",
            "PV off (pv=off)",
            "3.00k",
        ] {
            assert!(text.contains(needed), "the SVG lacks {needed:?}");
        }
        let mut empty = report();
        empty.groups.clear();
        assert!(svg(&empty).unwrap().contains("no successful contended run"));
    }
}
