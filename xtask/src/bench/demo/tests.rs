use std::path::PathBuf;

use super::super::locks::{Meta, RunRecord};
use super::super::render;
use super::super::stats::{MutexCounts, Sample};
use super::*;
use crate::steal::Seen;

fn parse(line: &str) -> Result<(Vec<Cell>, Options)> {
    plan(&super::super::tests::parse_args(line)?)
}

#[test]
fn the_default_demo_is_pvhost_with_the_staggered_half_steal() {
    let (cells, options) = parse("").unwrap();
    let labels: Vec<String> = cells.iter().map(|c| c.label()).collect();
    assert_eq!(
        labels,
        [
            "pvhost smp 4 pv on contended",
            "pvhost smp 4 pv off contended",
            "pvhost smp 4 pv on mutex",
            "pvhost smp 4 pv off mutex",
        ]
    );
    assert!(cells
        .iter()
        .all(|c| c.steal == PVHOST_STEAL && c.arch == Arch::Aarch64));
    assert_eq!(
        (options.reps, options.max_reps, options.quick),
        (3, 3, false)
    );
    assert_eq!(options.output, OUTPUT);
    assert_eq!(
        cells[1].command(0),
        "cargo xtask run --host pvhost --pv off --steal periodic:10000,50,2500 --smp 4 --app lockstorm --bootargs pv=off -- ms=300 slowpath=boot"
    );
    let (_, quick) = parse("--quick").unwrap();
    assert_eq!((quick.reps, quick.max_reps, quick.quick), (1, 1, true));
    assert_eq!(parse("--reps 5").unwrap().1.reps, 5);
    assert!(parse("--quick --reps 2").is_err());
}

#[test]
fn other_hosts_arches_and_steal() {
    let (cells, _) = parse("--host tcg --arch loongarch64 --smp 8").unwrap();
    assert_eq!(cells[0].label(), "tcg loongarch64 smp 8 pv on contended");
    assert_eq!(
        cells[2].command(0),
        "cargo xtask run --arch loongarch64 --host tcg --smp 8 --app lockstorm -- kinds=mutex ms=300"
    );
    let (cells, options) = parse("--host nested-kvm --l1-load 2").unwrap();
    assert_eq!(cells[0].host, HostKind::NestedKvm);
    assert_eq!(options.l1_load, 2);
    let (cells, _) = parse("--steal periodic:10ms,25%@2s").unwrap();
    assert_eq!(cells[0].steal, "periodic:10000,25@2000");
    // LoongArch has its pvhost too (the patched QEMU).
    let (cells, _) = parse("--arch loongarch64").unwrap();
    assert_eq!(cells[0].host, HostKind::Pvhost);
    // What cannot run is a bad command line, said as such.
    for (bad, says) in [
        (
            "--host nested-kvm --arch loongarch64",
            "nested-kvm cannot run the demo",
        ),
        (
            "--host tcg --steal periodic:10ms,50%",
            "--steal only with --host pvhost",
        ),
        ("--l1-load 1", "--l1-load only with --host nested-kvm"),
        ("--steal often", "expected none; periodic:"),
    ] {
        let err = format!("{:#}", parse(bad).unwrap_err());
        assert!(err.contains(says), "{bad}: {err}");
    }
    assert!(parse("--smp 257").is_err());
    assert!(parse("--smp 256").is_ok());
    if std::env::consts::ARCH == "x86_64" {
        let err = format!("{:#}", parse("--host kvm").unwrap_err());
        assert!(
            err.starts_with("kvm cannot run the demo: --host kvm boots the guest on this machine's KVM, and this machine is x86_64"),
            "{err}"
        );
    }
}

fn sample(kind: &str, slowpath: &str, per_sec: f64) -> Sample {
    Sample {
        mutex: (kind == MUTEX).then_some(MutexCounts {
            threads: 4,
            spun: 1,
            slept: 2,
            preempted_owner: 0,
        }),
        ..render::tests::sample(kind, slowpath, 4, per_sec)
    }
}

/// The default demo's cells over `reps` rounds: PV on at 3k acq/s
/// times the round, PV off at 1k; pvhost saw 40% steal (0.5 s).
fn report(reps: usize) -> Report {
    let (cells, _) = parse("").unwrap();
    let mut runs = Vec::new();
    for rep in 0..reps {
        for (index, cell) in cells.iter().enumerate() {
            let on = cell.pv == Pv::On;
            let per_sec = if on {
                3000.0 * (rep + 1) as f64
            } else {
                1000.0
            };
            let samples = match cell.workload {
                Workload::Mutex => MUTEX_POLICIES
                    .iter()
                    .map(|p| sample(MUTEX, p, per_sec))
                    .collect(),
                _ => render::tests::spinlock_samples(cell.pv, 4, per_sec),
            };
            runs.push(RunRecord {
                steal: Some(Seen {
                    vcpus: 4,
                    stolen_ns: 5e8,
                    preemptions: 50.0,
                    share: 0.4,
                }),
                ..render::tests::run_record(runs.len(), rep, index, samples)
            });
        }
    }
    let mut report = Report::new(
        Meta {
            date: "2026-01-02T03:04:05Z".into(),
            command: "cargo xtask demo".into(),
            reps,
            first_reps: reps,
            max_reps: reps,
            quick: reps == 1,
            l1_load: 0,
            guest: Some("lodger 0.1.0 (aarch64)".into()),
            git: "0123456789ab".into(),
            qemu: "QEMU emulator version 10.0.0".into(),
            image: PathBuf::from("/t/lodger"),
            copy_dir: "demo",
            wall: Duration::from_secs(31),
        },
        cells,
        runs,
    );
    report.ratios = rows(&report.cells)
        .into_iter()
        .map(|row| row.ratio(&report))
        .collect();
    report
}

#[test]
fn the_table_has_a_row_per_lock_and_policy() {
    let text = table(&report(3));
    for needed in [
        "lockstorm, PV on vs off: pvhost smp 4 (aarch64, steal periodic:10000,50,2500), 3 paired rounds, 12 boots in 31 s\n",
        "| lock                | PV on acq/s | PV off acq/s | on/off |     min..max |       95% CI | fairness on / off | p99 wait on / off |   steal seen on / off |\n",
        "| ------------------- | ----------: | -----------: | -----: | -----------: | -----------: | ----------------: |",
        "| tas                 |       6.00k |        1.00k |  6.00x | 3.00x..9.00x | 3.00x..9.00x |       0.82 / 0.82 |   106 µs / 106 µs | 40% 500ms / 40% 500ms |\n",
        "| qspinlock           |       6.00k |        1.00k |  6.00x |",
        "| mutex spin-owner-pv |       6.00k |        1.00k |  6.00x |",
        "95% bootstrap CI of the median",
        "steal seen: pvhost's ground truth",
    ] {
        assert!(text.contains(needed), "the table lacks {needed:?}:\n{text}");
    }
    assert_eq!(
        text.matches("\n| ").count(),
        2 + KINDS.len() + MUTEX_POLICIES.len()
    );
}

#[test]
fn one_round_shows_no_ci_and_other_hosts_no_steal() {
    let text = table(&report(1));
    assert!(
        text.contains("1 paired round, 4 boots in 31 s (quick: no CI)"),
        "{text}"
    );
    assert!(text.contains("| 3.00x..3.00x |      - |"), "{text}");
    assert!(text.contains("(a CI needs 3 rounds or more)"), "{text}");
    let mut tcg = report(1);
    for cell in &mut tcg.cells {
        cell.host = HostKind::Tcg;
    }
    for run in &mut tcg.runs {
        run.steal = None;
    }
    let text = table(&tcg);
    assert!(
        text.contains("tcg smp 4 (aarch64), 1 paired round"),
        "{text}"
    );
    assert!(text.contains("|               - / - |\n"), "{text}");
    assert!(text.contains("steal seen: - (only pvhost prints"), "{text}");
}

#[test]
fn the_report_check_wants_every_cell_and_ratio() {
    let report = report(1);
    let json = render::json_of(&report);
    assert_eq!(check(&json), [""; 0]);
    let mut broken = json.clone();
    broken["runs"][2]["ok"] = Value::Bool(false);
    broken["summary"]["ratios"][0]["paired"] = Value::Array(Vec::new());
    let groups = broken["summary"]["groups"].as_array_mut().unwrap();
    groups.retain(|g| g["kind"] != "mcs");
    assert_eq!(
        check(&broken),
        [
            "cell 0 (contended pv on): no summary of mcs ",
            "cell 1 (contended pv off): no summary of mcs ",
            "cell 2 (mutex pv on): no successful run",
            "pvhost smp 4: tas throughput, PV on / PV off: no value",
        ]
    );
    assert_eq!(check(&Value::Null)[0], "0 cells, expected 4");
}
