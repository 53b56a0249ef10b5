//! `locks.svg`: contended throughput per lock kind, PV on next to PV off,
//! a panel per host and CPU count, log scale, whiskers from min to max;
//! and a panel per host of the mutex per spin policy.

use anyhow::Result;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;

use super::super::locks::{self, Cell, Report, Workload, KINDS, MUTEX_POLICIES};
use super::super::stats::{Group, Spread};
use super::{axis_rate, plural, rate};
use crate::arch::Arch;
use crate::host::{HostKind, Pv};

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
fn host_caption(cell: &Cell) -> String {
    match (cell.host, cell.smp) {
        (HostKind::NestedKvm, smp) => format!("nested-kvm, smp {smp} ({smp} vCPUs on L1's 2 CPUs)"),
        (HostKind::Tcg, 2) => "tcg, smp 2 (no overcommit)".to_owned(),
        (HostKind::Tcg, 16) => "tcg, smp 16 (16 vCPUs on 2 cores)".to_owned(),
        (HostKind::Tcg, smp) if smp == locks::SMP_SCALE => {
            format!(
                "tcg {}, smp {smp} ({smp} vCPUs on 2 cores)",
                cell.arch.name()
            )
        }
        (HostKind::Pvhost, smp) => {
            format!(
                "{}, smp {smp} (steal {})",
                cell.host_arch_name(),
                cell.steal
            )
        }
        (host, smp) => format!("{}, smp {smp}", locks::host_name(host)),
    }
}

/// A panel per host and CPU count of the contended cells (a bar per lock
/// kind) and of the mutex cells (a bar per spin policy), PV on next to off.
fn panels(report: &Report) -> Vec<Panel> {
    let mut panels = Vec::new();
    let find = |arch, host, smp, pv, workload| {
        report
            .cells
            .iter()
            .position(|c| c.is(arch, host, smp, pv, workload))
    };
    let mut seen: Vec<(Arch, HostKind, u16, Workload)> = Vec::new();
    for cell in &report.cells {
        let key = (cell.arch, cell.host, cell.smp, cell.workload);
        if cell.workload == Workload::Uncontended || seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let (on, off) = (
            find(cell.arch, cell.host, cell.smp, Pv::On, cell.workload),
            find(cell.arch, cell.host, cell.smp, Pv::Off, cell.workload),
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
        let caption = host_caption(cell);
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

pub(super) fn svg(report: &Report) -> Result<String> {
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
    use super::super::tests::report;
    use super::*;

    #[test]
    fn decades() {
        assert_eq!(decade_below(178_215.0), 100_000.0);
        assert_eq!(decade_below(1.0), 1.0);
    }

    #[test]
    fn svg_has_a_panel_per_host_and_cpu_count() {
        let text = svg(&report()).unwrap();
        assert!(text.starts_with("<svg"), "{}", &text[..100]);
        for needed in [
            "tcg, smp 4",
            "tcg, smp 2 (no overcommit)",
            "tcg, smp 16 (16 vCPUs on 2 cores)",
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
