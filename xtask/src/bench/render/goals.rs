//! `locks.md`'s Goals section (at the top) and its comparison of lodger's
//! default lock with Linux's choice.

use std::fmt::Write as _;

use super::super::ci::Verdict;
use super::super::goals::{linux_choice_text, Part};
use super::super::locks::{Report, ARCH};
use super::markdown::{ci_text, ratio_list, times};
use super::{plural, signed_percent};
use crate::arch::Arch;

/// `1.62x, 95% CI 1.40x..1.80x over 5 paired rounds; >= 1.00x: met; aim
/// 1.50x: inconclusive` (an overhead bar also as percentages).
fn part_line(part: &Part) -> String {
    let r = &part.ratio;
    let Some(ci) = r.ci else {
        return format!(
            "no round with the runs successful; >= {}: inconclusive",
            times(r, part.bar)
        );
    };
    let mut line = format!(
        "{}, {} over {}",
        times(r, ci.median),
        ci_text(r, &ci),
        plural(r.paired.len(), "round")
    );
    if part.overhead {
        let _ = write!(
            line,
            " (overhead {}, CI {}..{})",
            signed_percent(1.0 - ci.median),
            signed_percent(1.0 - ci.high),
            signed_percent(1.0 - ci.low)
        );
    }
    let _ = write!(
        line,
        "; >= {}: **{}**",
        times(r, part.bar),
        part.verdict().name()
    );
    if let Some(aim) = part.aim {
        let _ = write!(line, "; aim {}: {}", times(r, aim), ci.at_least(aim).name());
    }
    line
}

/// The goals, each with its figures, CIs and verdict.
pub(super) fn goals_section(out: &mut String, report: &Report) {
    out.push_str(
        "## Goals\n\nEach judged on its figures' 95% bootstrap CIs over the paired rounds: \
         met when the whole interval is at or above the bar, not met when it is all below, \
         else inconclusive; a goal of several figures is met when all are.\n\n",
    );
    for goal in &report.goals {
        let verdict = goal
            .verdict()
            .map_or("not measured in this run", Verdict::name);
        let _ = writeln!(out, "- **{verdict}**: {}", goal.what);
        for part in &goal.parts {
            let _ = writeln!(out, "  - {}: {}", part.ratio.what, part_line(part));
        }
    }
    out.push('\n');
}

/// Lodger's default over Linux's choice, per contended cell.
pub(super) fn versus_linux_section(out: &mut String, report: &Report) {
    if report.versus_linux.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n## Lodger's default against Linux's choice\n\n{} Lodger's default: the qspinlock, PV on.\n",
        choice_sentence(report)
    );
    ratio_list(out, report, &report.versus_linux);
}

/// Linux's choice on the arch of the run's cells; with cells of both
/// arches, each cell is held to its own arch's.
fn choice_sentence(report: &Report) -> String {
    let has = |arch: Arch| report.cells.iter().any(|c| c.arch == arch);
    let arch = report.cells.first().map_or(ARCH, |c| c.arch);
    let other = match arch {
        Arch::Aarch64 => Arch::Loongarch64,
        Arch::Loongarch64 => Arch::Aarch64,
    };
    if has(other) {
        return format!(
            "Linux's choice, each cell against its own architecture's: on {} {}; on {} {}.",
            arch.name(),
            linux_choice_text(arch),
            other.name(),
            linux_choice_text(other)
        );
    }
    format!(
        "Linux's choice here ({}): {}. (On {} it is {}.)",
        arch.name(),
        linux_choice_text(arch),
        other.name(),
        linux_choice_text(other)
    )
}
