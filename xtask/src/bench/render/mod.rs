//! The suite's report, three ways, in `target/bench/`:
//!
//! * `locks.md`: how it ran, the ratios, then per host a table of the
//!   contended cells, one of the uncontended cells and one of the mutex
//!   cells (also printed);
//! * `locks.json`: every run with its raw result lines, and the summary;
//! * `locks.svg`: contended throughput per lock kind, PV on next to PV off,
//!   a panel per host and CPU count, log scale, whiskers from min to max;
//!   and a panel per host of the mutex per spin policy.

//!
//! The files: [`markdown`] (its goals and Linux sections in [`goals`]),
//! [`json`], [`svg`]; this one writes them and
//! holds the number formats they share.

mod goals;
mod json;
mod markdown;
mod svg;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::locks::Report;
use super::stats::Spread;

/// The files written, and the Markdown (to print it too).
pub struct Files {
    pub markdown: PathBuf,
    pub json: PathBuf,
    pub svg: PathBuf,
    pub markdown_text: String,
}

/// Writes `STEM.md`, `STEM.json` and `STEM.svg` into `dir`.
pub fn write(report: &Report, dir: &Path, stem: &str) -> Result<Files> {
    write_files(
        dir,
        stem,
        markdown::markdown(report),
        &json::json(report),
        &svg::svg(report)?,
    )
}

/// Writes a report's three files, `STEM.{md,json,svg}`, into `dir` (every
/// suite's report goes through here).
pub fn write_files(
    dir: &Path,
    stem: &str,
    markdown_text: String,
    json: &serde_json::Value,
    svg: &str,
) -> Result<Files> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = Files {
        markdown: dir.join(format!("{stem}.md")),
        json: dir.join(format!("{stem}.json")),
        svg: dir.join(format!("{stem}.svg")),
        markdown_text,
    };
    let json = serde_json::to_string_pretty(json)?;
    for (path, text) in [
        (&files.markdown, &files.markdown_text),
        (&files.json, &json),
        (&files.svg, &svg.to_owned()),
    ] {
        fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(files)
}

/// `STEM.json`'s content.
#[cfg(test)]
pub(super) fn json_of(report: &Report) -> serde_json::Value {
    json::json(report)
}

/// Three significant digits (fewer decimals for bigger numbers).
pub(super) fn sig3(v: f64) -> String {
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
pub(super) fn rate(v: f64) -> String {
    if v.abs() >= 999_500.0 {
        format!("{}M", sig3(v / 1e6))
    } else if v.abs() >= 999.5 {
        format!("{}k", sig3(v / 1e3))
    } else {
        format!("{v:.0}")
    }
}

/// A rate on an axis, where the ticks are round: `1k`, `10M`, `2.5k`.
pub(super) fn axis_rate(v: f64) -> String {
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
pub(super) fn time(ns: f64) -> String {
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
pub(super) fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

pub(super) fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

pub(super) fn signed_percent(fraction: f64) -> String {
    format!("{:+.1}%", fraction * 100.0)
}

/// `min..max` of a spread, each through `f`.
pub(super) fn range(s: &Spread, f: fn(f64) -> String) -> String {
    format!("{}..{}", f(s.min), f(s.max))
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::bench::locks::{self, Meta, RunRecord, Workload, KINDS, MUTEX, MUTEX_POLICIES};
    use crate::bench::stats::{GapTimes, MutexCounts, QspinlockCounts, Sample};
    use crate::host::{HostKind, Pv};
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
    }

    pub(in crate::bench) fn sample(kind: &str, slowpath: &str, cpus: u32, per_sec: f64) -> Sample {
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
            // The spinlocks print hand-over gaps, the qspinlock its
            // counters: halts only on the halting slow path.
            gap: (kind != MUTEX).then_some(GapTimes {
                gap_p50_ns: 320,
                gap_p99_ns: 81_920,
            }),
            qspinlock: (kind == "qspinlock").then_some(QspinlockCounts {
                halts: if slowpath == "halt" { 120 } else { 0 },
                kicks: if slowpath == "halt" { 118 } else { 0 },
                kicks_unhalted: 3,
                handover_halted: 40,
                handover_preempted: 7,
                steals: 900,
                steals_head_halted: 12,
            }),
        }
    }

    /// One boot's line per spinlock kind, each at `per_sec`; the
    /// qspinlock's slow path as chosen at boot (halting with PV on).
    pub(in crate::bench) fn spinlock_samples(pv: Pv, cpus: u32, per_sec: f64) -> Vec<Sample> {
        KINDS
            .iter()
            .map(|&k| {
                let slow = match (k, pv) {
                    ("qspinlock", Pv::On) => "halt",
                    ("qspinlock", Pv::Off) => "spin",
                    _ => "-",
                };
                sample(k, slow, cpus, per_sec)
            })
            .collect()
    }

    /// The `seq`-th boot, of cell `cell` in round `rep`: it succeeded in 1.5 s.
    pub(in crate::bench) fn run_record(
        seq: usize,
        rep: usize,
        cell: usize,
        samples: Vec<Sample>,
    ) -> RunRecord {
        RunRecord {
            seq,
            rep,
            cell,
            wall: Duration::from_millis(1500),
            outcome: "guest exited with status 0".into(),
            samples,
            error: None,
            console_tail: None,
            steal: None,
        }
    }

    #[test]
    fn loongarch_pvhost_cells_read_as_such() {
        let cells = locks::matrix(&[HostKind::Pvhost], &[Workload::Contended], &locks::ARCHES);
        let runs: Vec<RunRecord> = (0..cells.len())
            .map(|i| run_record(i, 0, i, spinlock_samples(cells[i].pv, 4, 1000.0)))
            .collect();
        let mut report = report();
        report = Report::new(
            Meta {
                command: "cargo xtask bench --suite locks --hosts pvhost".into(),
                ..report.meta
            },
            cells,
            runs,
        );
        let md = markdown::markdown(&report);
        for needed in [
            "## pvhost: lodger's EL2 host under TCG (aarch64) and the LoongArch PV QEMU (loongarch64)",
            "Linux's choice, each cell against its own architecture's: on aarch64 the native qspinlock",
            "- pvhost loongarch64 smp 4 (half of each vCPU's time stolen, staggered: periodic:10000,50,2500): lodger default (qspinlock, PV on) / Linux's choice (tas, pv on), throughput: **1.00x**",
            "| 4 (loongarch64) | qspinlock | on | halt |",
            "- LoongArch pvhost: that QEMU's source patched with `host/qemu-loongarch-kvm-pv.patch`",
        ] {
            assert!(md.contains(needed), "locks.md lacks {needed:?}:\n{md}");
        }
    }

    /// A small report: tcg only, two rounds, one run failed; the mutex's
    /// policies at 1k, 2k and 3k acquisitions/s times the round, PV on and
    /// off alike.
    pub(super) fn report() -> Report {
        // The scale cells need a second image: not in this report.
        let workloads: Vec<Workload> = Workload::value_variants()
            .iter()
            .copied()
            .filter(|&w| w != Workload::Scale)
            .collect();
        let cells = locks::matrix(&[HostKind::Tcg], &workloads, &locks::ARCHES);
        let mut runs = Vec::new();
        for rep in 0..2 {
            for (index, cell) in cells.iter().enumerate() {
                let on = cell.pv == Pv::On;
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
                    spinlock_samples(cell.pv, cpus, 1000.0 * scale)
                };
                let failed = rep == 1 && index == 1;
                runs.push(RunRecord {
                    error: failed.then(|| "no result line for mcs".into()),
                    ..run_record(runs.len(), rep, index, samples)
                });
            }
        }
        Report::new(
            Meta {
                date: "2026-01-02T03:04:05Z".into(),
                command: "cargo xtask bench --suite locks --hosts tcg".into(),
                reps: 2,
                first_reps: 2,
                max_reps: 2,
                quick: true,
                l1_load: 0,
                guest: Some("lodger 0.1.0 (aarch64)".into()),
                git: "0123456789ab".into(),
                qemu: "QEMU emulator version 10.0.0".into(),
                image: PathBuf::from("/t/lodger"),
                copy_dir: "bench",
                wall: Duration::from_secs(18),
            },
            cells,
            runs,
        )
    }
}
