//! The shootdown suite's report in `target/bench/`: `shootdown.md` (how it
//! ran, the goal's ratios, a table per series), `shootdown.json` (every
//! run and the summary) and `shootdown.svg` (p50 latency and the host's
//! IPIs + hypercalls per shootdown against the vCPU count, log-log, a line
//! per series, whiskers from the first to the third quartile).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::prelude::*;
use serde_json::json;

use super::super::render::{rate, sig3, time};
use super::super::stats::Spread;
use super::{Report, Series, Summary, GOAL_FROM_CPUS, GOAL_RATIO};

pub struct Files {
    pub markdown: PathBuf,
    pub json: PathBuf,
    pub svg: PathBuf,
    pub markdown_text: String,
}

pub fn write(report: &Report, dir: &Path, stem: &str) -> Result<Files> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = Files {
        markdown: dir.join(format!("{stem}.md")),
        json: dir.join(format!("{stem}.json")),
        svg: dir.join(format!("{stem}.svg")),
        markdown_text: markdown(report),
    };
    let json = serde_json::to_string_pretty(&json_of(report))?;
    for (path, text) in [
        (&files.markdown, &files.markdown_text),
        (&files.json, &json),
        (&files.svg, &svg(report)?),
    ] {
        fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(files)
}

/// `median (q1-q3)` of a spread, each figure by `f`.
fn spread(s: Option<&Spread>, f: fn(f64) -> String) -> String {
    match s {
        Some(s) if s.n > 1 => format!("{} ({}-{})", f(s.median), f(s.q1), f(s.q3)),
        Some(s) => f(s.median),
        None => "-".into(),
    }
}

fn count(v: f64) -> String {
    format!("{v:.2}")
}

fn summaries_of(report: &Report, series: Series) -> impl Iterator<Item = (u16, &Summary)> {
    report
        .cells
        .iter()
        .zip(&report.summaries)
        .filter(move |(c, _)| c.series == series)
        .map(|(c, s)| (c.cpus, s))
}

pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# TLB shootdown cost against the vCPU count\n");
    let _ = writeln!(
        out,
        "`{}` on {} (git {}): {} rounds{}, each boot `app=shootdown -- ms={}` (4 shootdowns a round of the app: unmap, map, protect RO, protect RW; a reader spinning on every other CPU, so every shootdown targets all of them); {:.0} s in all. Figures are medians over the rounds, (first-third quartile) where there are several; ratios per round, with a 95% bootstrap interval.\n",
        report.command,
        report.date,
        report.git,
        report.reps,
        if report.quick { " (--quick: a smoke run, not fit for comparison)" } else { "" },
        report.ms,
        report.wall.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "Host: this machine's TCG (2 cores shared with other work) and LoongArch pvhost (the patched QEMU, also TCG). Latency is therefore dominated by when the host runs each vCPU thread; compare within a row and within a round, not with real hardware.\n"
    );
    if !report.skipped.is_empty() {
        let mut counts: Vec<u16> = report.skipped.iter().map(|c| c.cpus).collect();
        counts.dedup();
        let _ = writeln!(
            out,
            "Skipped: {} vCPUs: kernel supports {} CPUs.\n",
            counts
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            report.kernel_cpus
        );
    }
    let _ = writeln!(out, "## The goal: PV IPI p50 at least {GOAL_RATIO}x lower than IOCSR from {GOAL_FROM_CPUS} vCPUs\n");
    let _ = writeln!(
        out,
        "| vCPUs | ratio | median | 95% CI | verdict |\n|---:|---|---:|---|---|"
    );
    for r in &report.ratios {
        let (median, ci) = match r.ci {
            Some(ci) => (
                format!("{}x", sig3(ci.median)),
                format!("{}x-{}x", sig3(ci.low), sig3(ci.high)),
            ),
            None => ("-".into(), "-".into()),
        };
        let verdict = match r.verdict {
            Some(v) => v.name(),
            None if r.numerator == Series::LaPvhostIocsr => "(below the goal's counts)",
            None => "(baseline comparison)",
        };
        let _ = writeln!(
            out,
            "| {} | {} p50 / {} p50 | {median} | {ci} | {verdict} |",
            r.cpus,
            r.numerator.name(),
            r.denominator.name()
        );
    }
    if !report.ratios.iter().any(|r| r.verdict.is_some()) {
        let _ = writeln!(
            out,
            "\nNo cell at {GOAL_FROM_CPUS} vCPUs or more ran: the goal is not judged in this run."
        );
    }
    for series in Series::ALL {
        let rows: Vec<(u16, &Summary)> = summaries_of(report, series).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n## {}\n", series.title());
        let _ = writeln!(
            out,
            "| vCPUs | p50 | p99 | shootdowns/s | guest IPIs / sd | guest hypercalls / sd | broadcast TLBIs / sd | host IOCSR IPIs / sd | host hypercalls / sd |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (cpus, s) in rows {
            let _ = writeln!(
                out,
                "| {cpus} | {} | {} | {} | {} | {} | {} | {} | {} |",
                spread(s.p50_spread.as_ref(), time),
                spread(s.p99_ns.as_ref(), time),
                spread(s.per_sec.as_ref(), rate),
                spread(s.ipis_per.as_ref(), count),
                spread(s.hypercalls_per.as_ref(), count),
                spread(s.broadcasts_per.as_ref(), count),
                spread(s.truth_ipis_per.as_ref(), count),
                spread(s.truth_hypercalls_per.as_ref(), count),
            );
        }
    }
    let failed: Vec<_> = report.runs.iter().filter(|r| r.error.is_some()).collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "\n## Failed boots\n");
        for r in failed {
            let c = report.cells[r.cell];
            let _ = writeln!(
                out,
                "- round {}, {} at {} vCPUs: {}",
                r.rep + 1,
                c.series.name(),
                c.cpus,
                r.error
                    .as_deref()
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or_default()
            );
        }
    }
    out
}

pub fn json_of(report: &Report) -> serde_json::Value {
    json!({
        "suite": "shootdown",
        "date": report.date,
        "command": report.command,
        "git": report.git,
        "reps": report.reps,
        "quick": report.quick,
        "ms": report.ms,
        "kernel_cpus": report.kernel_cpus,
        "wall_s": report.wall.as_secs_f64(),
        "cells": report.cells,
        "skipped": report.skipped.iter().map(|c| json!({
            "cell": c,
            "why": format!("kernel supports {} CPUs", report.kernel_cpus),
        })).collect::<Vec<_>>(),
        "baselines": report.baselines,
        "runs": report.runs,
        "summaries": report.summaries,
        "ratios": report.ratios,
    })
}

const COLORS: [RGBColor; 4] = [
    RGBColor(80, 80, 80),
    RGBColor(255, 127, 14),
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
];

/// Points (vCPUs, median, q1, q3) of `series` for one figure.
fn points(
    report: &Report,
    series: Series,
    f: fn(&Summary) -> Option<Spread>,
) -> Vec<(f64, Spread)> {
    summaries_of(report, series)
        .filter_map(|(cpus, s)| {
            f(s).filter(|s| s.median > 0.0)
                .map(|s| (f64::from(cpus), s))
        })
        .collect()
}

fn host_cost(s: &Summary) -> Option<Spread> {
    // IPIs + hypercalls the host saw per shootdown (medians added: the
    // two never both count for one series).
    match (s.truth_ipis_per, s.truth_hypercalls_per) {
        (Some(a), Some(b)) => {
            let add = |x: f64, y: f64| x + y;
            Some(Spread {
                n: a.n.min(b.n),
                median: add(a.median, b.median),
                min: add(a.min, b.min),
                max: add(a.max, b.max),
                q1: add(a.q1, b.q1),
                q3: add(a.q3, b.q3),
            })
        }
        _ => None,
    }
}

/// A panel: its title, its unit, and its figure of a cell.
type Figure = (&'static str, &'static str, fn(&Summary) -> Option<Spread>);

pub fn svg(report: &Report) -> Result<String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (960, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let panels = root.split_evenly((1, 2));
        let figures: [Figure; 2] = [
            ("p50 shootdown latency", "µs", |s| {
                s.p50_spread.map(|p| scale(p, 1e-3))
            }),
            ("host IPIs + hypercalls per shootdown", "count", host_cost),
        ];
        for (panel, (title, unit, f)) in panels.iter().zip(figures) {
            let series: Vec<(Series, Vec<(f64, Spread)>)> = Series::ALL
                .iter()
                .map(|&s| (s, points(report, s, f)))
                .filter(|(_, p)| !p.is_empty())
                .collect();
            let all = series.iter().flat_map(|(_, p)| p);
            let (x_max, y_min, y_max) = all
                .fold((2.0f64, f64::MAX, 1e-9f64), |(x, lo, hi), (cpus, s)| {
                    (x.max(*cpus), lo.min(s.q1.max(1e-3)), hi.max(s.q3))
                });
            let y_min = if y_min == f64::MAX { 0.1 } else { y_min / 2.0 };
            let mut chart = ChartBuilder::on(panel)
                .caption(title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(
                    (1.5f64..x_max * 1.5).log_scale(),
                    (y_min..y_max * 2.0).log_scale(),
                )?;
            chart
                .configure_mesh()
                .x_desc("vCPUs")
                .y_desc(unit)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| sig3(*y))
                .draw()?;
            for (s, pts) in &series {
                let color = COLORS[Series::ALL.iter().position(|x| x == s).unwrap_or(0)];
                // Lines and whiskers as paths (plotters is built with the
                // SVG backend only: no series or error-bar elements).
                let line: Vec<(f64, f64)> = pts.iter().map(|(x, p)| (*x, p.median)).collect();
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        line,
                        color.stroke_width(2),
                    )))?
                    .label(s.name())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                    });
                chart.draw_series(pts.iter().map(|(x, p)| {
                    PathElement::new(
                        vec![(*x, p.q1.max(y_min)), (*x, p.q3.max(y_min))],
                        color.stroke_width(1),
                    )
                }))?;
                chart.draw_series(
                    pts.iter()
                        .map(|(x, p)| Circle::new((*x, p.median), 3, color.filled())),
                )?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()?;
        }
        root.present()?;
    }
    Ok(text)
}

fn scale(s: Spread, k: f64) -> Spread {
    Spread {
        n: s.n,
        median: s.median * k,
        min: s.min * k,
        max: s.max * k,
        q1: s.q1 * k,
        q3: s.q3 * k,
    }
}
