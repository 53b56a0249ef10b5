//! Running the `locks` suite: the rounds of boots, their progress lines,
//! and judging each boot's console into samples.

use super::*;

/// Boots `cells` (the first cell's guest architecture is the main one,
/// `--image`'s; the others are built) in rounds as `options`
/// say (from a copy of the guest in `target/TAG/`, [`Output`]) and
/// reports on the runs.
pub fn execute(cells: Vec<Cell>, options: &Options) -> Result<Report> {
    let Output { tag, stem } = options.output;
    let arch = cells.first().map_or(ARCH, |c| c.arch);
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let command = {
        let args: Vec<String> = std::env::args().skip(1).collect();
        format!("cargo xtask {}", cmd::quote(&args))
    };
    let dir = cmd::target_dir().join(tag);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // An image per arch of the cells (`--image` is the main arch's).
    let mut images: Vec<(Arch, PathBuf)> = Vec::new();
    let mut main_built = PathBuf::new();
    for cell in &cells {
        if images.iter().any(|(a, _)| *a == cell.arch) {
            continue;
        }
        let built = match &options.image {
            Some(image) if cell.arch == arch => image.clone(),
            _ => build::image(cell.arch)?,
        };
        if cell.arch == arch {
            main_built.clone_from(&built);
        }
        // Boot a copy: a build during the run (`cargo xtask test` in
        // another shell) would otherwise change the guest between rounds.
        let suffix = if cell.arch == arch {
            String::new()
        } else {
            format!("-{}", cell.arch.name())
        };
        let image = dir.join(format!("{stem}-guest{suffix}.elf"));
        fs::copy(&built, &image)
            .with_context(|| format!("copying {} to {}", built.display(), image.display()))?;
        images.push((cell.arch, image));
    }
    let git = git_version();
    let qemu = qemu_version(arch);

    let estimate: Duration =
        cells.iter().map(|c| c.estimate()).sum::<Duration>() * options.reps as u32;
    eprintln!(
        "{tag}: {stem}: {} cells x {} rounds = {} boots, about {} min{}",
        cells.len(),
        options.reps,
        cells.len() * options.reps,
        estimate.as_secs().div_ceil(60),
        if options.max_reps > options.reps {
            format!(
                "; up to {} rounds while a goal's figure is unsettled",
                options.max_reps
            )
        } else {
            String::new()
        }
    );

    let start = Instant::now();
    // A live line on a terminal (not while `--verbose` streams consoles),
    // else the lines below ([`progress::Step`]).
    let step = progress::Step::with_mode(tag, progress::live() && !options.verbose);
    let mut prep = Preparations::default();
    let mut runs: Vec<RunRecord> = Vec::new();
    let mut guest_version = None;
    let mut rounds = options.reps;
    let mut rep = 0;
    while rep < rounds {
        for (index, &cell) in cells.iter().enumerate() {
            let seq = runs.len();
            let total = (cells.len() * rounds) as u64;
            let (left, _) = left(&cells, &runs, index, rep, rounds);
            step.count(seq as u64, Some(total), Some(left));
            step.message(&format!(
                "{}, round {}",
                cell.label(),
                round_of(rep, options)
            ));
            step.plain(&progress(
                &cells,
                &runs,
                index,
                rep,
                rounds,
                options,
                start.elapsed(),
            ));
            let image = &images
                .iter()
                .find(|(a, _)| *a == cell.arch)
                .expect("built above")
                .1;
            let (record, console) = boot(cell, image, options, &mut prep, seq, rep, index);
            if guest_version.is_none() {
                guest_version = console.as_deref().and_then(stats::guest_version);
            }
            match &record.error {
                None => step.plain(&format!("{tag}: ok, {:.1} s", record.wall.as_secs_f64())),
                Some(why) => {
                    progress::say(&format!(
                        "{tag}: run FAILED after {:.1} s: {why}",
                        record.wall.as_secs_f64()
                    ));
                    if let Some(tail) = &record.console_tail {
                        progress::say(&format!("--- the end of its console ---\n{tail}---"));
                    }
                }
            }
            runs.push(record);
        }
        rep += 1;
        if rep == rounds && rounds < options.max_reps {
            let goals = goals::goals(&cells, &runs, options.l1_load);
            let unsettled = goals::unsettled(&goals);
            if !unsettled.is_empty() {
                rounds += 1;
                progress::say(&format!(
                    "{tag}: round {rounds} of at most {}: {} unsettled, e.g. {}",
                    options.max_reps,
                    render::plural(unsettled.len(), "goal figure"),
                    unsettled[0]
                ));
            }
        }
    }
    Ok(Report::new(
        Meta {
            date,
            command,
            reps: rounds,
            first_reps: options.reps,
            max_reps: options.max_reps,
            quick: options.quick,
            l1_load: options.l1_load,
            guest: guest_version,
            git,
            qemu,
            image: main_built,
            copy_dir: tag,
            wall: start.elapsed(),
        },
        cells,
        runs,
    ))
}

/// What is left of the planned rounds before boot `index` of round `rep`,
/// and what one round takes, from each cell's mean boot time so far (its
/// [`Cell::estimate`] until it has booted).
pub(super) fn left(
    cells: &[Cell],
    runs: &[RunRecord],
    index: usize,
    rep: usize,
    rounds: usize,
) -> (Duration, Duration) {
    let mean = |cell: usize| {
        let walls: Vec<Duration> = runs
            .iter()
            .filter(|r| r.cell == cell)
            .map(|r| r.wall)
            .collect();
        match walls.len() {
            0 => cells[cell].estimate(),
            n => walls.iter().sum::<Duration>() / n as u32,
        }
    };
    let round: Duration = (0..cells.len()).map(mean).sum();
    let this_round: Duration = (index..cells.len()).map(mean).sum();
    (this_round + round * (rounds - rep - 1) as u32, round)
}

/// The round of boot `rep`: of the first rounds, or of the most while
/// growing.
pub(super) fn round_of(rep: usize, options: &Options) -> String {
    if rep < options.reps {
        format!("{}/{}", rep + 1, options.reps)
    } else {
        format!("{}/{} (growing)", rep + 1, options.max_reps)
    }
}

/// The line printed before each boot: the cell, the round ([`round_of`]),
/// the time so far, and what is left of the planned rounds ([`left`]).
pub(super) fn progress(
    cells: &[Cell],
    runs: &[RunRecord],
    index: usize,
    rep: usize,
    rounds: usize,
    options: &Options,
    elapsed: Duration,
) -> String {
    let (left, round) = left(cells, runs, index, rep, rounds);
    let of = round_of(rep, options);
    format!(
        "{}: {}: round {of}, boot {}; {} elapsed, about {} left{}",
        options.output.tag,
        cells[index].label(),
        runs.len() + 1,
        minutes(elapsed),
        minutes(left),
        if rounds < options.max_reps {
            format!(
                " (up to {} more if it grows to {} rounds)",
                minutes(round * (options.max_reps - rounds) as u32),
                options.max_reps
            )
        } else {
            String::new()
        }
    )
}

/// `42 s`, `3.4 min`.
pub(super) fn minutes(d: Duration) -> String {
    if d.as_secs() < 100 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} min", d.as_secs_f64() / 60.0)
    }
}

/// Boots `cell` once and judges the run; also returns the console.
pub(super) fn boot(
    cell: Cell,
    image: &std::path::Path,
    options: &Options,
    prep: &mut Preparations,
    seq: usize,
    rep: usize,
    index: usize,
) -> (RunRecord, Option<String>) {
    let start = Instant::now();
    let mut record = RunRecord {
        seq,
        rep,
        cell: index,
        wall: Duration::ZERO,
        outcome: String::new(),
        samples: Vec::new(),
        error: None,
        console_tail: None,
        steal: None,
    };
    let host = cell.host(options.l1_load);
    let launched = cell.bootargs().and_then(|bootargs| {
        let boot = Boot {
            arch: cell.arch,
            host,
            smp: cell.smp,
            mem: crate::qemu::GUEST_MEMORY,
            el2: false,
            image: image.to_owned(),
            bootargs,
        };
        let launch = boot.command(prep)?;
        let timeout = options.timeout.unwrap_or(host.default_timeout());
        qemu::run(launch, timeout, options.verbose)
    });
    record.wall = start.elapsed();
    let run = match launched {
        Ok(run) => run,
        Err(e) => {
            record.outcome = "did not run".into();
            record.error = Some(format!("{e:#}"));
            return (record, None);
        }
    };
    if options.verbose && !run.console.is_empty() && !run.console.ends_with('\n') {
        println!();
    }
    record.outcome = run.outcome.to_string();
    record.steal = crate::steal::seen(&run.console);
    let (samples, problems) = judge(cell, run.outcome, &run.console);
    record.samples = samples;
    if !problems.is_empty() {
        record.error = Some(problems.join("; "));
        let mut tail = tail(&run.console, TAIL_LINES);
        if !run.stderr.trim().is_empty() {
            tail.push_str("--- QEMU said ---\n");
            tail.push_str(&run.stderr);
        }
        record.console_tail = Some(tail);
    }
    (record, Some(run.console))
}

/// The results on a run's console, and what is wrong with the run (empty
/// if nothing): it must exit 0 and print each line its workload expects
/// once (each of [`KINDS`], or the mutex under each of
/// [`MUTEX_POLICIES`], with its counters), with the CPUs asked for, some
/// acquisitions and no lost update.
pub(super) fn judge(cell: Cell, outcome: Outcome, console: &str) -> (Vec<Sample>, Vec<String>) {
    let mut problems = Vec::new();
    if outcome != Outcome::Exited(0) {
        problems.push(outcome.to_string());
    }
    let (samples, malformed) = stats::parse_console(console);
    problems.extend(malformed.iter().map(|e| format!("{e:#}")));
    for (kind, slowpath) in cell.workload.expected() {
        let series = Series {
            cell: 0,
            kind,
            slowpath,
        };
        let what = match slowpath {
            Some(policy) => format!("{kind} {policy}"),
            None => kind.to_owned(),
        };
        match samples
            .iter()
            .filter(|s| series.matches(&s.kind, &s.slowpath))
            .count()
        {
            1 => {}
            0 => problems.push(format!("no result line for {what}")),
            n => problems.push(format!("{n} result lines for {what}, expected one")),
        }
    }
    let cpus = cell.workload.cpus(cell.smp);
    for s in &samples {
        let what = if s.kind == MUTEX {
            format!("{} {}", s.kind, s.slowpath)
        } else {
            s.kind.clone()
        };
        if s.cpus != cpus {
            problems.push(format!("{what}: cpus={}, expected {cpus}", s.cpus));
        }
        if s.acquisitions == 0 {
            problems.push(format!("{what}: no acquisitions"));
        }
        if s.lost != 0 {
            problems.push(format!("{what}: {} lost updates", s.lost));
        }
        if s.kind == MUTEX && s.mutex.is_none() {
            problems.push(format!("{what}: no spun/slept/preempted_owner counters"));
        }
    }
    (samples, problems)
}

/// The last `lines` lines of `text`, each ending in a newline.
pub(super) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for line in &all[all.len().saturating_sub(lines)..] {
        let _ = writeln!(out, "{}", line.trim_end_matches('\r'));
    }
    out
}
