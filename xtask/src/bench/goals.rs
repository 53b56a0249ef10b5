//! What the project asks of the locks (docs/bench.md, "Goals"), as figures with a bar each, and the
//! comparison with Linux's choice of lock.
//!
//! A goal is one or more parts; a part is a ratio (or, for fairness, a
//! figure of one line) per round with its 95% CI ([`super::ci`]) and the
//! bar it should reach: met when the whole interval is at or above it,
//! not met when the whole interval is below, else inconclusive. A goal is
//! met when every part is, not met when any part is not. A goal whose
//! cells this run did not boot (`--hosts`, `--workloads`) is "not
//! measured".
//!
//! The parts also steer the adaptive rounds (`--max-reps`): a part is
//! unsettled while its interval contains its bar (for the bars of 1x:
//! straddles 1x) or is wider than ±25% of its median. The bar, not 1x,
//! for the others: the PV-on overhead on TCG compares two native boots
//! whose ratio is 1x by design, and what it asks is whether the ratio is
//! above 0.98; likewise qspinlock against tas at 16 CPUs asks about 0.5x.

use super::ci::Verdict;
use super::locks::{
    qspinlock, Cell, Ratio, RunRecord, Workload, ARCH, OVERHEAD_GOAL, SMP, SMP_NO_OVERCOMMIT,
    SMP_OVERCOMMIT, SMP_SCALE,
};
use super::stats::{Metric, Series};
use crate::arch::Arch;
use crate::host::{HostKind, Pv};

/// One figure of a goal and its bar.
#[derive(Debug)]
pub struct Part {
    pub ratio: Ratio,
    /// At least this.
    pub bar: f64,
    /// What the project hopes for beyond the bar (reported, not judged on).
    pub aim: Option<f64>,
    /// A PV-on overhead: shown as `1 - ratio` too.
    pub overhead: bool,
}

impl Part {
    pub fn verdict(&self) -> Verdict {
        self.ratio
            .ci
            .map_or(Verdict::Inconclusive, |ci| ci.at_least(self.bar))
    }

    /// Whether more rounds could still tell: no interval yet, or one that
    /// contains the bar or is wider than ±[`super::ci::SETTLED_HALF_WIDTH`].
    pub fn unsettled(&self) -> bool {
        self.ratio
            .ci
            .is_none_or(|ci| ci.straddles(self.bar) || ci.too_wide())
    }
}

/// One goal of the locks (docs/bench.md, "Goals").
#[derive(Debug)]
pub struct Goal {
    /// What the goal asks, for a person.
    pub what: String,
    /// Empty: not measured in this run.
    pub parts: Vec<Part>,
}

impl Goal {
    /// `None`: not measured.
    pub fn verdict(&self) -> Option<Verdict> {
        (!self.parts.is_empty()).then(|| Verdict::all(self.parts.iter().map(Part::verdict)))
    }
}

/// The lock Linux takes in a guest on `arch` under `host`, as (kind, PV
/// setting of the boot to take it from): on arm64 the native qspinlock
/// (arm64 has no PV spinlock: the `pv=off` boot's), on LoongArch under a
/// hypervisor test-and-set (`virt_spin_lock`, with the PV the host
/// offers), and without one (TCG: no hypervisor bit) the native qspinlock.
pub fn linux_choice(arch: Arch, host: HostKind) -> (&'static str, Pv) {
    match (arch, host) {
        (Arch::Aarch64, _) | (Arch::Loongarch64, HostKind::Tcg) => ("qspinlock", Pv::Off),
        (Arch::Loongarch64, _) => ("tas", Pv::On),
    }
}

/// How [`linux_choice`] reads in the report.
pub fn linux_choice_text(arch: Arch) -> &'static str {
    match arch {
        Arch::Aarch64 => "the native qspinlock (`kind=qspinlock` in the `pv=off` boot)",
        Arch::Loongarch64 => {
            "test-and-set (`kind=tas`) under a hypervisor, the native qspinlock (`pv=off`) without one (TCG)"
        }
    }
}

/// The cell `cell` is at among `cells`.
fn find(
    cells: &[Cell],
    arch: Arch,
    host: HostKind,
    smp: u16,
    pv: Pv,
    workload: Workload,
) -> Option<usize> {
    cells
        .iter()
        .position(|c| c.is(arch, host, smp, pv, workload))
}

/// `kind`'s lines in cell `cell`.
fn kind(cell: usize, kind: &'static str) -> Series {
    Series {
        cell,
        kind,
        slowpath: None,
    }
}

/// Per contended cell booted PV on: lodger's default (the qspinlock, PV
/// on) over Linux's choice ([`linux_choice`]) on the same host and CPUs.
pub fn versus_linux(cells: &[Cell], runs: &[RunRecord], l1_load: u8) -> Vec<Ratio> {
    cells
        .iter()
        .enumerate()
        .filter(|(_, c)| c.workload.contended() && c.pv == Pv::On)
        .filter_map(|(on, c)| {
            let (linux_kind, linux_pv) = linux_choice(c.arch, c.host);
            let linux = find(cells, c.arch, c.host, c.smp, linux_pv, c.workload)?;
            Some(Ratio::new(
                format!(
                    "{}: lodger default (qspinlock, PV on) / Linux's choice ({linux_kind}, pv {}), throughput",
                    c.host_label(l1_load),
                    linux_pv.name()
                ),
                Metric::PerSec,
                qspinlock(on),
                Some(kind(linux, linux_kind)),
                runs,
            ))
        })
        .collect()
}

/// The goals, in docs/bench.md's order, with the parts this run measured.
pub fn goals(cells: &[Cell], runs: &[RunRecord], l1_load: u8) -> Vec<Goal> {
    let label = |i: usize| cells[i].host_label(l1_load);
    let part = |what: String, num: Series, den: Option<Series>, metric, bar, aim| Part {
        ratio: Ratio::new(what, metric, num, den, runs),
        bar,
        aim,
        overhead: false,
    };
    // PV on over PV off, the qspinlock, on an arch, host and CPU count.
    let pv_ratio_of = |arch, host, smp, what: &str, bar, aim| {
        let on = find(cells, arch, host, smp, Pv::On, Workload::Contended)?;
        let off = find(cells, arch, host, smp, Pv::Off, Workload::Contended)?;
        Some(part(
            format!("{}: {what}", label(on)),
            qspinlock(on),
            Some(qspinlock(off)),
            Metric::PerSec,
            bar,
            aim,
        ))
    };
    let pv_ratio = |host, smp, what: &str, bar, aim| pv_ratio_of(ARCH, host, smp, what, bar, aim);
    // The overcommitted cells booted PV on (lodger's default).
    let overcommitted: Vec<usize> = (0..cells.len())
        .filter(|&i| cells[i].workload.contended() && cells[i].pv == Pv::On)
        .filter(|&i| cells[i].overcommitted())
        .collect();
    let against = |other: &'static str, bar| {
        overcommitted
            .iter()
            .map(move |&i| {
                part(
                    format!("{}: qspinlock / {other}, throughput", label(i)),
                    qspinlock(i),
                    Some(kind(i, other)),
                    Metric::PerSec,
                    bar,
                    None,
                )
            })
            .collect::<Vec<_>>()
    };
    let tcg16 = find(
        cells,
        ARCH,
        HostKind::Tcg,
        SMP_OVERCOMMIT,
        Pv::On,
        Workload::Overcommit,
    );
    let overhead_bar = 1.0 - OVERHEAD_GOAL;
    vec![
        Goal {
            what: format!("nested-kvm smp {SMP}: PV-on / native qspinlock throughput >= 1.0x (aim 1.5x)"),
            parts: pv_ratio(
                HostKind::NestedKvm,
                SMP,
                "PV qspinlock / native qspinlock (pv=off), throughput",
                1.0,
                Some(1.5),
            )
            .into_iter()
            .collect(),
        },
        Goal {
            what: format!(
                "tcg smp {SMP_NO_OVERCOMMIT} (no overcommit): PV-on overhead <= {:.0}% (PV on / off >= {overhead_bar:.2}x)",
                OVERHEAD_GOAL * 100.0
            ),
            parts: pv_ratio(
                HostKind::Tcg,
                SMP_NO_OVERCOMMIT,
                "qspinlock throughput, PV on / PV off",
                overhead_bar,
                None,
            )
            .map(|p| Part {
                overhead: true,
                ..p
            })
            .into_iter()
            .collect(),
        },
        Goal {
            what: format!(
                "pvhost smp {SMP}: PV / native qspinlock throughput >= 3x, the CI not straddling 1x"
            ),
            parts: [3.0, 1.0]
                .into_iter()
                .filter_map(|bar| {
                    pv_ratio(
                        HostKind::Pvhost,
                        SMP,
                        "PV qspinlock / native qspinlock (pv=off), throughput",
                        bar,
                        None,
                    )
                })
                .collect(),
        },
        Goal {
            what: format!("tcg smp {SMP_OVERCOMMIT}: qspinlock >= 0.5x of tas throughput (PV on)"),
            parts: tcg16
                .map(|i| {
                    part(
                        format!("{}: qspinlock / tas, throughput", label(i)),
                        qspinlock(i),
                        Some(kind(i, "tas")),
                        Metric::PerSec,
                        0.5,
                        None,
                    )
                })
                .into_iter()
                .collect(),
        },
        Goal {
            what: format!(
                "tcg smp {SMP_SCALE}, each arch: qspinlock ahead of ticket and of MCS (throughput)"
            ),
            parts: (0..cells.len())
                .filter(|&i| cells[i].workload == Workload::Scale)
                .flat_map(|i| {
                    ["ticket", "mcs"].map(|other| {
                        part(
                            format!("{}: qspinlock / {other}, throughput", label(i)),
                            qspinlock(i),
                            Some(kind(i, other)),
                            Metric::PerSec,
                            1.0,
                            None,
                        )
                    })
                })
                .collect(),
        },
        Goal {
            what: "qspinlock (PV on) ahead of ticket and of MCS on every overcommitted cell (nested-kvm, pvhost, tcg smp 16 and 64)".into(),
            parts: [against("ticket", 1.0), against("mcs", 1.0)]
                .into_iter()
                .flatten()
                .collect(),
        },
        Goal {
            what: "qspinlock (PV on) within 20% of tas (>= 0.8x) with fairness fair_min/fair_max >= 0.5, on every overcommitted cell".into(),
            parts: overcommitted
                .iter()
                .zip(against("tas", 0.8))
                .flat_map(|(&i, tas)| {
                    let fairness = part(
                        format!("{}: qspinlock fairness, fair_min / fair_max", label(i)),
                        qspinlock(i),
                        None,
                        Metric::Fairness,
                        0.5,
                        None,
                    );
                    [tas, fairness]
                })
                .collect(),
        },
        Goal {
            what: format!(
                "pvhost loongarch64 smp {SMP}: lodger's default ahead of its native qspinlock (pv=off) and of Linux's choice there, test-and-set (>= 1x each)"
            ),
            parts: pv_ratio_of(
                Arch::Loongarch64,
                HostKind::Pvhost,
                SMP,
                "PV qspinlock / native qspinlock (pv=off), throughput",
                1.0,
                None,
            )
            .into_iter()
            .chain(
                find(cells, Arch::Loongarch64, HostKind::Pvhost, SMP, Pv::On, Workload::Contended)
                    .map(|i| {
                        let (linux_kind, _) = linux_choice(Arch::Loongarch64, HostKind::Pvhost);
                        part(
                            format!("{}: qspinlock / Linux's choice ({linux_kind}, PV on), throughput", label(i)),
                            qspinlock(i),
                            Some(kind(i, linux_kind)),
                            Metric::PerSec,
                            1.0,
                            None,
                        )
                    }),
            )
            .collect(),
        },
    ]
}

/// The parts more rounds could still settle, for the progress lines.
pub fn unsettled(goals: &[Goal]) -> Vec<&str> {
    goals
        .iter()
        .flat_map(|g| &g.parts)
        .filter(|p| p.unsettled())
        .map(|p| p.ratio.what.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bench::locks::{matrix, ARCHES, KINDS};
    use crate::bench::stats::Sample;

    /// One round of `cells`: every spinlock at `per_sec(cell, kind)`.
    fn round(cells: &[Cell], rep: usize, per_sec: impl Fn(&Cell, &str) -> f64) -> Vec<RunRecord> {
        let line = "lockstorm: kind=K slowpath=- cpus=4 cs=50 out=100 acquisitions=10 elapsed_ns=300 per_sec=1 fair_min=0.8 fair_max=1.2 p50_ns=1 p99_ns=2 max_ns=3 lost=0";
        cells
            .iter()
            .enumerate()
            .map(|(index, c)| RunRecord {
                seq: 0,
                rep,
                cell: index,
                wall: Duration::from_secs(1),
                outcome: "guest exited with status 0".into(),
                samples: KINDS
                    .iter()
                    .map(|&k| Sample {
                        kind: k.into(),
                        per_sec: per_sec(c, k),
                        ..crate::bench::stats::parse_line(line).unwrap().unwrap()
                    })
                    .collect(),
                error: None,
                console_tail: None,
                steal: None,
            })
            .collect()
    }

    #[test]
    fn goals_judge_each_part_on_its_interval() {
        let cells = matrix(
            &[HostKind::Tcg, HostKind::NestedKvm, HostKind::Pvhost],
            &[Workload::Contended, Workload::Overcommit],
            &[ARCH],
        );
        // PV on 2x PV off everywhere; the qspinlock 1.5x every other kind.
        let runs: Vec<RunRecord> = (0..5)
            .flat_map(|rep| {
                round(&cells, rep, |c, k| {
                    let pv = if c.pv == Pv::On { 2.0 } else { 1.0 };
                    let lock = if k == "qspinlock" { 1.5 } else { 1.0 };
                    pv * lock * (1.0 + rep as f64 * 0.01)
                })
            })
            .collect();
        let goals = goals(&cells, &runs, 0);
        let verdicts: Vec<Option<Verdict>> = goals.iter().map(Goal::verdict).collect();
        use Verdict::*;
        // nested 2x >= 1; overhead: on/off 2x >= 0.98; pvhost 2x < 3x;
        // tcg16 qspinlock / tas 1.5; no scale cell; ahead of ticket and
        // mcs; 1.5 >= 0.8 and fairness 0.8 / 1.2 >= 0.5.
        assert_eq!(
            verdicts,
            [
                Some(Met),
                Some(Met),
                Some(NotMet),
                Some(Met),
                None,
                Some(Met),
                Some(Met),
                None
            ]
        );
        assert!(goals[4].parts.is_empty(), "no scale cell here");
        assert!(goals[7].parts.is_empty(), "no LoongArch pvhost cell here");
        assert_eq!(
            goals[5].parts.len(),
            6,
            "3 overcommitted cells x ticket, mcs"
        );
        assert_eq!(goals[6].parts.len(), 6, "3 cells x tas, fairness");
        assert_eq!(
            goals[6].parts[1].ratio.what,
            "tcg smp 16 (16 vCPUs on this machine's 2 cores): qspinlock fairness, fair_min / fair_max"
        );
        assert!((goals[6].parts[1].ratio.ci.unwrap().median - 0.8 / 1.2).abs() < 1e-9);
        // Settled: narrow intervals away from their bars; pvhost's 3x bar
        // is not in its interval either.
        assert_eq!(unsettled(&goals), [""; 0]);
        assert_eq!(goals[0].parts[0].aim, Some(1.5));

        // Without nested-kvm and pvhost those goals are not measured.
        let tcg = matrix(&[HostKind::Tcg], &[Workload::Contended], &[ARCH]);
        let runs = round(&tcg, 0, |_, _| 1.0);
        let goals = super::goals(&tcg, &runs, 0);
        assert_eq!(goals[0].verdict(), None);
        assert_eq!(goals[1].parts.len(), 1);
        assert!(goals[1].parts[0].overhead);
        // One round of 1x: the overhead bar 0.98 is below the interval.
        assert_eq!(goals[1].verdict(), Some(Met));
        assert_eq!(goals[4].verdict(), None);
    }

    #[test]
    fn ratios_straddling_their_bar_are_unsettled() {
        let cells = matrix(&[HostKind::NestedKvm], &[Workload::Contended], &ARCHES);
        let runs: Vec<RunRecord> = (0..5)
            .flat_map(|rep| {
                round(&cells, rep, |c, _| {
                    let noise = [0.8, 1.3, 0.9, 1.2, 1.05][rep];
                    if c.pv == Pv::On {
                        noise
                    } else {
                        1.0
                    }
                })
            })
            .collect();
        let goals = goals(&cells, &runs, 2);
        let part = &goals[0].parts[0];
        assert_eq!(part.verdict(), Verdict::Inconclusive);
        assert!(part.unsettled());
        // Every kind alike within a boot: qspinlock / ticket and / mcs are
        // 1x, on their bar, too.
        let cell = "nested-kvm smp 4 (4 vCPUs on L1's 2 CPUs, 2 busy loops in L1 (--l1-load 2))";
        assert_eq!(
            unsettled(&goals),
            [
                format!("{cell}: PV qspinlock / native qspinlock (pv=off), throughput"),
                format!("{cell}: qspinlock / ticket, throughput"),
                format!("{cell}: qspinlock / mcs, throughput"),
            ]
        );
    }

    #[test]
    fn linux_takes_the_native_qspinlock_on_arm64_and_tas_on_loongarch() {
        assert_eq!(
            linux_choice(Arch::Aarch64, HostKind::Pvhost),
            ("qspinlock", Pv::Off)
        );
        assert_eq!(
            linux_choice(Arch::Loongarch64, HostKind::Pvhost),
            ("tas", Pv::On)
        );
        assert_eq!(
            linux_choice(Arch::Loongarch64, HostKind::Kvm),
            ("tas", Pv::On)
        );
        // No hypervisor bit under TCG: Linux keeps its qspinlock.
        assert_eq!(
            linux_choice(Arch::Loongarch64, HostKind::Tcg),
            ("qspinlock", Pv::Off)
        );
        let cells = matrix(
            &[HostKind::Tcg],
            &[Workload::Contended, Workload::Overcommit],
            &ARCHES,
        );
        let runs = round(&cells, 0, |c, _| if c.pv == Pv::On { 3.0 } else { 2.0 });
        let ratios = versus_linux(&cells, &runs, 0);
        let whats: Vec<&str> = ratios.iter().map(|r| r.what.as_str()).collect();
        assert_eq!(
            whats,
            [
                "tcg smp 4: lodger default (qspinlock, PV on) / Linux's choice (qspinlock, pv off), throughput",
                "tcg smp 2 (no overcommit): lodger default (qspinlock, PV on) / Linux's choice (qspinlock, pv off), throughput",
                "tcg smp 16 (16 vCPUs on this machine's 2 cores): lodger default (qspinlock, PV on) / Linux's choice (qspinlock, pv off), throughput",
            ]
        );
        assert_eq!(ratios[2].paired, [1.5]);
    }

    #[test]
    fn loongarch_pvhost_is_held_to_its_native_mode_and_to_tas() {
        let cells = matrix(&[HostKind::Pvhost], &[Workload::Contended], &ARCHES);
        // aarch64's pair, then LoongArch's.
        assert_eq!(cells.len(), 4);
        assert_eq!(cells[2].arch, Arch::Loongarch64);
        // aarch64: PV 4x native; LoongArch: PV 2x native, and its
        // qspinlock (PV on) 1.2x tas (PV on).
        let runs: Vec<RunRecord> = (0..5)
            .flat_map(|rep| {
                round(&cells, rep, |c, k| {
                    let jitter = 1.0 + rep as f64 * 0.01;
                    jitter
                        * match (c.arch, c.pv, k) {
                            (Arch::Aarch64, Pv::On, _) => 4.0,
                            (Arch::Aarch64, Pv::Off, _) => 1.0,
                            (Arch::Loongarch64, Pv::On, "qspinlock") => 2.4,
                            (Arch::Loongarch64, Pv::On, _) => 2.0,
                            (Arch::Loongarch64, Pv::Off, _) => 1.2,
                        }
                })
            })
            .collect();
        let goals = goals(&cells, &runs, 0);
        // The aarch64 pvhost goal is aarch64's alone: 4x, met.
        assert_eq!(goals[2].verdict(), Some(Verdict::Met));
        assert!(goals[2].parts.iter().all(|p| p.ratio.numerator.cell == 0));
        let la = &goals[7];
        assert_eq!(la.parts.len(), 2);
        assert_eq!(la.verdict(), Some(Verdict::Met));
        let medians: Vec<f64> = la
            .parts
            .iter()
            .map(|p| p.ratio.ci.unwrap().median)
            .collect();
        assert!((medians[0] - 2.0).abs() < 1e-9, "{medians:?}");
        assert!((medians[1] - 1.2).abs() < 1e-9, "{medians:?}");
        assert_eq!(
            la.parts[1].ratio.what,
            "pvhost loongarch64 smp 4 (half of each vCPU's time stolen, staggered: periodic:10000,50,2500): qspinlock / Linux's choice (tas, PV on), throughput"
        );
        // Linux's choice: on aarch64 the native qspinlock of aarch64's
        // pv=off boot, on LoongArch tas of LoongArch's own PV-on boot.
        let versus = versus_linux(&cells, &runs, 0);
        assert_eq!(versus.len(), 2);
        assert_eq!(
            (
                versus[0].numerator.cell,
                versus[0].denominator.unwrap().cell
            ),
            (0, 1)
        );
        assert_eq!(
            (
                versus[1].numerator.cell,
                versus[1].denominator.unwrap().cell
            ),
            (2, 2)
        );
        assert_eq!(versus[1].denominator.unwrap().kind, "tas");
        assert!((versus[1].ci.unwrap().median - 1.2).abs() < 1e-9);
    }
}
