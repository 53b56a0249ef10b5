use super::*;

/// Runs `judge` on the fairshare test over canned attempts: (error %,
/// wait share), `None` error for a pass. Returns the tally and how
/// many attempts were made.
fn judged(attempts: &[(Option<&str>, f64)]) -> (Tally, usize) {
    let test = TESTS
        .iter()
        .find(|t| t.name == "kvm-fairshare-accurate")
        .unwrap();
    let mut tally = Tally::default();
    let mut made = 0;
    judge(test, &mut tally, || {
        let (error, share) = attempts[made];
        made += 1;
        Attempt {
            result: error.map_or(Ok(()), |_| Err(Failure::new("exit 1".into()))),
            wait_share: Some(share),
            console: error.map_or(String::new(), |e| format!("worst_ratio_error={e}%")),
        }
    });
    (tally, made)
}

#[test]
fn a_timing_failure_counts_only_without_interference() {
    // Failed on a quiet machine beyond what its wait explains: failed,
    // no retry (5 + 300 * 0.01 = 8).
    let (t, n) = judged(&[(Some("9.0"), 0.01)]);
    assert_eq!((t.passed, t.failed.len(), n), (0, 1, 1));
    // Failed under interference that explains it, then passed.
    let (t, n) = judged(&[(Some("7.9"), 0.08), (None, 0.03)]);
    assert_eq!((t.passed, t.failed.len(), n), (1, 0, 2));
    // Never judgeable: skipped after the bounded attempts.
    let (t, n) = judged(&[(Some("7.9"), 0.08); TIMING_ATTEMPTS]);
    assert_eq!((t.passed, t.failed.len(), t.not_judgeable.len()), (0, 0, 1));
    assert_eq!(n, TIMING_ATTEMPTS);
    // A mutant's error (steal ignored) fails on a machine busy up to the
    // limit; past it nothing is judged.
    let (t, n) = judged(&[(Some("100.0"), FIGURE_WAIT_LIMIT)]);
    assert_eq!((t.failed.len(), n), (1, 1));
    let (t, n) = judged(&[(Some("240.3"), 0.65); TIMING_ATTEMPTS]);
    assert_eq!(
        (t.failed.len(), t.not_judgeable.len(), n),
        (0, 1, TIMING_ATTEMPTS)
    );
}

#[test]
fn only_the_selftests_timed_failures_are_judged_as_timing() {
    let console = |lines: &[&str]| lines.join("\n") + "\n";
    let timed = "[ 1.4 0 E] test sleep-accuracy ... FAILED (timed): median overshoot 4496 us";
    let untimed = "[ 1.5 0 E] test lock-counter ... FAILED: lost 3 updates";
    assert!(only_timed_selftest_failures(&console(&[
        timed,
        "17 passed, 1 failed"
    ])));
    assert!(!only_timed_selftest_failures(&console(&[
        timed,
        untimed,
        "16 passed, 2 failed"
    ])));
    assert!(!only_timed_selftest_failures(&console(&[
        untimed,
        "17 passed, 1 failed"
    ])));
    assert!(!only_timed_selftest_failures(&console(&[
        "18 passed, 0 failed"
    ])));
    // A timed failure and a panic before the summary: not only timed.
    assert!(!only_timed_selftest_failures(&console(&[
        timed,
        "panicked on CPU 1"
    ])));

    // A test without timing of its own: a timed-only failure under
    // interference is booted again; any other failure counts at once.
    let test = TESTS.iter().find(|t| t.name == "mem-768m").unwrap();
    assert!(test.timing.is_none());
    // Attempts: (failed, wait share).
    let run = |timed_only: bool, attempts: &[(bool, f64)]| {
        let (mut tally, mut made) = (Tally::default(), 0);
        judge(test, &mut tally, || {
            let (failed, share) = attempts[made];
            made += 1;
            let mut failure = Failure::new("exit 1".into());
            failure.timed_only = timed_only;
            Attempt {
                result: if failed { Err(failure) } else { Ok(()) },
                wait_share: Some(share),
                console: String::new(),
            }
        });
        (
            tally.passed,
            tally.failed.len(),
            tally.not_judgeable.len(),
            made,
        )
    };
    assert_eq!(run(true, &[(true, 0.3), (false, 0.0)]), (1, 0, 0, 2));
    assert_eq!(run(true, &[(true, 0.01)]), (0, 1, 0, 1));
    assert_eq!(run(true, &[(true, 0.6); 3]), (0, 0, 1, 3));
    assert_eq!(run(false, &[(true, 0.6)]), (0, 1, 0, 1));
}

#[test]
fn tail_keeps_the_last_lines() {
    assert_eq!(
        tail("a\r\nb\nc\n", 2),
        "--- last 2 of 3 console lines ---\nb\nc\n"
    );
    assert_eq!(tail("a", 5), "--- last 1 of 1 console lines ---\na\n");
}
