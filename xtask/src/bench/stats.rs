//! Reading the guest's results and summarising them: the parser of
//! `lockstorm:` lines, medians and spread, and the per-group summary and
//! paired ratios the report shows.
//!
//! The statistics are the robust ones the design asks for ("repeat, report
//! medians and spread, prefer ratios"): a group's value is the median of
//! its runs, its spread the min, max and interquartile range (quartiles
//! interpolated linearly between order statistics, as numpy and R's default
//! do). A ratio between two cells is taken per repetition first (the two
//! runs of the same round, which saw the same drift), then summarised.

use std::collections::BTreeMap;
use std::str::FromStr;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use super::locks::RunRecord;

/// What marks a result line of `apps/src/lockstorm.rs`. Anything before it
/// on the line is noise (an L1 message that had no newline yet); lines
/// without it are not results (the banner, `app: lockstorm ...`, L1).
const RESULT_TAG: &str = "lockstorm: kind=";

/// One result line: one lock kind (and qspinlock slow path or mutex spin
/// policy) in one boot.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    pub kind: String,
    /// `halt` or `spin` for the qspinlock, the spin policy for the mutex
    /// (`sleep`, `spin-owner`, `spin-owner-pv`), `-` for the other kinds.
    pub slowpath: String,
    pub cpus: u32,
    pub cs: u32,
    pub out: u32,
    pub acquisitions: u64,
    pub elapsed_ns: u64,
    pub per_sec: f64,
    pub fair_min: f64,
    pub fair_max: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    pub lost: u64,
    /// The mutex's own counters (`kind=mutex` lines only).
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    pub mutex: Option<MutexCounts>,
    /// Hand-over gaps (spinlock lines, where the guest prints them).
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    pub gap: Option<GapTimes>,
    /// The qspinlock's slow-path counters (its lines, where printed).
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    pub qspinlock: Option<QspinlockCounts>,
}

/// How long the lock stood free between an unlock and the next owner
/// holding it, when a waiter was waiting: the hand-over, per-run
/// percentiles (guest clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GapTimes {
    pub gap_p50_ns: u64,
    pub gap_p99_ns: u64,
}

/// [`GapTimes`]' keys on a result line.
pub const GAP_KEYS: [&str; 2] = ["gap_p50_ns", "gap_p99_ns"];

/// What a qspinlock line adds: how its slow path went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct QspinlockCounts {
    /// Waiters that halted (PV `wait`).
    pub halts: u64,
    /// Kicks sent (PV `kick`).
    pub kicks: u64,
    /// Kicks sent to a waiter that had not halted (yet).
    pub kicks_unhalted: u64,
    /// Hand-overs to a halted queue head.
    pub handover_halted: u64,
    /// Hand-overs to a waiter whose vCPU was preempted.
    pub handover_preempted: u64,
    /// Acquisitions that took the lock ahead of the queue.
    pub steals: u64,
    /// Of those, while the queue's head was halted.
    pub steals_head_halted: u64,
}

/// [`QspinlockCounts`]' keys on a result line, in its fields' order.
pub const QSPINLOCK_KEYS: [&str; 7] = [
    "halts",
    "kicks",
    "kicks_unhalted",
    "handover_halted",
    "handover_preempted",
    "steals",
    "steals_head_halted",
];

/// What a `kind=mutex` line adds: how its contended acquisitions went
/// (`kernel::sync::MutexStats`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MutexCounts {
    /// Mutex threads (one per CPU unless `threads=` said otherwise).
    pub threads: u32,
    /// Acquisitions that spun and got it without sleeping.
    pub spun: u64,
    /// Times a contender went to sleep.
    pub slept: u64,
    /// Spins ended because the owner's vCPU was reported preempted.
    pub preempted_owner: u64,
}

impl Sample {
    /// The cost of one lock+unlock (and the loop around it), uncontended:
    /// elapsed time over acquisitions.
    pub fn ns_per_op(&self) -> f64 {
        self.elapsed_ns as f64 / self.acquisitions.max(1) as f64
    }

    /// The optional counters the line had ([`GAP_KEYS`],
    /// [`QSPINLOCK_KEYS`]), by key.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut counters = Vec::new();
        if let Some(g) = self.gap {
            counters.extend(GAP_KEYS.into_iter().zip([g.gap_p50_ns, g.gap_p99_ns]));
        }
        if let Some(q) = self.qspinlock {
            let values = [
                q.halts,
                q.kicks,
                q.kicks_unhalted,
                q.handover_halted,
                q.handover_preempted,
                q.steals,
                q.steals_head_halted,
            ];
            counters.extend(QSPINLOCK_KEYS.into_iter().zip(values));
        }
        counters
    }

    /// How evenly the CPUs shared the lock: the smallest per-CPU share over
    /// the largest (1: all alike; 0 when a CPU got none).
    pub fn fairness(&self) -> f64 {
        if self.fair_max > 0.0 {
            self.fair_min / self.fair_max
        } else {
            0.0
        }
    }
}

/// The result on `line`: `None` if it is not a result line, an error if it
/// is one but malformed (a field missing, twice, or not a number; a word
/// that is not `key=value`). Trailing `\r`s and spaces are ignored; keys the
/// parser does not know are skipped, so the guest may add fields.
pub fn parse_line(line: &str) -> Option<Result<Sample>> {
    let start = line.find(RESULT_TAG)?;
    let text = line[start + "lockstorm:".len()..].trim_end_matches(['\r', ' ', '\t']);
    Some(parse_fields(text).with_context(|| format!("malformed result line {:?}", line.trim_end())))
}

fn parse_fields(text: &str) -> Result<Sample> {
    let mut fields = BTreeMap::new();
    for word in text.split_whitespace() {
        let (key, value) = word
            .split_once('=')
            .ok_or_else(|| anyhow!("`{word}` is not key=value"))?;
        if fields.insert(key, value).is_some() {
            bail!("`{key}` given twice");
        }
    }
    fn get<T: FromStr>(fields: &BTreeMap<&str, &str>, key: &str) -> Result<T> {
        let value = fields.get(key).ok_or_else(|| anyhow!("no `{key}`"))?;
        value
            .parse()
            .map_err(|_| anyhow!("`{key}={value}` is not a valid number"))
    }
    let fraction = |key: &str| -> Result<f64> {
        let value: f64 = get(&fields, key)?;
        if !value.is_finite() || value < 0.0 {
            bail!("`{key}={value}` is not a finite, non-negative number");
        }
        Ok(value)
    };
    // A group of optional counters: absent, or every one of them.
    fn optional<const N: usize>(
        fields: &BTreeMap<&str, &str>,
        keys: [&str; N],
    ) -> Result<Option<[u64; N]>> {
        if !keys.iter().any(|k| fields.contains_key(k)) {
            return Ok(None);
        }
        let mut values = [0; N];
        for (value, key) in values.iter_mut().zip(keys) {
            *value = get(fields, key)?;
        }
        Ok(Some(values))
    }
    let word = |key: &str| -> Result<String> {
        fields
            .get(key)
            .filter(|v| !v.is_empty())
            .map(|v| (*v).to_owned())
            .ok_or_else(|| anyhow!("no `{key}`"))
    };
    Ok(Sample {
        kind: word("kind")?,
        slowpath: word("slowpath")?,
        cpus: get(&fields, "cpus")?,
        cs: get(&fields, "cs")?,
        out: get(&fields, "out")?,
        acquisitions: get(&fields, "acquisitions")?,
        elapsed_ns: get(&fields, "elapsed_ns")?,
        per_sec: fraction("per_sec")?,
        fair_min: fraction("fair_min")?,
        fair_max: fraction("fair_max")?,
        p50_ns: get(&fields, "p50_ns")?,
        p99_ns: get(&fields, "p99_ns")?,
        max_ns: get(&fields, "max_ns")?,
        lost: get(&fields, "lost")?,
        mutex: if fields.contains_key("spun") {
            Some(MutexCounts {
                threads: get(&fields, "threads")?,
                spun: get(&fields, "spun")?,
                slept: get(&fields, "slept")?,
                preempted_owner: get(&fields, "preempted_owner")?,
            })
        } else {
            None
        },
        gap: optional(&fields, GAP_KEYS)?.map(|[gap_p50_ns, gap_p99_ns]| GapTimes {
            gap_p50_ns,
            gap_p99_ns,
        }),
        qspinlock: optional(&fields, QSPINLOCK_KEYS)?.map(
            |[halts, kicks, kicks_unhalted, handover_halted, handover_preempted, steals, steals_head_halted]| {
                QspinlockCounts {
                    halts,
                    kicks,
                    kicks_unhalted,
                    handover_halted,
                    handover_preempted,
                    steals,
                    steals_head_halted,
                }
            },
        ),
    })
}

/// A per-run figure that ratios compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Acquisitions per second (all CPUs).
    PerSec,
    /// [`Sample::ns_per_op`].
    NsPerOp,
    /// [`Sample::fairness`].
    Fairness,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::PerSec => "per_sec",
            Metric::NsPerOp => "ns_per_op",
            Metric::Fairness => "fair_min/fair_max",
        }
    }

    pub fn of(self, sample: &Sample) -> f64 {
        match self {
            Metric::PerSec => sample.per_sec,
            Metric::NsPerOp => sample.ns_per_op(),
            Metric::Fairness => sample.fairness(),
        }
    }
}

/// Every result on a console, in order, and why each malformed result line
/// is (the other lines are not results: the banner, L1's messages).
pub fn parse_console(console: &str) -> (Vec<Sample>, Vec<anyhow::Error>) {
    let mut samples = Vec::new();
    let mut errors = Vec::new();
    for result in console.lines().filter_map(parse_line) {
        match result {
            Ok(sample) => samples.push(sample),
            Err(e) => errors.push(e),
        }
    }
    (samples, errors)
}

/// The guest's name and version from its banner
/// (`[   0.027736 0] lodger 0.1.0 (aarch64), entered at EL1`).
pub fn guest_version(console: &str) -> Option<String> {
    console.lines().find_map(|line| {
        let (_, rest) = line.split_once("] lodger ")?;
        let (version, _) = rest.split_once(", entered at")?;
        Some(format!("lodger {version}"))
    })
}

/// The median and spread of a set of values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// First and third quartiles.
    pub q1: f64,
    pub q3: f64,
}

impl Spread {
    /// `None` for no values (or a NaN among them).
    pub fn of(values: &[f64]) -> Option<Spread> {
        let sorted = sorted(values)?;
        Some(Spread {
            n: sorted.len(),
            median: quantile(&sorted, 0.5),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            q1: quantile(&sorted, 0.25),
            q3: quantile(&sorted, 0.75),
        })
    }

    /// The interquartile range relative to the median (0 when the median is).
    pub fn relative_iqr(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.q3 - self.q1) / self.median.abs()
        }
    }
}

/// `values` in order; `None` for none (or a NaN among them).
pub(super) fn sorted(values: &[f64]) -> Option<Vec<f64>> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(sorted)
}

/// The `p` quantile of sorted values, interpolating linearly between the
/// closest ranks (numpy's default, R's type 7).
pub(super) fn quantile(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p;
    let below = h.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    sorted[below] + (h - below as f64) * (sorted[above] - sorted[below])
}

/// One row of the report: a lock kind (and slow path) in one cell, over
/// the repetitions whose run succeeded.
#[derive(Clone, Debug, Serialize)]
pub struct Group {
    /// Index into the suite's cells.
    pub cell: usize,
    pub kind: String,
    pub slowpath: String,
    pub cpus: u32,
    pub cs: u32,
    pub out: u32,
    pub per_sec: Spread,
    pub fair_min: Spread,
    pub fair_max: Spread,
    pub p50_ns: Spread,
    pub p99_ns: Spread,
    pub max_ns: Spread,
    pub ns_per_op: Spread,
    /// Medians of the mutex's counters (`kind=mutex` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mutex: Option<MutexSpreads>,
    /// The optional counters ([`Sample::counters`]) every run of the group
    /// had, by key.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<&'static str, Spread>,
}

/// [`MutexCounts`] over the runs of a group.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct MutexSpreads {
    pub spun: Spread,
    pub slept: Spread,
    pub preempted_owner: Spread,
}

/// Groups the samples of the successful runs by (cell, kind, slow path,
/// cpus, cs, out), in the order of the cells, then of first appearance.
pub fn summarize(runs: &[RunRecord]) -> Vec<Group> {
    type Key = (usize, String, String, u32, u32, u32);
    let mut order: Vec<Key> = Vec::new();
    let mut samples: BTreeMap<Key, Vec<&Sample>> = BTreeMap::new();
    for run in runs.iter().filter(|r| r.ok()) {
        for s in &run.samples {
            let key = (
                run.cell,
                s.kind.clone(),
                s.slowpath.clone(),
                s.cpus,
                s.cs,
                s.out,
            );
            if !samples.contains_key(&key) {
                order.push(key.clone());
            }
            samples.entry(key).or_default().push(s);
        }
    }
    // Stable: within a cell, the order the guest printed them in.
    order.sort_by_key(|k| k.0);
    order
        .into_iter()
        .filter_map(|key| {
            let list = &samples[&key];
            let spread =
                |f: fn(&Sample) -> f64| Spread::of(&list.iter().map(|s| f(s)).collect::<Vec<_>>());
            let counts: Vec<MutexCounts> = list.iter().filter_map(|s| s.mutex).collect();
            let mutex = if counts.len() == list.len() {
                let spread = |f: fn(&MutexCounts) -> u64| {
                    Spread::of(&counts.iter().map(|c| f(c) as f64).collect::<Vec<_>>())
                };
                Some(MutexSpreads {
                    spun: spread(|c| c.spun)?,
                    slept: spread(|c| c.slept)?,
                    preempted_owner: spread(|c| c.preempted_owner)?,
                })
            } else {
                None
            };
            let mut values: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
            for s in list {
                for (key, value) in s.counters() {
                    values.entry(key).or_default().push(value as f64);
                }
            }
            let counters = values
                .into_iter()
                .filter(|(_, v)| v.len() == list.len())
                .filter_map(|(key, v)| Some((key, Spread::of(&v)?)))
                .collect();
            let (cell, kind, slowpath, cpus, cs, out) = key;
            Some(Group {
                cell,
                kind,
                slowpath,
                cpus,
                cs,
                out,
                per_sec: spread(|s| s.per_sec)?,
                fair_min: spread(|s| s.fair_min)?,
                fair_max: spread(|s| s.fair_max)?,
                p50_ns: spread(|s| s.p50_ns as f64)?,
                p99_ns: spread(|s| s.p99_ns as f64)?,
                max_ns: spread(|s| s.max_ns as f64)?,
                ns_per_op: spread(Sample::ns_per_op)?,
                mutex,
                counters,
            })
        })
        .collect()
}

/// The result lines of one kind in one cell's runs: one side of a ratio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Series {
    /// Index into the suite's cells.
    pub cell: usize,
    pub kind: &'static str,
    /// The slow path or spin policy; `None`: whichever the line has (the
    /// qspinlock's follows the PV setting).
    pub slowpath: Option<&'static str>,
}

impl Series {
    pub fn matches(&self, kind: &str, slowpath: &str) -> bool {
        kind == self.kind && self.slowpath.is_none_or(|p| p == slowpath)
    }
}

/// `metric` of `series` in the successful run of round `rep`, if any.
fn value(runs: &[RunRecord], series: Series, rep: usize, metric: Metric) -> Option<f64> {
    runs.iter()
        .find(|r| r.cell == series.cell && r.rep == rep && r.ok())
        .and_then(|r| {
            r.samples
                .iter()
                .find(|s| series.matches(&s.kind, &s.slowpath))
        })
        .map(|s| metric.of(s))
}

/// The rounds the runs span.
fn rounds(runs: &[RunRecord]) -> std::ops::Range<usize> {
    0..runs.iter().map(|r| r.rep + 1).max().unwrap_or(0)
}

/// `metric` of `numerator` over `metric` of `denominator`, per repetition
/// in which the runs of both succeeded (one run, if both sides are lines of
/// the same cell).
pub fn paired_ratios(
    runs: &[RunRecord],
    numerator: Series,
    denominator: Series,
    metric: Metric,
) -> Vec<f64> {
    rounds(runs)
        .filter_map(|rep| {
            let num = value(runs, numerator, rep, metric)?;
            let den = value(runs, denominator, rep, metric)?;
            (den > 0.0).then(|| num / den)
        })
        .collect()
}

/// `metric` of `series`, per repetition in which its run succeeded.
pub fn per_round(runs: &[RunRecord], series: Series, metric: Metric) -> Vec<f64> {
    rounds(runs)
        .filter_map(|rep| value(runs, series, rep, metric))
        .collect()
}

#[cfg(test)]
mod tests;
