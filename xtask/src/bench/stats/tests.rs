use std::time::Duration;

use super::*;

const LINE: &str = "lockstorm: kind=qspinlock slowpath=halt cpus=4 cs=50 out=100 acquisitions=54669 elapsed_ns=306759500 per_sec=178215 fair_min=0.841 fair_max=1.117 p50_ns=448 p99_ns=106496 max_ns=5995015 lost=0";

fn sample() -> Sample {
    Sample {
        kind: "qspinlock".into(),
        slowpath: "halt".into(),
        cpus: 4,
        cs: 50,
        out: 100,
        acquisitions: 54669,
        elapsed_ns: 306_759_500,
        per_sec: 178_215.0,
        fair_min: 0.841,
        fair_max: 1.117,
        p50_ns: 448,
        p99_ns: 106_496,
        max_ns: 5_995_015,
        lost: 0,
        mutex: None,
        gap: None,
        qspinlock: None,
    }
}

#[test]
fn parses_the_line_lockstorm_prints() {
    assert_eq!(parse_line(LINE).unwrap().unwrap(), sample());
    assert_eq!(sample().counters(), []);
}

const COUNTERS: &str = " gap_p50_ns=320 gap_p99_ns=81920 halts=120 kicks=118 kicks_unhalted=3 handover_halted=40 handover_preempted=7 steals=900 steals_head_halted=12";

#[test]
fn parses_the_lock_counters_where_present() {
    let s = parse_line(&format!("{LINE}{COUNTERS}")).unwrap().unwrap();
    assert_eq!(
        s.gap,
        Some(GapTimes {
            gap_p50_ns: 320,
            gap_p99_ns: 81920
        })
    );
    let q = s.qspinlock.unwrap();
    assert_eq!((q.halts, q.kicks, q.kicks_unhalted), (120, 118, 3));
    assert_eq!((q.handover_halted, q.handover_preempted), (40, 7));
    assert_eq!((q.steals, q.steals_head_halted), (900, 12));
    let keys: Vec<&str> = s.counters().iter().map(|c| c.0).collect();
    assert_eq!(keys[..2], GAP_KEYS);
    assert_eq!(keys[2..], QSPINLOCK_KEYS);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(
        (json["gap_p99_ns"].clone(), json["steals"].clone()),
        (81920.into(), 900.into())
    );
    // A spinlock line with the gaps only (tas, ticket, mcs).
    let tas = LINE.replace("kind=qspinlock slowpath=halt", "kind=tas slowpath=-")
        + " gap_p50_ns=1 gap_p99_ns=2";
    let s = parse_line(&tas).unwrap().unwrap();
    assert!(s.gap.is_some() && s.qspinlock.is_none());
    // Part of a group is malformed.
    let cut = format!("{LINE}{COUNTERS}").replace(" kicks_unhalted=3", "");
    let err = parse_line(&cut).unwrap().unwrap_err();
    assert!(
        format!("{err:#}").ends_with("no `kicks_unhalted`"),
        "{err:#}"
    );
    let cut = format!("{LINE} gap_p99_ns=2");
    assert!(parse_line(&cut).unwrap().is_err());
}

#[test]
fn parses_a_mutex_line_with_its_counters() {
    let line = LINE.replace(
        "kind=qspinlock slowpath=halt",
        "kind=mutex slowpath=spin-owner-pv",
    ) + " threads=4 spun=3142 slept=31 preempted_owner=32";
    let s = parse_line(&line).unwrap().unwrap();
    assert_eq!(
        (s.kind.as_str(), s.slowpath.as_str()),
        ("mutex", "spin-owner-pv")
    );
    assert_eq!(
        s.mutex,
        Some(MutexCounts {
            threads: 4,
            spun: 3142,
            slept: 31,
            preempted_owner: 32
        })
    );
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["preempted_owner"], 32);
    assert!(serde_json::to_value(sample())
        .unwrap()
        .get("spun")
        .is_none());
    let cut = line.replace(" slept=31", "");
    let err = parse_line(&cut).unwrap().unwrap_err();
    assert!(format!("{err:#}").ends_with("no `slept`"), "{err:#}");
}

#[test]
fn tolerates_carriage_returns_and_a_noisy_prefix() {
    for line in [
        format!("{LINE}\r"),
        format!("{LINE}\r\r"),
        format!("{LINE} \r"),
        format!("[   13.874773] reboot: Power down{LINE}"),
    ] {
        assert_eq!(parse_line(&line).unwrap().unwrap(), sample(), "{line:?}");
    }
}

#[test]
fn other_slow_path_and_unknown_fields() {
    let line = LINE
        .replace("kind=qspinlock slowpath=halt", "kind=tas slowpath=-")
        .replace("lost=0", "lost=0 new_field=x");
    let s = parse_line(&line).unwrap().unwrap();
    assert_eq!((s.kind.as_str(), s.slowpath.as_str()), ("tas", "-"));
}

#[test]
fn not_a_result_line() {
    for line in [
        "",
        "[   0.037863 0] app: lockstorm ms=300 slowpath=both",
        "[   0.037863 0] lockstorm: lost updates",
        "nested-kvm: L1 up after 4.67 s; guest: 4 vCPUs\r",
        "qemu-system-aarch64: -accel kvm: warning: Number of SMP cpus requested (4)",
    ] {
        assert!(parse_line(line).is_none(), "{line:?}");
    }
}

#[test]
fn malformed_result_lines_are_errors() {
    let cut = &LINE[..LINE.find(" p99_ns").unwrap()];
    let spliced = LINE.replace("p50_ns=448", "p50_ns=4[   13.8] reboot: Power down");
    let twice = format!("{LINE} lost=1");
    let negative = LINE.replace("fair_min=0.841", "fair_min=-1");
    let nan = LINE.replace("per_sec=178215", "per_sec=NaN");
    let no_value = LINE.replace("cs=50", "cs");
    let no_kind = LINE.replace("kind=qspinlock", "kind=");
    for line in [cut, &spliced, &twice, &negative, &nan, &no_value, &no_kind] {
        let err = parse_line(line).unwrap().unwrap_err();
        assert!(
            format!("{err:#}").starts_with("malformed result line"),
            "{err:#}"
        );
    }
    let err = parse_line(cut).unwrap().unwrap_err();
    assert!(format!("{err:#}").ends_with("no `p99_ns`"), "{err:#}");
}

#[test]
fn console_with_l1_lines_in_between() {
    let console = format!(
        "nested-kvm: L1 up after 4.67 s\r\n\
         [   0.511267 0] lodger 0.1.0 (aarch64), entered at EL1\r\n\
         [   2.246510 0] app: lockstorm ms=300 slowpath=boot\r\n\
         {}\r\n\
         [   9.1] random L1 message\r\n\
         {LINE}\r\n\
         [[lodger:exit=0]]\r\n\
         [   13.874773] reboot: Power down\r\n",
        LINE.replace("kind=qspinlock slowpath=halt", "kind=tas slowpath=-")
    );
    let (samples, errors) = parse_console(&console);
    assert_eq!(samples.len(), 2);
    assert!(errors.is_empty());
    assert_eq!(samples[0].kind, "tas");
    assert_eq!(samples[1], sample());
    assert_eq!(
        guest_version(&console).as_deref(),
        Some("lodger 0.1.0 (aarch64)")
    );
    let (samples, errors) = parse_console(&format!("{console}lockstorm: kind=x\n"));
    assert_eq!((samples.len(), errors.len()), (2, 1));
    assert_eq!(guest_version("no banner"), None);
}

#[test]
fn spread_of_values() {
    let s = Spread::of(&[5.0, 1.0, 4.0, 2.0, 3.0]).unwrap();
    assert_eq!((s.n, s.median, s.min, s.max), (5, 3.0, 1.0, 5.0));
    assert_eq!((s.q1, s.q3), (2.0, 4.0));
    assert!((s.relative_iqr() - 2.0 / 3.0).abs() < 1e-12);
    let even = Spread::of(&[1.0, 2.0, 3.0, 10.0]).unwrap();
    assert_eq!(even.median, 2.5);
    assert_eq!((even.q1, even.q3), (1.75, 4.75));
    let one = Spread::of(&[7.0]).unwrap();
    assert_eq!(
        (one.median, one.q1, one.q3, one.min, one.max),
        (7.0, 7.0, 7.0, 7.0, 7.0)
    );
    assert_eq!(Spread::of(&[]), None);
    assert_eq!(Spread::of(&[1.0, f64::NAN]), None);
    assert_eq!(Spread::of(&[0.0, 0.0]).unwrap().relative_iqr(), 0.0);
}

fn run(cell: usize, rep: usize, per_sec: &[(&str, f64)], ok: bool) -> RunRecord {
    RunRecord {
        seq: 0,
        rep,
        cell,
        wall: Duration::from_secs(1),
        outcome: "guest exited with status 0".into(),
        samples: per_sec
            .iter()
            .map(|&(kind, per_sec)| Sample {
                kind: kind.into(),
                per_sec,
                ..sample()
            })
            .collect(),
        error: (!ok).then(|| "failed".into()),
        console_tail: None,
        steal: None,
    }
}

#[test]
fn groups_and_paired_ratios_use_successful_runs_only() {
    let runs = [
        run(0, 0, &[("tas", 10.0), ("qspinlock", 200.0)], true),
        run(1, 0, &[("tas", 10.0), ("qspinlock", 100.0)], true),
        run(0, 1, &[("tas", 30.0), ("qspinlock", 300.0)], true),
        run(1, 1, &[("tas", 10.0), ("qspinlock", 100.0)], false),
        run(0, 2, &[("tas", 20.0), ("qspinlock", 400.0)], true),
        run(1, 2, &[("tas", 10.0), ("qspinlock", 100.0)], true),
    ];
    let groups = summarize(&runs);
    let rows: Vec<(usize, &str, usize, f64)> = groups
        .iter()
        .map(|g| (g.cell, g.kind.as_str(), g.per_sec.n, g.per_sec.median))
        .collect();
    assert_eq!(
        rows,
        [
            (0, "tas", 3, 20.0),
            (0, "qspinlock", 3, 300.0),
            (1, "tas", 2, 10.0),
            (1, "qspinlock", 2, 100.0)
        ]
    );
    let ns = groups[0].ns_per_op.median;
    assert!((ns - 306_759_500.0 / 54669.0).abs() < 1e-9, "{ns}");
    let series = |cell, kind| Series {
        cell,
        kind,
        slowpath: None,
    };
    assert_eq!(
        paired_ratios(
            &runs,
            series(0, "qspinlock"),
            series(1, "qspinlock"),
            Metric::PerSec
        ),
        [2.0, 4.0]
    );
    assert_eq!(
        paired_ratios(&runs, series(0, "mcs"), series(1, "mcs"), Metric::PerSec),
        [0.0; 0]
    );
    // Round 1 of cell 1 failed.
    assert_eq!(
        per_round(&runs, series(1, "qspinlock"), Metric::PerSec),
        [100.0, 100.0]
    );
    let fairness = per_round(&runs, series(0, "tas"), Metric::Fairness);
    assert_eq!(fairness.len(), 3);
    assert!((fairness[0] - 0.841 / 1.117).abs() < 1e-12, "{fairness:?}");
    assert!(groups.iter().all(|g| g.mutex.is_none()));
}

#[test]
fn mutex_policies_pair_within_one_run() {
    let mut runs = Vec::new();
    for (rep, ok) in [(0, true), (1, false), (2, true)] {
        let mut run = run(0, rep, &[("mutex", 100.0), ("mutex", 300.0)], ok);
        for (s, (policy, slept)) in run
            .samples
            .iter_mut()
            .zip([("sleep", 7), ("spin-owner-pv", 0)])
        {
            s.slowpath = policy.into();
            s.mutex = Some(MutexCounts {
                threads: 4,
                spun: 10 * rep as u64,
                slept,
                preempted_owner: 0,
            });
        }
        run.samples[1].per_sec *= (rep + 1) as f64;
        runs.push(run);
    }
    let policy = |slowpath| Series {
        cell: 0,
        kind: "mutex",
        slowpath: Some(slowpath),
    };
    assert_eq!(
        paired_ratios(
            &runs,
            policy("spin-owner-pv"),
            policy("sleep"),
            Metric::PerSec
        ),
        [3.0, 9.0]
    );
    assert_eq!(
        paired_ratios(&runs, policy("spin-owner"), policy("sleep"), Metric::PerSec),
        [0.0; 0]
    );
    let groups = summarize(&runs);
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].slowpath, "sleep");
    let counts = groups[0].mutex.unwrap();
    assert_eq!((counts.slept.median, counts.spun.median), (7.0, 10.0));
    assert_eq!(groups[1].per_sec.median, 600.0);
}
