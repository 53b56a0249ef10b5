use super::*;

#[test]
fn mutex_is_a_kind_but_not_a_default_one() {
    let config = parse(&[], 4).unwrap();
    assert_eq!(config.kinds, LockKind::ALL.map(Kind::Spin));
    assert_eq!((config.cpus, config.threads), (4, 1));
    assert_eq!(config.mutex_spins, MutexSpin::ALL);

    let config = parse(&["kinds=mutex,tas", "mutex=spin-owner-pv", "threads=2"], 4).unwrap();
    assert_eq!(config.kinds, [Kind::Mutex, Kind::Spin(LockKind::Tas)]);
    assert_eq!(config.mutex_spins, [MutexSpin::OwnerRunningNotPreempted]);
    assert_eq!(config.threads, 2);
    assert_eq!(
        parse(&["mutex=sleep"], 4).unwrap().mutex_spins,
        [MutexSpin::Never]
    );
    assert_eq!(Kind::Mutex.name(), "mutex");
    assert_eq!(Kind::all_names(), "tas,ticket,mcs,qspinlock,mutex");
}

#[test]
fn bad_arguments_say_what_is_valid() {
    let err = |args: &[&str]| parse(args, 4).unwrap_err();
    assert_eq!(
        err(&["kinds=mutex,futex"]),
        "unknown lock kind `futex`; valid: tas,ticket,mcs,qspinlock,mutex"
    );
    assert_eq!(
        err(&["mutex=spin"]),
        "bad `mutex=spin`: expected sleep|spin-owner|spin-owner-pv|all"
    );
    assert_eq!(
        err(&["threads=0"]),
        "bad `threads=0`: expected a number in 1..=8"
    );
    assert_eq!(err(&["cpus=5"]), "bad `cpus=5`: expected a number in 1..=4");
    assert!(err(&["spin=all"]).contains("mutex=sleep|spin-owner|spin-owner-pv|all"));
    assert_eq!(err(&["shares=1"]), "bad `shares=1`: expected off|on");
}

#[test]
fn shares_are_printed_only_when_asked() {
    assert!(!parse(&[], 4).unwrap().shares);
    assert!(parse(&["shares=on"], 4).unwrap().shares);
    assert!(!parse(&["shares=off"], 4).unwrap().shares);
}

#[test]
fn a_total_is_split_across_participants() {
    let total = Amount::Total(10);
    let quotas: Vec<u64> = (0..4).map(|rank| total.quota(rank, 4)).collect();
    assert_eq!(quotas, [3, 3, 2, 2]);
    assert_eq!(Amount::For(Duration::from_millis(1)).quota(0, 4), u64::MAX);
}
