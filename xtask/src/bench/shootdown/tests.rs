use super::*;

const LINE: &str = "shootdown: arch=loongarch64 cpus=4 readers=3 rounds=100 shootdowns=400 elapsed_ns=1 per_sec=42 p50_ns=14680064 p99_ns=167772160 max_ns=2 targets_per=3.000 lazy_per=0.000 ipis_per=0.000 hypercalls_per=1.000 broadcasts_per=0.000 ipis=0 hypercalls=400 preempted_waits=0 reads=5 stale=0\npvhost: cpu=0 hvcl_ipi=413 ipis_iocsr=0\npvhost: cpu=1 hvcl_ipi=0 ipis_iocsr=2\n";

#[test]
fn a_result_line_and_its_ground_truth() {
    let s = parse(LINE, Baseline::default()).unwrap();
    assert_eq!(
        (s.shootdowns, s.p50_ns, s.hypercalls_per),
        (400.0, 14680064.0, 1.0)
    );
    assert_eq!(s.truth_hypercalls_per, Some(413.0 / 400.0));
    assert_eq!(s.truth_ipis_per, Some(2.0 / 400.0));
    let tcg = parse(LINE.lines().next().unwrap(), Baseline::default()).unwrap();
    assert_eq!(tcg.truth_ipis_per, None);
    assert!(parse("shootdown: arch=x shootdowns=1", Baseline::default()).is_err());
    assert!(parse("nothing", Baseline::default()).is_err());
    let base = Baseline::of(LINE).unwrap();
    assert_eq!(
        base,
        Baseline {
            hvcl_ipi: 413.0,
            ipis_iocsr: 2.0
        }
    );
    let less = parse(
        LINE,
        Baseline {
            hvcl_ipi: 13.0,
            ipis_iocsr: 2.0,
        },
    )
    .unwrap();
    assert_eq!(
        (less.truth_hypercalls_per, less.truth_ipis_per),
        (Some(1.0), Some(0.0))
    );
}

#[test]
fn counts_above_the_kernel_are_skipped() {
    let (run, skipped) = matrix(&[HostKind::Tcg, HostKind::Pvhost], &[2, 32], 16);
    assert_eq!(run.len(), 4);
    assert!(run.iter().all(|c| c.cpus == 2));
    assert_eq!(skipped.len(), 4);
    let (run, _) = matrix(&[HostKind::Tcg], &[8], 16);
    assert_eq!(
        run.iter().map(|c| c.series).collect::<Vec<_>>(),
        [Series::Aarch64Tlbi, Series::LaTcgIocsr]
    );
}

#[test]
fn max_cpus_is_read_from_the_source() {
    assert_eq!(
        parse_max_cpus("x\npub const MAX_CPUS: usize = 256;\n"),
        Some(256)
    );
    assert_eq!(
        parse_max_cpus("pub const MAX_CPUS: usize = 1_024;"),
        Some(1024)
    );
    assert_eq!(parse_max_cpus("const OTHER: usize = 3;"), None);
    assert!(kernel_cpus().unwrap() >= 2);
}

fn run(rep: usize, cell: usize, p50: f64) -> RunRecord {
    let mut s = parse(LINE, Baseline::default()).unwrap();
    s.p50_ns = p50;
    RunRecord {
        rep,
        cell,
        wall_s: 1.0,
        sample: Some(s),
        error: None,
    }
}

#[test]
fn ratios_are_paired_by_round_and_judged_from_32_cpus() {
    let cells = [
        Cell {
            series: Series::LaPvhostPv,
            cpus: 32,
        },
        Cell {
            series: Series::LaPvhostIocsr,
            cpus: 32,
        },
    ];
    let runs: Vec<RunRecord> = (0..5)
        .flat_map(|rep| {
            [
                run(rep, 0, 100.0 + rep as f64),
                run(rep, 1, 300.0 + 3.0 * rep as f64),
            ]
        })
        .collect();
    let r = ratios(&cells, &runs);
    assert_eq!(r.len(), 1);
    assert!((r[0].ci.unwrap().median - 3.0).abs() < 1e-9);
    assert_eq!(r[0].verdict, Some(super::super::ci::Verdict::Met));
    let small = [
        Cell {
            series: Series::LaPvhostPv,
            cpus: 8,
        },
        Cell {
            series: Series::LaPvhostIocsr,
            cpus: 8,
        },
    ];
    assert_eq!(ratios(&small, &runs)[0].verdict, None);
}
