use super::cells::*;
use super::run::*;
use super::*;

const OK: &str = "lockstorm: kind=KIND slowpath=- cpus=4 cs=50 out=100 acquisitions=10 elapsed_ns=300 per_sec=5 fair_min=1 fair_max=1 p50_ns=1 p99_ns=2 max_ns=3 lost=0";

fn console(kinds: &[&str]) -> String {
    let mut text = String::from("[   0.1 0] lodger 0.1.0 (aarch64), entered at EL1\r\n");
    for kind in kinds {
        text.push_str(&OK.replace("KIND", kind));
        text.push_str("\r\n");
    }
    text.push_str("[[lodger:exit=0]]\r\n");
    text
}

fn cell(host: HostKind, smp: u16, pv: Pv, workload: Workload) -> Cell {
    Cell {
        host,
        smp,
        pv,
        workload,
        arch: ARCH,
        steal: PVHOST_STEAL,
    }
}

fn all() -> &'static [Workload] {
    Workload::value_variants()
}

#[test]
fn the_matrix() {
    let labels: Vec<String> = matrix(&[HostKind::Tcg, HostKind::NestedKvm], all(), &ARCHES)
        .iter()
        .map(|c| c.label())
        .collect();
    assert_eq!(
        labels,
        [
            "tcg smp 4 pv on contended",
            "tcg smp 4 pv off contended",
            "tcg smp 4 pv on uncontended",
            "tcg smp 4 pv off uncontended",
            "tcg smp 2 pv on contended",
            "tcg smp 2 pv off contended",
            "tcg smp 16 pv on overcommit",
            "tcg smp 16 pv off overcommit",
            "tcg smp 4 pv on mutex",
            "tcg smp 4 pv off mutex",
            "tcg smp 64 pv on scale",
            "tcg loongarch64 smp 64 pv on scale",
            "nested-kvm smp 4 pv on contended",
            "nested-kvm smp 4 pv off contended",
            "nested-kvm smp 4 pv on uncontended",
            "nested-kvm smp 4 pv off uncontended",
            "nested-kvm smp 4 pv on mutex",
            "nested-kvm smp 4 pv off mutex",
        ]
    );
    assert_eq!(matrix(&[HostKind::NestedKvm], all(), &ARCHES).len(), 6);
    let pvhost: Vec<String> = matrix(&[HostKind::Pvhost], all(), &ARCHES)
        .iter()
        .map(|c| c.label())
        .collect();
    assert_eq!(
        pvhost,
        [
            "pvhost smp 4 pv on contended",
            "pvhost smp 4 pv off contended",
            "pvhost loongarch64 smp 4 pv on contended",
            "pvhost loongarch64 smp 4 pv off contended",
            "pvhost smp 4 pv on mutex",
            "pvhost smp 4 pv off mutex"
        ]
    );
    // aarch64 alone: the matrix as before LoongArch had a pvhost.
    assert_eq!(matrix(&[HostKind::Pvhost], all(), &[ARCH]).len(), 4);
    assert_eq!(
        matrix(&[HostKind::Tcg], &[Workload::Scale], &[Arch::Loongarch64])[0].label(),
        "tcg loongarch64 smp 64 pv on scale"
    );
    let mutex: Vec<String> = matrix(
        &[HostKind::NestedKvm, HostKind::Pvhost],
        &[Workload::Mutex],
        &ARCHES,
    )
    .iter()
    .map(|c| c.label())
    .collect();
    assert_eq!(
        mutex,
        [
            "nested-kvm smp 4 pv on mutex",
            "nested-kvm smp 4 pv off mutex",
            "pvhost smp 4 pv on mutex",
            "pvhost smp 4 pv off mutex"
        ]
    );
    assert_eq!(
        matrix(&[HostKind::Pvhost], &[Workload::Uncontended], &ARCHES),
        []
    );
    assert_eq!(
        matrix(&[HostKind::NestedKvm], &[Workload::Overcommit], &ARCHES),
        []
    );
    assert_eq!(
        matrix(&[HostKind::NestedKvm], all(), &[Arch::Loongarch64]),
        []
    );
    let tcg16 = cell(HostKind::Tcg, 16, Pv::Off, Workload::Overcommit);
    assert_eq!(
        tcg16.command(0),
        "cargo xtask run --host tcg --smp 16 --app lockstorm --bootargs pv=off -- ms=300 slowpath=boot"
    );
    assert!(tcg16.overcommitted());
    assert_eq!(
        tcg16.host_label(0),
        "tcg smp 16 (16 vCPUs on this machine's 2 cores)"
    );
    let nested = cell(HostKind::NestedKvm, 4, Pv::On, Workload::Contended);
    assert_eq!(
        nested.host_label(2),
        "nested-kvm smp 4 (4 vCPUs on L1's 2 CPUs, 2 busy loops in L1 (--l1-load 2))"
    );
    assert!(!cell(HostKind::Tcg, 4, Pv::On, Workload::Contended).overcommitted());
}

#[test]
fn mutex_cells_run_every_policy_on_threads() {
    let on = cell(HostKind::NestedKvm, 4, Pv::On, Workload::Mutex);
    assert_eq!(
        on.command(0),
        "cargo xtask run --host nested-kvm --smp 4 --app lockstorm -- kinds=mutex ms=300"
    );
    let off = cell(HostKind::Pvhost, 4, Pv::Off, Workload::Mutex);
    assert_eq!(
        off.bootargs().unwrap(),
        "app=lockstorm pv=off -- kinds=mutex ms=300"
    );
    assert_eq!(
        off.command(0),
        "cargo xtask run --host pvhost --pv off --steal periodic:10000,50,2500 --smp 4 --app lockstorm --bootargs pv=off -- kinds=mutex ms=300"
    );
}

#[test]
fn pvhost_cells_steal_half_and_switch_pv_on_both_sides() {
    let on = cell(HostKind::Pvhost, 4, Pv::On, Workload::Contended);
    assert_eq!(
        on.host(0),
        Host::Pvhost(crate::pvhost::Settings {
            pv: Pv::On,
            offer: crate::pvhost::Offer::ALL,
            steal: "periodic:10000,50,2500",
            fault: "none",
        })
    );
    assert_eq!(
        on.command(0),
        "cargo xtask run --host pvhost --steal periodic:10000,50,2500 --smp 4 --app lockstorm -- ms=300 slowpath=boot"
    );
    let off = Cell { pv: Pv::Off, ..on };
    assert_eq!(
        off.host(0),
        Host::Pvhost(crate::pvhost::Settings {
            pv: Pv::Off,
            offer: crate::pvhost::Offer::ALL,
            steal: PVHOST_STEAL,
            fault: "none",
        })
    );
    assert_eq!(
        off.command(0),
        "cargo xtask run --host pvhost --pv off --steal periodic:10000,50,2500 --smp 4 --app lockstorm --bootargs pv=off -- ms=300 slowpath=boot"
    );
    assert_eq!(
        off.bootargs().unwrap(),
        "app=lockstorm pv=off -- ms=300 slowpath=boot"
    );
    assert_eq!(
        crate::pvhost::normalize_steal(PVHOST_STEAL).unwrap(),
        PVHOST_STEAL
    );
    let whats: Vec<String> = ratios(
        &matrix(&[HostKind::Pvhost], &[Workload::Contended], &ARCHES),
        &[],
        0,
    )
    .into_iter()
    .map(|r| r.what)
    .collect();
    assert_eq!(
        whats,
        [
            "pvhost smp 4 (half of each vCPU's time stolen, staggered: periodic:10000,50,2500): PV qspinlock / native qspinlock (pv=off), throughput",
            "pvhost loongarch64 smp 4 (half of each vCPU's time stolen, staggered: periodic:10000,50,2500): PV qspinlock / native qspinlock (pv=off), throughput"
        ]
    );
    let la = Cell {
        arch: Arch::Loongarch64,
        ..off
    };
    assert_eq!(
        la.command(0),
        "cargo xtask run --arch loongarch64 --host pvhost --pv off --steal periodic:10000,50,2500 --smp 4 --app lockstorm --bootargs pv=off -- ms=300 slowpath=boot"
    );
    assert!(la.overcommitted());
}

#[test]
fn cells_boot_as_the_goals_ask() {
    let on = cell(HostKind::Tcg, 4, Pv::On, Workload::Contended);
    assert_eq!(
        on.bootargs().unwrap(),
        "app=lockstorm -- ms=300 slowpath=boot"
    );
    assert_eq!(on.host(3), Host::Tcg);
    assert_eq!(
        on.command(3),
        "cargo xtask run --host tcg --smp 4 --app lockstorm -- ms=300 slowpath=boot"
    );
    let off = cell(HostKind::NestedKvm, 4, Pv::Off, Workload::Uncontended);
    assert_eq!(
        off.bootargs().unwrap(),
        "app=lockstorm pv=off -- cpus=1 cs=0 out=0 ms=200"
    );
    assert_eq!(
        off.host(0),
        Host::NestedKvm(Settings {
            pv: Pv::Off,
            l1_load: 0
        })
    );
    assert_eq!(
        off.command(2),
        "cargo xtask run --host nested-kvm --pv off --l1-load 2 --smp 4 --app lockstorm --bootargs pv=off -- cpus=1 cs=0 out=0 ms=200"
    );
}

#[test]
fn judging_a_run() {
    let contended = cell(HostKind::Tcg, 4, Pv::On, Workload::Contended);
    let (samples, problems) = judge(contended, Outcome::Exited(0), &console(&KINDS));
    assert_eq!(samples.len(), 4);
    assert_eq!(problems, [""; 0]);

    let (_, problems) = judge(
        contended,
        Outcome::Exited(1),
        &console(&["tas", "tas", "mcs", "qspinlock", "new"]),
    );
    assert_eq!(
        problems,
        [
            "guest exited with status 1",
            "2 result lines for tas, expected one",
            "no result line for ticket"
        ]
    );

    let uncontended = cell(HostKind::Tcg, 4, Pv::On, Workload::Uncontended);
    let lost = console(&KINDS).replacen("lost=0", "lost=2", 1);
    let (samples, problems) = judge(uncontended, Outcome::Exited(0), &lost);
    assert_eq!(samples.len(), 4);
    assert_eq!(problems.len(), 5, "{problems:?}");
    assert_eq!(problems[0], "tas: cpus=4, expected 1");
    assert_eq!(problems[1], "tas: 2 lost updates");

    let malformed = console(&KINDS).replacen("acquisitions=10", "acquisitions=x", 1);
    let (samples, problems) = judge(contended, Outcome::Exited(0), &malformed);
    assert_eq!(samples.len(), 3);
    assert!(
        problems[0].starts_with("malformed result line"),
        "{problems:?}"
    );
    assert_eq!(problems[1], "no result line for tas");
}

#[test]
fn ratios_name_what_the_goals_ask_for() {
    let cells = matrix(
        &[HostKind::Tcg, HostKind::NestedKvm],
        &[Workload::Contended, Workload::Uncontended],
        &ARCHES,
    );
    let whats: Vec<(String, Option<f64>)> = ratios(&cells, &[], 0)
        .into_iter()
        .map(|r| (r.what, r.overhead_goal))
        .collect();
    assert_eq!(
        whats,
        [
            ("tcg smp 4: qspinlock throughput, PV on / PV off".to_owned(), None),
            ("tcg: uncontended qspinlock lock+unlock cost, PV on / PV off".to_owned(), None),
            ("tcg smp 2 (no overcommit): PV-on overhead, qspinlock throughput".to_owned(), Some(0.02)),
            ("nested-kvm smp 4 (4 vCPUs on L1's 2 CPUs): PV qspinlock / native qspinlock (pv=off), throughput".to_owned(), None),
            ("nested-kvm: uncontended qspinlock lock+unlock cost, PV on / PV off".to_owned(), None),
        ]
    );
}

#[test]
fn mutex_ratios_compare_policies_within_each_cell() {
    let cells = matrix(
        &[HostKind::NestedKvm, HostKind::Pvhost],
        &[Workload::Mutex],
        &ARCHES,
    );
    let ratios = ratios(&cells, &[], 0);
    let whats: Vec<&str> = ratios.iter().map(|r| r.what.as_str()).collect();
    assert_eq!(
        whats,
        [
            "nested-kvm smp 4 pv on (4 vCPUs on L1's 2 CPUs; KVM offers no preempted flag on arm64: the check sees no preemption): mutex spin-owner-pv / spin-owner, throughput",
            "nested-kvm smp 4 pv on (4 vCPUs on L1's 2 CPUs; KVM offers no preempted flag on arm64: the check sees no preemption): mutex spin-owner-pv / sleep, throughput",
            "nested-kvm smp 4 pv off (4 vCPUs on L1's 2 CPUs; pv=off: the check sees no preemption): mutex spin-owner-pv / spin-owner, throughput",
            "nested-kvm smp 4 pv off (4 vCPUs on L1's 2 CPUs; pv=off: the check sees no preemption): mutex spin-owner-pv / sleep, throughput",
            "pvhost smp 4 pv on (steal periodic:10000,50,2500, reported by PV lock and PV sched: the check sees it): mutex spin-owner-pv / spin-owner, throughput",
            "pvhost smp 4 pv on (steal periodic:10000,50,2500, reported by PV lock and PV sched: the check sees it): mutex spin-owner-pv / sleep, throughput",
            "pvhost smp 4 pv off (pv=off: the check sees no preemption): mutex spin-owner-pv / spin-owner, throughput",
            "pvhost smp 4 pv off (pv=off: the check sees no preemption): mutex spin-owner-pv / sleep, throughput",
        ]
    );
    // Both sides are lines of the same cell.
    assert_eq!(
        (ratios[4].numerator, ratios[4].denominator.unwrap()),
        (
            Series {
                cell: 2,
                kind: "mutex",
                slowpath: Some("spin-owner-pv")
            },
            Series {
                cell: 2,
                kind: "mutex",
                slowpath: Some("spin-owner")
            }
        )
    );
    assert_eq!(
        cell(HostKind::Tcg, 4, Pv::On, Workload::Mutex).label_without_workload(),
        "tcg smp 4 pv on"
    );
    assert_eq!(
        mutex_context(cell(HostKind::Tcg, 4, Pv::On, Workload::Mutex), 0),
        "no hypervisor: the check sees no preemption"
    );
}

fn mutex_console(policies: &[&str]) -> String {
    let mut text = String::from("[   0.1 0] lodger 0.1.0 (aarch64), entered at EL1\r\n");
    for policy in policies {
        text.push_str(&OK.replace(
            "kind=KIND slowpath=-",
            &format!("kind=mutex slowpath={policy}"),
        ));
        text.push_str(" threads=4 spun=1 slept=2 preempted_owner=0\r\n");
    }
    text.push_str("[[lodger:exit=0]]\r\n");
    text
}

#[test]
fn judging_a_mutex_run() {
    let mutex = cell(HostKind::Pvhost, 4, Pv::On, Workload::Mutex);
    let all = mutex_console(&MUTEX_POLICIES);
    let (samples, problems) = judge(mutex, Outcome::Exited(0), &all);
    assert_eq!(samples.len(), 3);
    assert_eq!(problems, [""; 0]);
    assert_eq!(samples[2].mutex.unwrap().slept, 2);

    let (_, problems) = judge(
        mutex,
        Outcome::Exited(0),
        &mutex_console(&["sleep", "sleep", "spin-owner-pv"]),
    );
    assert_eq!(
        problems,
        [
            "2 result lines for mutex sleep, expected one",
            "no result line for mutex spin-owner"
        ]
    );

    let bare = all.replace(" threads=4 spun=1 slept=2 preempted_owner=0", "");
    let lost = all.replacen("lost=0", "lost=3", 1);
    let (_, problems) = judge(mutex, Outcome::Exited(1), &lost);
    assert_eq!(
        problems,
        ["guest exited with status 1", "mutex sleep: 3 lost updates"]
    );
    let (_, problems) = judge(mutex, Outcome::Exited(0), &bare);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert_eq!(
        problems[0],
        "mutex sleep: no spun/slept/preempted_owner counters"
    );
    // A spinlock boot's lines are not a mutex boot's.
    let (_, problems) = judge(mutex, Outcome::Exited(0), &console(&KINDS));
    assert_eq!(problems[0], "no result line for mutex sleep");
}

#[test]
fn progress_lines_estimate_what_is_left_from_the_boots_so_far() {
    let cells = matrix(&[HostKind::Tcg], &[Workload::Contended], &ARCHES);
    let options = Options {
        reps: 5,
        max_reps: 15,
        quick: false,
        hosts: vec![HostKind::Tcg],
        workloads: vec![Workload::Contended],
        arches: vec![ARCH],
        l1_load: 0,
        timeout: None,
        image: None,
        verbose: false,
        output: BENCH_OUTPUT,
    };
    let run = |cell, secs| RunRecord {
        seq: 0,
        rep: 0,
        cell,
        wall: Duration::from_secs(secs),
        outcome: String::new(),
        samples: Vec::new(),
        error: None,
        console_tail: None,
        steal: None,
    };
    // 4 cells; after cells 0 and 1 of round 1 (2 s and 4 s a boot),
    // cells 2 and 3 still at their estimate (1.5 s).
    let runs = [run(0, 2), run(1, 4)];
    let line = progress(&cells, &runs, 2, 0, 5, &options, Duration::from_secs(6));
    assert_eq!(
        line,
        "bench: tcg smp 2 pv on contended: round 1/5, boot 3; 6 s elapsed, about 39 s left (up to 90 s more if it grows to 15 rounds)"
    );
    let line = progress(&cells, &runs, 0, 7, 8, &options, Duration::from_secs(300));
    assert!(
        line.starts_with("bench: tcg smp 4 pv on contended: round 8/15 (growing), boot 3; 5.0 min elapsed, about 9 s left (up to"),
        "{line}"
    );
}

#[test]
fn tail_keeps_the_last_lines() {
    assert_eq!(tail("a\r\nb\nc\n", 2), "b\nc\n");
    assert_eq!(tail("a", 5), "a\n");
    assert_eq!(tail("", 5), "");
}
