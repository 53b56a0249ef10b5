//! The pure half of [`super`]: the decision between live and plain, and
//! every line either mode prints or parses, tested here.

use std::time::{Duration, Instant};

/// The decision rule: live lines only on a terminal (stderr, where
/// progress goes), outside CI (`CI` set to anything but empty, `0` or
/// `false`: CI systems set `CI=true`), and not on a `TERM=dumb` terminal
/// (one that cannot move its cursor).
pub fn decide(stderr_is_terminal: bool, ci: Option<&str>, term: Option<&str>) -> bool {
    let in_ci = ci.is_some_and(|v| !matches!(v.trim(), "" | "0" | "false"));
    stderr_is_terminal && !in_ci && term != Some("dumb")
}

/// `42 s`, `3.4 min`: the bench's way of writing a duration.
pub fn duration(d: Duration) -> String {
    if d.as_secs() < 100 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} min", d.as_secs_f64() / 60.0)
    }
}

/// What is left at `done` of `total` after `elapsed`, at the rate so far.
pub fn linear_left(done: u64, total: u64, elapsed: Duration) -> Option<Duration> {
    (done > 0 && total >= done).then(|| elapsed.mul_f64((total - done) as f64 / done as f64))
}

/// The counts part of a live line: `[3/12] 6 s elapsed, about 39 s left`.
pub fn status(done: u64, total: Option<u64>, elapsed: Duration, left: Option<Duration>) -> String {
    let counts = match total {
        Some(total) => format!("[{done}/{total}] "),
        None if done > 0 => format!("[{done}] "),
        None => String::new(),
    };
    let left = left.map_or(String::new(), |l| format!(", about {} left", duration(l)));
    format!("{counts}{} elapsed{left}", duration(elapsed))
}

/// A phase's plain line: `xtask: LoongArch PV QEMU: configuring (12 s)`.
pub fn phase_line(what: &str, phase: &str, elapsed: Duration) -> String {
    format!("{what}: {phase} ({:.0} s)", elapsed.as_secs_f64())
}

/// A count's plain line: `xtask: LoongArch PV QEMU: 1234/2345 steps, 52% (123 s)`.
pub fn count_line(what: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    format!(
        "{what}: {done}/{total} steps, {percent}% ({:.0} s)",
        elapsed.as_secs_f64()
    )
}

/// ninja's progress: `[N/M] Compiling ...` gives `(N, M)`.
pub fn ninja_count(line: &str) -> Option<(u64, u64)> {
    let (counts, _) = line.strip_prefix('[')?.split_once(']')?;
    let (done, total) = counts.split_once('/')?;
    Some((done.trim().parse().ok()?, total.trim().parse().ok()?))
}

/// apt's lines for each index or package it fetches (or finds fresh):
/// `Get:7 URI ...`, `Hit:2 URI ...`, `Ign:1 ...`.
pub fn apt_fetch(line: &str) -> bool {
    ["Get:", "Hit:", "Ign:"].iter().any(|p| {
        line.strip_prefix(p)
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
    })
}

/// When a count's next plain line is due: at the start, every further
/// tenth of the total, at the end, and otherwise every [`Throttle::EVERY`].
#[derive(Debug)]
pub struct Throttle {
    /// The tenth and the time of the last line, if any.
    last: Option<(u64, Instant)>,
}

impl Throttle {
    pub const EVERY: Duration = Duration::from_secs(30);

    pub fn new() -> Self {
        Throttle { last: None }
    }

    /// Whether `done` of `total` at `now` gets a line (and if so, notes it).
    pub fn due(&mut self, done: u64, total: u64, now: Instant) -> bool {
        let tenth = (done * 10).checked_div(total).unwrap_or(10);
        let due = match self.last {
            None => true,
            Some((last, at)) => tenth > last || now.duration_since(at) >= Self::EVERY,
        };
        if due {
            self.last = Some((tenth, now));
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_only_on_a_terminal_outside_ci() {
        assert!(decide(true, None, Some("xterm-256color")));
        assert!(decide(true, None, None));
        assert!(!decide(false, None, Some("xterm")), "a pipe or a file");
        for ci in ["true", "1", "yes", "woodpecker"] {
            assert!(!decide(true, Some(ci), Some("xterm")), "CI={ci}");
        }
        for not_ci in ["", "0", "false"] {
            assert!(decide(true, Some(not_ci), None), "CI={not_ci:?}");
        }
        assert!(!decide(true, None, Some("dumb")));
    }

    #[test]
    fn plain_lines() {
        let s = Duration::from_secs;
        assert_eq!(
            phase_line(
                "xtask: LoongArch PV QEMU",
                "configuring",
                Duration::from_millis(12_400)
            ),
            "xtask: LoongArch PV QEMU: configuring (12 s)"
        );
        assert_eq!(
            count_line("xtask: LoongArch PV QEMU", 1234, 2345, s(123)),
            "xtask: LoongArch PV QEMU: 1234/2345 steps, 52% (123 s)"
        );
        assert_eq!(count_line("x", 0, 0, s(0)), "x: 0/0 steps, 100% (0 s)");
        for line in [
            phase_line("a", "b", s(1)),
            count_line("a", 1, 2, s(3)),
            status(3, Some(12), s(6), Some(s(39))),
        ] {
            assert!(!line.contains(['\r', '\x1b', '\n']), "{line:?}");
        }
    }

    #[test]
    fn live_status_counts_and_estimates() {
        let s = Duration::from_secs;
        assert_eq!(
            status(3, Some(12), s(6), Some(s(39))),
            "[3/12] 6 s elapsed, about 39 s left"
        );
        assert_eq!(status(3, Some(12), s(6), None), "[3/12] 6 s elapsed");
        assert_eq!(status(0, Some(12), s(6), None), "[0/12] 6 s elapsed");
        assert_eq!(status(7, None, s(150), None), "[7] 2.5 min elapsed");
        assert_eq!(status(0, None, s(2), None), "2 s elapsed");
        // Without the caller's estimate: the rate so far.
        assert_eq!(linear_left(3, 12, s(6)), Some(s(18)));
        assert_eq!(linear_left(1, 4, s(10)), Some(s(30)));
        assert_eq!(linear_left(0, 4, s(10)), None);
        assert_eq!(linear_left(5, 4, s(10)), None);
    }

    #[test]
    fn ninja_and_apt_lines() {
        assert_eq!(
            ninja_count("[123/2345] Compiling C object libqemu.a.p/x.c.o"),
            Some((123, 2345))
        );
        assert_eq!(
            ninja_count("[1/1] Linking target qemu-system-loongarch64"),
            Some((1, 1))
        );
        for not in [
            "ninja: Entering directory `build'",
            "[a/b] x",
            "[12] x",
            "",
            "FAILED: x",
        ] {
            assert_eq!(ninja_count(not), None, "{not}");
        }
        assert!(apt_fetch("Get:7 http://m.example/debian bookworm/main arm64 busybox-static arm64 1:1.35.0-4+b3 [866 kB]"));
        assert!(apt_fetch(
            "Hit:1 http://m.example/debian bookworm InRelease"
        ));
        assert!(!apt_fetch("Fetched 45.1 MB in 5s (9,020 kB/s)"));
        assert!(!apt_fetch("Get: nothing"));
    }

    #[test]
    fn count_lines_every_tenth_or_half_minute() {
        let t0 = Instant::now();
        let mut throttle = Throttle::new();
        let lines: Vec<u64> = (0..=1000)
            .filter(|&done| throttle.due(done, 1000, t0))
            .collect();
        assert_eq!(
            lines,
            [0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
        );
        // Slow: a line after 30 s even within a tenth, not before.
        let mut throttle = Throttle::new();
        assert!(throttle.due(1, 1000, t0));
        assert!(!throttle.due(2, 1000, t0 + Duration::from_secs(29)));
        assert!(throttle.due(3, 1000, t0 + Duration::from_secs(30)));
        assert!(!throttle.due(4, 1000, t0 + Duration::from_secs(31)));
    }
}
