//! `cargo xtask bench --suite boot`: boot time against the vCPU count, on
//! both architectures under TCG. Each boot runs the selftest's
//! `all-cpus-online` and reads the kernel's own line, `boot time T ms
//! (entry to app start, guest time): PHASE MS ...`; rounds are interleaved
//! (every cell once, then again), so a slow stretch of the machine touches
//! all cells alike. Each boot's share of time its QEMU threads waited for a
//! host CPU (`crate::interference`) is kept beside its figure: on this
//! 2-core machine it is most of what moves the figures.
//!
//! Output: `target/bench/boot.{md,json,svg}`. The report gives, per arch
//! and CPU count, the median boot time, its spread and 95% CI, the median
//! of each phase, and the growth per doubling of the CPU count (linear
//! growth is 2x per doubling at most).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use serde::Serialize;
use serde_json::json;

use super::ci::Ci;
use super::stats::Spread;
use crate::arch::Arch;
use crate::host::{Host, Preparations};
use crate::qemu::{self, Boot};
use crate::{build, cmd, progress};

/// The CPU counts of a full run: powers of two up to the kernel's maximum.
pub const DEFAULT_CPUS: [u16; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];
/// What each boot runs: the shortest selftest that needs every CPU online.
const APP_ARGS: &str = "all-cpus-online";

/// What the suite runs.
#[derive(Debug)]
pub struct Options {
    pub reps: usize,
    pub arches: Vec<Arch>,
    pub cpus: Vec<u16>,
    pub timeout: Option<Duration>,
    pub images: Vec<(Arch, PathBuf)>,
    pub verbose: bool,
}

/// One boot's figures.
#[derive(Clone, Debug, Serialize)]
struct Record {
    arch: &'static str,
    cpus: u16,
    rep: usize,
    /// `None`: the boot failed (`error` says why).
    boot_ms: Option<f64>,
    phases: Vec<(String, f64)>,
    wait_share: Option<f64>,
    error: Option<String>,
}

/// `boot time T ms (...): NAME MS NAME MS ... ms` -> T and the phases.
fn parse(console: &str) -> Option<(f64, Vec<(String, f64)>)> {
    let line = console.lines().find(|l| l.contains("boot time "))?;
    let rest = &line[line.find("boot time ")? + "boot time ".len()..];
    let total: f64 = rest.split_whitespace().next()?.parse().ok()?;
    let phases = rest.split_once("): ").map_or(Vec::new(), |(_, p)| {
        let words: Vec<&str> = p.split_whitespace().collect();
        words
            .chunks(2)
            .filter_map(|w| Some((w[0].to_owned(), w.get(1)?.parse().ok()?)))
            .collect()
    });
    Some((total, phases))
}

fn boot_once(
    arch: Arch,
    cpus: u16,
    rep: usize,
    image: &Path,
    options: &Options,
    prep: &mut Preparations,
) -> Record {
    let mut record = Record {
        arch: arch.name(),
        cpus,
        rep,
        boot_ms: None,
        phases: Vec::new(),
        wait_share: None,
        error: None,
    };
    let boot = Boot {
        arch,
        host: Host::Tcg,
        smp: cpus,
        mem: qemu::GUEST_MEMORY,
        el2: false,
        image: image.to_owned(),
        bootargs: format!("app=selftest -- {APP_ARGS}"),
    };
    let timeout = options.timeout.unwrap_or(Duration::from_secs(120));
    let run = boot
        .command(prep)
        .and_then(|launch| qemu::run(launch, timeout, options.verbose));
    match run {
        Err(e) => record.error = Some(format!("{e:#}")),
        Ok(run) => {
            record.wait_share = run.interference.map(|s| s.wait_share());
            let online = format!("CPUs online: {cpus} of {cpus}");
            match parse(&run.console) {
                _ if !run.console.contains(&online) => {
                    record.error = Some(format!("no `{online}` ({})", run.outcome));
                }
                Some((total, phases)) => {
                    record.boot_ms = Some(total);
                    record.phases = phases;
                }
                None => record.error = Some(format!("no boot time line ({})", run.outcome)),
            }
        }
    }
    record
}

/// One row of the report.
#[derive(Debug, Serialize)]
struct Row {
    arch: &'static str,
    cpus: u16,
    boots: usize,
    failed: usize,
    spread: Option<Spread>,
    ci: Option<Ci>,
    /// The median of each phase, in the kernel's order.
    phases: Vec<(String, f64)>,
    wait_share_median: Option<f64>,
    /// Median at this count / median at the count before (the previous
    /// row of this arch).
    growth: Option<f64>,
}

fn rows(records: &[Record], options: &Options) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for &arch in &options.arches {
        let mut before: Option<(u16, f64)> = None;
        for &cpus in &options.cpus {
            let mine: Vec<&Record> = records
                .iter()
                .filter(|r| r.arch == arch.name() && r.cpus == cpus)
                .collect();
            let times: Vec<f64> = mine.iter().filter_map(|r| r.boot_ms).collect();
            let spread = Spread::of(&times);
            let mut phases: Vec<(String, f64)> = Vec::new();
            if let Some(first) = mine.iter().find(|r| r.boot_ms.is_some()) {
                for (name, _) in &first.phases {
                    let values: Vec<f64> = mine
                        .iter()
                        .flat_map(|r| r.phases.iter())
                        .filter(|(n, _)| n == name)
                        .map(|&(_, v)| v)
                        .collect();
                    if let Some(s) = Spread::of(&values) {
                        phases.push((name.clone(), s.median));
                    }
                }
            }
            let waits: Vec<f64> = mine.iter().filter_map(|r| r.wait_share).collect();
            let growth = match (before, spread) {
                (Some((n, m)), Some(s)) if m > 0.0 => {
                    // Per doubling, so 1 -> 2 -> 4 ... and 3 -> 5 compare alike.
                    let doublings = (f64::from(cpus) / f64::from(n)).log2();
                    Some((s.median / m).powf(1.0 / doublings))
                }
                _ => None,
            };
            if let Some(s) = spread {
                before = Some((cpus, s.median));
            }
            rows.push(Row {
                arch: arch.name(),
                cpus,
                boots: mine.len(),
                failed: mine.iter().filter(|r| r.error.is_some()).count(),
                spread,
                ci: Ci::of(&times),
                phases,
                wait_share_median: Spread::of(&waits).map(|s| s.median),
                growth,
            });
        }
    }
    rows
}

pub fn main(options: Options) -> Result<ExitCode> {
    let dir = cmd::target_dir().join("bench");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut images = Vec::new();
    for &arch in &options.arches {
        let built = match options.images.iter().find(|(a, _)| *a == arch) {
            Some((_, image)) => image.clone(),
            None => build::image(arch)?,
        };
        // A copy: a build in another shell must not change the guest mid-run.
        let image = dir.join(format!("boot-{}-guest.elf", arch.name()));
        fs::copy(&built, &image).with_context(|| format!("copying {}", built.display()))?;
        images.push((arch, image));
    }
    let cells: Vec<(Arch, u16)> = options
        .arches
        .iter()
        .flat_map(|&a| options.cpus.iter().map(move |&n| (a, n)))
        .collect();
    eprintln!(
        "bench: boot: {} cells x {} rounds = {} boots",
        cells.len(),
        options.reps,
        cells.len() * options.reps
    );
    let start = Instant::now();
    // A live line on a terminal (not while `--verbose` streams consoles),
    // else a line per boot ([`progress::Step`]).
    let step = progress::Step::with_mode("bench: boot", progress::live() && !options.verbose);
    let mut prep = Preparations::default();
    let mut records = Vec::new();
    let total = cells.len() * options.reps;
    for rep in 0..options.reps {
        for &(arch, cpus) in &cells {
            let image = &images.iter().find(|(a, _)| *a == arch).expect("built").1;
            let what = format!(
                "bench: boot {}/{total}: {} smp {cpus}, round {}/{}",
                records.len() + 1,
                arch.name(),
                rep + 1,
                options.reps,
            );
            let (done, all) = (records.len() as u64, total as u64);
            step.count(
                done,
                Some(all),
                progress::linear_left(done, all, start.elapsed()),
            );
            step.message(&format!(
                "{} smp {cpus}, round {}/{}",
                arch.name(),
                rep + 1,
                options.reps
            ));
            if !step.is_live() {
                eprint!(
                    "{what} ({:.0} s so far) ... ",
                    start.elapsed().as_secs_f64()
                );
            }
            let record = boot_once(arch, cpus, rep, image, &options, &mut prep);
            match (&record.boot_ms, &record.error) {
                (_, Some(e)) if step.is_live() => progress::say(&format!("{what}: FAILED: {e}")),
                (_, Some(e)) => eprintln!("FAILED: {e}"),
                (Some(ms), None) => step.plain(&format!("{ms:.1} ms")),
                (None, None) => step.plain("no figure"),
            }
            records.push(record);
        }
    }
    drop(step);
    let rows = rows(&records, &options);
    let command = format!(
        "cargo xtask {}",
        cmd::quote(&std::env::args().skip(1).collect::<Vec<_>>())
    );
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let value = json!({ "command": command, "date": date, "rows": rows, "boots": records });
    let files = super::render::write_files(
        &dir,
        "boot",
        markdown(&rows, &command, &date, options.reps),
        &value,
        &svg(&rows)?,
    )?;
    print!("{}", files.markdown_text);
    eprintln!(
        "bench: boot: wrote {}, {} and {} in {:.0} s",
        files.markdown.display(),
        files.json.display(),
        files.svg.display(),
        start.elapsed().as_secs_f64()
    );
    if records.iter().all(|r| r.error.is_some()) {
        bail!("every boot failed");
    }
    Ok(ExitCode::SUCCESS)
}

fn markdown(rows: &[Row], command: &str, date: &str, reps: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Boot time against the vCPU count (TCG)\n");
    let _ = writeln!(
        out,
        "`{command}`, {date}: {reps} boots per cell, interleaved. Boot time is the kernel's \
         own figure, entry to app start in guest time (under TCG: this machine's time, \
         translation included). `wait` is the median share of time QEMU's threads waited \
         for a host CPU. Growth: the median over the previous row's, per doubling of the \
         CPU count (2.00x per doubling is linear).\n"
    );
    let _ = writeln!(
        out,
        "| arch | vCPUs | boot ms (median) | min..max | 95% CI | growth per doubling | wait | failed | phases (median ms) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in rows {
        let (median, range) = r.spread.map_or(("-".into(), "-".into()), |s| {
            (
                format!("{:.1}", s.median),
                format!("{:.1}..{:.1}", s.min, s.max),
            )
        });
        let ci =
            r.ci.map_or("-".into(), |c| format!("{:.1}..{:.1}", c.low, c.high));
        let growth = r.growth.map_or("-".into(), |g| format!("{g:.2}x"));
        let wait = r
            .wait_share_median
            .map_or("-".into(), |w| format!("{:.0}%", 100.0 * w));
        let phases: Vec<String> = r
            .phases
            .iter()
            .map(|(n, v)| format!("{n} {v:.1}"))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {median} | {range} | {ci} | {growth} | {wait} | {}/{} | {} |",
            r.arch,
            r.cpus,
            r.failed,
            r.boots,
            phases.join(", ")
        );
    }
    let _ = writeln!(out);
    for arch in ["aarch64", "loongarch64"] {
        let worst = rows
            .iter()
            .filter(|r| r.arch == arch)
            .filter_map(|r| r.growth.map(|g| (g, r.cpus)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((g, cpus)) = worst {
            let _ = writeln!(
                out,
                "- {arch}: steepest growth {g:.2}x per doubling (up to {cpus} vCPUs): {}",
                if g <= 2.0 {
                    "no worse than linear"
                } else {
                    "worse than linear"
                }
            );
        }
    }
    out
}

fn svg(rows: &[Row]) -> Result<String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (800, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let max_cpus = rows.iter().map(|r| r.cpus).max().unwrap_or(2).max(2);
        let max_ms = rows
            .iter()
            .filter_map(|r| r.spread.map(|s| s.max))
            .fold(1.0_f64, f64::max);
        let min_ms = rows
            .iter()
            .filter_map(|r| r.spread.map(|s| s.min))
            .fold(max_ms, f64::min)
            .max(0.1);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "lodger boot time (entry to app, guest time) under TCG",
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (1.0_f64..f64::from(max_cpus)).log_scale(),
                (min_ms / 1.5..max_ms * 1.5).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("vCPUs")
            .y_desc("ms")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()?;
        for (arch, color) in [
            ("aarch64", RGBColor(31, 119, 180)),
            ("loongarch64", RGBColor(255, 127, 14)),
        ] {
            let points: Vec<(f64, Spread)> = rows
                .iter()
                .filter(|r| r.arch == arch)
                .filter_map(|r| Some((f64::from(r.cpus), r.spread?)))
                .collect();
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|&(x, s)| (x, s.median)),
                    color.stroke_width(2),
                ))?
                .label(arch)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart.draw_series(
                points
                    .iter()
                    .map(|&(x, s)| PathElement::new(vec![(x, s.min), (x, s.max)], color)),
            )?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;
        root.present()?;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_boot_time_line_and_its_phases() {
        let console = "[ 0.1 0] CPUs online: 4 of 4\n[   0.053 0] boot time 52.648 ms (entry to app start, guest time): entry 0.9 fdt 8.3 banner 5.7 ms\n";
        let (total, phases) = parse(console).unwrap();
        assert_eq!(total, 52.648);
        assert_eq!(
            phases,
            [
                ("entry".into(), 0.9),
                ("fdt".into(), 8.3),
                ("banner".into(), 5.7)
            ]
        );
        // An older kernel's line, without phases.
        let (total, phases) =
            parse("boot time 21.000 ms (entry to app start, guest time)").unwrap();
        assert_eq!((total, phases.len()), (21.0, 0));
        assert!(parse("no such line").is_none());
    }

    fn record(cpus: u16, ms: f64) -> Record {
        Record {
            arch: "aarch64",
            cpus,
            rep: 0,
            boot_ms: Some(ms),
            phases: vec![("fdt".into(), ms / 2.0)],
            wait_share: Some(0.1),
            error: None,
        }
    }

    #[test]
    fn growth_is_per_doubling() {
        let options = Options {
            reps: 1,
            arches: vec![Arch::Aarch64],
            cpus: vec![1, 4, 8],
            timeout: None,
            images: Vec::new(),
            verbose: false,
        };
        let records = [record(1, 10.0), record(4, 40.0), record(8, 120.0)];
        let rows = rows(&records, &options);
        assert_eq!(rows[0].growth, None);
        // 1 -> 4 is two doublings at 4x: 2x each, linear.
        assert!((rows[1].growth.unwrap() - 2.0).abs() < 1e-9);
        assert!((rows[2].growth.unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(rows[2].phases, [("fdt".into(), 60.0)]);
        let md = markdown(&rows, "cmd", "date", 1);
        assert!(
            md.contains("steepest growth 3.00x per doubling (up to 8 vCPUs): worse than linear"),
            "{md}"
        );
    }
}
