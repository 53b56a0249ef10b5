//! `locks.md`: how it ran, the ratios, then per host a table of the
//! contended cells, one of the uncontended cells and one of the mutex
//! cells.

use std::fmt::Write as _;

use super::super::ci::Ci;
use super::super::locks::{
    Cell, Ratio, Report, Workload, KINDS, MUTEX, MUTEX_POLICIES, PVHOST_STEAL, QSPINLOCK,
};
use super::super::stats::{Group, MutexSpreads, Series, Spread, QSPINLOCK_KEYS};
use super::{goals, percent, plural, range, rate, signed_percent, time};
use crate::arch::Arch;
use crate::host::{HostKind, Pv};

/// The section title of `host`, whose cells boot the guest architectures
/// `arches`.
fn host_title(host: HostKind, l1_load: u8, arches: &[Arch]) -> String {
    let only = |arch| arches == [arch];
    let title = match host {
        HostKind::Tcg if only(Arch::Aarch64) => {
            "tcg: QEMU TCG (aarch64), vCPUs as threads on this machine's 2 cores"
        }
        HostKind::Tcg => "tcg: QEMU TCG, vCPUs as threads on this machine's 2 cores",
        HostKind::NestedKvm => {
            "nested-kvm: QEMU+KVM in an L1 Linux under TCG (aarch64), L1 has 2 CPUs"
        }
        HostKind::Pvhost if only(Arch::Aarch64) => {
            "pvhost: lodger's EL2 host under TCG (aarch64), half of each vCPU's time stolen in windows staggered across CPUs"
        }
        HostKind::Pvhost if only(Arch::Loongarch64) => {
            "pvhost: the LoongArch PV QEMU (loongarch64, docs/hosts/loongarch-pvhost.md), half of each vCPU's time held off in windows staggered across CPUs"
        }
        HostKind::Pvhost => {
            "pvhost: lodger's EL2 host under TCG (aarch64) and the LoongArch PV QEMU (loongarch64), half of each vCPU's time stolen in windows staggered across CPUs"
        }
        HostKind::Kvm => "kvm: QEMU+KVM on this machine",
    };
    if host == HostKind::NestedKvm && l1_load > 0 {
        format!("{title}, with {l1_load} busy loops in L1 (`--l1-load {l1_load}`)")
    } else {
        title.to_owned()
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

/// [`table`], or a line saying there was no successful `what` run.
fn table_or_none(out: &mut String, what: &str, header: &[&str], align: &str, rows: &[Vec<String>]) {
    if rows.is_empty() {
        let _ = writeln!(out, "No successful {what} run.");
    } else {
        table(out, header, align, rows);
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

/// The header of [`throughput_columns`].
const THROUGHPUT_HEADER: [&str; 7] = [
    "acq/s",
    "min..max",
    "IQR",
    "fair min / max",
    "p50",
    "p99",
    "max",
];

/// acq/s, min..max, IQR, fair min / max, p50, p99, max.
fn throughput_columns(g: &Group) -> [String; 7] {
    [
        format!("**{}**", rate(g.per_sec.median)),
        range(&g.per_sec, rate),
        percent(g.per_sec.relative_iqr()),
        format!("{:.2} / {:.2}", g.fair_min.median, g.fair_max.median),
        time(g.p50_ns.median),
        time(g.p99_ns.median),
        time(g.max_ns.median),
    ]
}

fn contended_table(out: &mut String, report: &Report, host: HostKind) {
    let rows: Vec<Vec<String>> = rows(report, |c| c.host == host && contended(c))
        .into_iter()
        .map(|(c, g)| {
            let mut row = vec![
                c.smp_label(),
                g.kind.clone(),
                c.pv.name().to_owned(),
                g.slowpath.clone(),
            ];
            row.extend(throughput_columns(g));
            row.extend([
                counter(g, "gap_p50_ns", time),
                counter(g, "gap_p99_ns", time),
                g.per_sec.n.to_string(),
            ]);
            row
        })
        .collect();
    table_or_none(
        out,
        "contended",
        &[
            &["smp", "kind", "pv", "slow path"][..],
            &THROUGHPUT_HEADER,
            &["gap p50", "gap p99", "runs"],
        ]
        .concat(),
        "rlllrrrlrrrrrr",
        &rows,
    );
}

/// The median of the optional counter `key` ([`Sample::counters`]) through
/// `f`; `-` where the guest did not print it.
///
/// [`Sample::counters`]: super::super::stats::Sample::counters
fn counter(g: &Group, key: &str, f: fn(f64) -> String) -> String {
    g.counters.get(key).map_or("-".to_owned(), |s| f(s.median))
}

/// The contended cells, TCG's overcommitted one among them.
fn contended(c: &Cell) -> bool {
    c.workload.contended()
}

/// The qspinlock's slow-path counters per contended cell of `host`, PV on
/// next to off; nothing if the guest printed none.
fn qspinlock_counters_table(out: &mut String, report: &Report, host: HostKind) {
    let rows: Vec<Vec<String>> = rows(report, |c| c.host == host && contended(c))
        .into_iter()
        .filter(|(_, g)| {
            g.kind == QSPINLOCK && QSPINLOCK_KEYS.iter().all(|k| g.counters.contains_key(k))
        })
        .map(|(c, g)| {
            let mut row = vec![c.smp_label(), c.pv.name().to_owned(), g.slowpath.clone()];
            row.extend(
                QSPINLOCK_KEYS
                    .iter()
                    .map(|k| counter(g, k, |v| format!("{v:.0}"))),
            );
            row.push(g.per_sec.n.to_string());
            row
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str("\nqspinlock slow-path counters (medians over the runs, per 300 ms run):\n\n");
    let mut header = vec!["smp", "pv", "slow path"];
    header.extend(QSPINLOCK_KEYS);
    header.push("runs");
    table(out, &header, "rllrrrrrrrr", &rows);
}

/// The contended table, and the qspinlock's counters under it.
fn contended_tables(out: &mut String, report: &Report, host: HostKind) {
    contended_table(out, report, host);
    qspinlock_counters_table(out, report, host);
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
    table_or_none(
        out,
        "uncontended",
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
            let count = |f: fn(&MutexSpreads) -> Spread| {
                g.mutex
                    .as_ref()
                    .map_or("-".to_owned(), |m| format!("{:.0}", f(m).median))
            };
            let mut row = vec![c.smp_label(), g.slowpath.clone(), c.pv.name().to_owned()];
            row.extend(throughput_columns(g));
            row.extend([
                count(|m| m.spun),
                count(|m| m.slept),
                count(|m| m.preempted_owner),
                g.per_sec.n.to_string(),
            ]);
            row
        })
        .collect();
    table_or_none(
        out,
        "mutex",
        &[
            &["smp", "policy", "pv"][..],
            &THROUGHPUT_HEADER,
            &["spun", "slept", "preempted owner", "runs"],
        ]
        .concat(),
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

/// `1.23x` for a ratio; a figure of one line (fairness) without the `x`.
pub(super) fn times(ratio: &Ratio, v: f64) -> String {
    match ratio.denominator {
        Some(_) => format!("{v:.2}x"),
        None => format!("{v:.2}"),
    }
}

/// `95% CI 1.80x..2.20x`.
pub(super) fn ci_text(ratio: &Ratio, ci: &Ci) -> String {
    format!("95% CI {}..{}", times(ratio, ci.low), times(ratio, ci.high))
}

/// A ratio's figure with its interval and spread, and what the interval
/// says: against 1x, or for an overhead goal whether PV on keeps at least
/// `1 - goal` of PV off's throughput over the whole interval (met), over
/// none of it (not met), or the interval straddles that bar.
fn ratio_figure(ratio: &Ratio) -> Option<String> {
    let (s, ci) = (ratio.spread?, ratio.ci?);
    let rounds = format!(
        "{}, median of {}, min..max {}..{}",
        ci_text(ratio, &ci),
        plural(s.n, "paired round"),
        times(ratio, s.min),
        times(ratio, s.max)
    );
    Some(match ratio.overhead_goal {
        // The ratio first: an overhead of -2600% reads worse than "27x
        // faster".
        Some(goal) => format!(
            "**{}** (1 - on/off; on/off {}, {rounds}; goal <= {}: {})",
            signed_percent(1.0 - ci.median),
            times(ratio, ci.median),
            percent(goal),
            ci.at_least(1.0 - goal).name()
        ),
        None => format!(
            "**{}** ({rounds}; {})",
            times(ratio, ci.median),
            ci.against_one()
        ),
    })
}

/// A line per ratio: what, the figure with its CI ([`ratio_figure`]),
/// and each side's median.
pub(super) fn ratio_list(out: &mut String, report: &Report, ratios: &[Ratio]) {
    for ratio in ratios {
        let _ = write!(out, "- {}: ", ratio.what);
        let Some(figure) = ratio_figure(ratio) else {
            out.push_str("no round with both runs successful\n");
            continue;
        };
        out.push_str(&figure);
        let side = |series: &Series| {
            let c = report.cells[series.cell];
            group(report, series).map(|g| {
                let value = match c.workload {
                    Workload::Contended
                    | Workload::Overcommit
                    | Workload::Scale
                    | Workload::Mutex => {
                        format!("{} acq/s", rate(g.per_sec.median))
                    }
                    Workload::Uncontended => time(g.ns_per_op.median),
                };
                format!("pv {} {value} ({})", c.pv.name(), g.slowpath)
            })
        };
        if let (Some(num), Some(den)) = (
            side(&ratio.numerator),
            ratio.denominator.as_ref().and_then(side),
        ) {
            let _ = write!(out, "; {num}, {den}");
        }
        out.push('\n');
    }
}

fn ratio_lines(out: &mut String, report: &Report) {
    ratio_list(out, report, &report.ratios);
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

pub(super) fn markdown(report: &Report) -> String {
    let meta = &report.meta;
    let mut out = String::new();
    let boots = report.runs.len();
    let failed = report.runs.iter().filter(|r| !r.ok()).count();
    let _ = writeln!(out, "# Lock benchmark: `lockstorm`, PV on and off\n");
    let _ = writeln!(
        out,
        "`{}` on {}: guest {} at commit {}; {} per cell, rounds interleaved{}; {boots} boots in {:.1} min.\n",
        meta.command,
        meta.date,
        meta.guest.as_deref().unwrap_or("(no banner seen)"),
        meta.git,
        plural(meta.reps, "rep"),
        if meta.max_reps > meta.first_reps {
            format!(
                " (the first {}, then more while a goal's figure was unsettled, up to {})",
                meta.first_reps, meta.max_reps
            )
        } else {
            String::new()
        },
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
    goals::goals_section(&mut out, report);
    let steal = report
        .cells
        .iter()
        .find(|c| c.host == HostKind::Pvhost)
        .map_or(PVHOST_STEAL, |c| c.steal);
    let _ = write!(
        out,
        "Each figure is the median over the reps, with its spread: min..max and IQR \
         (interquartile range over the median). A ratio is the median of the per-round \
         ratios (the two runs of one round), with its 95% CI: the percentile bootstrap \
         of that median, 10,000 resamples of the rounds, from a fixed seed; \
         \"inconclusive\" where the CI straddles 1x (or the goal's bar). PV on is the default boot; PV off boots \
         with `pv=off` (on nested-kvm and pvhost also `--pv off`: the host offers nothing). \
         pvhost preempts every vCPU on the schedule `--steal {steal}` (period µs, \
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
         ended), medians over the runs. Gap p50/p99 (where the guest prints \
         them): from an unlock to the next owner holding the lock, when a waiter \
         was waiting, per-run percentiles, medians over the runs. The qspinlock's \
         slow-path counters (where printed): `halts` (waiters that halted), `kicks` \
         (kicks sent), `kicks_unhalted` (kicks to a waiter not halted), \
         `handover_halted` / `handover_preempted` (hand-overs to a halted queue \
         head / to a waiter on a preempted vCPU), `steals` (acquisitions ahead of \
         the queue), `steals_head_halted` (steals while the queue's head was \
         halted).\n\n",
    );
    out.push_str("## Ratios (reported, not asserted)\n\n");
    ratio_lines(&mut out, report);
    goals::versus_linux_section(&mut out, report);
    let mut hosts: Vec<HostKind> = Vec::new();
    for cell in &report.cells {
        if !hosts.contains(&cell.host) {
            hosts.push(cell.host);
        }
    }
    for host in hosts {
        let mut arches: Vec<Arch> = Vec::new();
        for c in report.cells.iter().filter(|c| c.host == host) {
            if !arches.contains(&c.arch) {
                arches.push(c.arch);
            }
        }
        let _ = writeln!(out, "\n## {}", host_title(host, meta.l1_load, &arches));
        type Table = fn(&mut String, &Report, HostKind);
        // The overcommit workload's cell goes in the contended table.
        let sections: [(Workload, &str, &str, Table); 3] = [
            (
                Workload::Contended,
                "Contended",
                "; cs=50 out=100",
                contended_tables,
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
            if report.cells.iter().any(|c| {
                c.host == host && (c.workload == workload || contended(c) && workload.contended())
            }) {
                let args = workload.app_args().join(" ");
                let _ = writeln!(out, "\n{title} (`{args}`{note}):\n");
                table(&mut out, report, host);
            }
        }
    }
    let _ = writeln!(out, "\n## How it ran\n");
    let _ = writeln!(
        out,
        "- command: `{}`; guest `{}` (copied to `target/{}/` at the start, booted from there); L0 QEMU: {}{}",
        meta.command,
        meta.image.display(),
        meta.copy_dir,
        meta.qemu,
        if meta.l1_load > 0 {
            format!("; nested-kvm with {} busy loops in L1", meta.l1_load)
        } else {
            String::new()
        }
    );
    if report
        .cells
        .iter()
        .any(|c| c.host == HostKind::Pvhost && c.arch == Arch::Loongarch64)
    {
        out.push_str(
            "- LoongArch pvhost: that QEMU's source patched with `host/qemu-loongarch-kvm-pv.patch` (`target/qemu-pv/`)\n",
        );
    }
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

#[cfg(test)]
mod tests {
    use super::super::tests::report;
    use super::*;

    #[test]
    fn markdown_has_tables_ratios_and_provenance() {
        let md = markdown(&report());
        for needed in [
            "`cargo xtask bench --suite locks --hosts tcg` on 2026-01-02T03:04:05Z: guest lodger 0.1.0 (aarch64) at commit 0123456789ab; 2 reps per cell",
            "**Smoke run**",
            "**1 of 20 runs failed**",
            "## tcg: QEMU TCG",
            "| smp | kind | pv | slow path | acq/s |",
            "| 4 | qspinlock | on | halt | **3.00k** | 2.00k..4.00k | 33.3% | 0.90 / 1.10 | 448 ns | 106 µs | 6.00 ms | 320 ns | 81.9 µs | 2 |",
            "| 4 | qspinlock | off | spin | **1.00k** | 1.00k..1.00k | 0.0% | 0.90 / 1.10 | 448 ns | 106 µs | 6.00 ms | 320 ns | 81.9 µs | 1 |",
            "qspinlock slow-path counters (medians over the runs, per 300 ms run):",
            "| smp | pv | slow path | halts | kicks | kicks_unhalted | handover_halted | handover_preempted | steals | steals_head_halted | runs |",
            "| 4 | on | halt | 120 | 118 | 3 | 40 | 7 | 900 | 12 | 2 |",
            "| 2 | off | spin | 0 | 0 | 3 | 40 | 7 | 900 | 12 | 2 |",
            "| 16 | qspinlock | on | halt | **3.00k** |",
            "- tcg smp 16 (16 vCPUs on this machine's 2 cores): qspinlock throughput, PV on / PV off: **2.00x**",
            "| tas | on | - | **1.27 µs** | 1.27 µs..1.27 µs | 0.0% | 2 |",
            "- tcg smp 4: qspinlock throughput, PV on / PV off: **2.00x** (95% CI 2.00x..2.00x, median of 1 paired round, min..max 2.00x..2.00x; ahead: the CI is above 1x); pv on 3.00k acq/s (halt), pv off 1.00k acq/s (spin)",
            "- tcg smp 2 (no overcommit): PV-on overhead, qspinlock throughput: **-100.0%** (1 - on/off; on/off 2.00x, 95% CI 2.00x..2.00x, median of 2 paired rounds, min..max 2.00x..2.00x; goal <= 2.0%: met)",
            "- tcg pv on: uncontended lock+unlock: tas 1.27 µs, ticket 1.27 µs, mcs 1.27 µs, qspinlock 1.27 µs",
            "| 2 | `cargo xtask run --host tcg --smp 4 --app lockstorm --bootargs pv=off -- ms=300 slowpath=boot` | 1/2 | 1.5 s |",
            "Sleeping mutex (`kinds=mutex ms=300`; cs=50 out=100, one pinned thread per CPU):",
            "| smp | policy | pv | acq/s | min..max | IQR | fair min / max | p50 | p99 | max | spun | slept | preempted owner | runs |",
            "| 4 | sleep | on | **1.50k** | 1.00k..2.00k | 33.3% | 0.90 / 1.10 | 448 ns | 106 µs | 6.00 ms | 10 | 100 | 0 | 2 |",
            "| 4 | spin-owner-pv | off | **4.50k** | 3.00k..6.00k | 33.3% | 0.90 / 1.10 | 448 ns | 106 µs | 6.00 ms | 30 | 33 | 0 | 2 |",
            "- tcg smp 4 pv on (no hypervisor: the check sees no preemption): mutex spin-owner-pv / spin-owner, throughput: **1.50x** (95% CI 1.50x..1.50x, median of 2 paired rounds, min..max 1.50x..1.50x; ahead: the CI is above 1x); pv on 4.50k acq/s (spin-owner-pv), pv on 3.00k acq/s (spin-owner)",
            "- tcg smp 4 pv off (pv=off: the check sees no preemption): mutex spin-owner-pv / sleep, throughput: **3.00x**",
            "## Goals",
            "- **not measured in this run**: nested-kvm smp 4: PV-on / native qspinlock throughput >= 1.0x (aim 1.5x)",
            "- **met**: tcg smp 2 (no overcommit): PV-on overhead <= 2% (PV on / off >= 0.98x)\n  - tcg smp 2 (no overcommit): qspinlock throughput, PV on / PV off: 2.00x, 95% CI 2.00x..2.00x over 2 rounds (overhead -100.0%, CI -100.0%..-100.0%); >= 0.98x: **met**",
            "  - tcg smp 16 (16 vCPUs on this machine's 2 cores): qspinlock fairness, fair_min / fair_max: 0.82, 95% CI 0.82..0.82 over 2 rounds; >= 0.50: **met**",
            "## Lodger's default against Linux's choice",
            "- tcg smp 16 (16 vCPUs on this machine's 2 cores): lodger default (qspinlock, PV on) / Linux's choice (qspinlock, pv off), throughput: **2.00x** (95% CI 2.00x..2.00x, median of 2 paired rounds",
            "| 10 | `cargo xtask run --host tcg --smp 4 --app lockstorm --bootargs pv=off -- kinds=mutex ms=300` | 2/2 | 1.5 s |",
        ] {
            assert!(md.contains(needed), "locks.md lacks {needed:?}:\n{md}");
        }
    }
}
