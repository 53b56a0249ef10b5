//! Steal-aware time accounting: the idea of Linux's `clock_task`.
//!
//! Each CPU samples guest time and its PV steal clock at every context
//! switch and every tick. The wall time between two samples is split into
//! time stolen by the host and task time; task time is charged to the
//! thread that ran (and to the CPU's busy or idle total), steal only to the
//! CPU's steal total. So a thread's run time is the time it actually had
//! the CPU, whatever the host did, and fair-share decisions built on it are
//! not skewed by the host.
//!
//! Steal can be reported late (the host updates the record when the vCPU
//! next runs) and so exceed the interval it is read in; the excess is carried
//! to the next interval, never dropped, so over a run the CPU's steal total
//! equals the steal clock's advance up to at most one interval's worth.

/// What one interval charged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charge {
    /// Guest time that passed.
    pub wall_ns: u64,
    /// The part of it the host took.
    pub steal_ns: u64,
    /// The part the running thread had: `wall_ns - steal_ns`.
    pub task_ns: u64,
}

/// One CPU's time split into busy, idle and steal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Task time of threads other than the idle thread.
    pub busy_ns: u64,
    /// Task time of the idle thread.
    pub idle_ns: u64,
    /// Time stolen by the host.
    pub steal_ns: u64,
}

impl CpuTimes {
    /// Everything accounted: the guest time the clock has covered.
    pub fn total_ns(&self) -> u64 {
        self.busy_ns + self.idle_ns + self.steal_ns
    }
}

/// One CPU's accounting clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuClock {
    /// Guest time of the last sample.
    last_ns: u64,
    /// Steal clock reading accounted so far.
    steal_seen_ns: u64,
    /// Totals since [`CpuClock::start`].
    pub times: CpuTimes,
}

impl CpuClock {
    pub const fn new() -> Self {
        Self {
            last_ns: 0,
            steal_seen_ns: 0,
            times: CpuTimes {
                busy_ns: 0,
                idle_ns: 0,
                steal_ns: 0,
            },
        }
    }

    /// Starts accounting at guest time `now_ns` with the steal clock at
    /// `steal_clock_ns` (0 without one).
    pub fn start(&mut self, now_ns: u64, steal_clock_ns: u64) {
        *self = Self::new();
        self.last_ns = now_ns;
        self.steal_seen_ns = steal_clock_ns;
    }

    /// Accounts the interval up to `now_ns`, during which the idle thread
    /// (`idle`) or another thread ran, with the steal clock now at
    /// `steal_clock_ns`.
    pub fn advance(&mut self, now_ns: u64, steal_clock_ns: u64, idle: bool) -> Charge {
        let wall_ns = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        // A clock that went backwards (a re-registered record) adds nothing.
        let pending = steal_clock_ns.saturating_sub(self.steal_seen_ns);
        let steal_ns = pending.min(wall_ns);
        self.steal_seen_ns += steal_ns;
        let task_ns = wall_ns - steal_ns;
        if idle {
            self.times.idle_ns += task_ns;
        } else {
            self.times.busy_ns += task_ns;
        }
        self.times.steal_ns += steal_ns;
        Charge {
            wall_ns,
            steal_ns,
            task_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_each_interval_into_task_and_steal() {
        let mut clock = CpuClock::new();
        clock.start(1_000, 500);
        let c = clock.advance(11_000, 3_500, false);
        assert_eq!(
            c,
            Charge {
                wall_ns: 10_000,
                steal_ns: 3_000,
                task_ns: 7_000
            }
        );
        let c = clock.advance(21_000, 3_500, true);
        assert_eq!((c.steal_ns, c.task_ns), (0, 10_000));
        assert_eq!(
            clock.times,
            CpuTimes {
                busy_ns: 7_000,
                idle_ns: 10_000,
                steal_ns: 3_000
            }
        );
        assert_eq!(clock.times.total_ns(), 20_000);
    }

    #[test]
    fn late_steal_is_carried_not_dropped() {
        let mut clock = CpuClock::new();
        clock.start(0, 0);
        // The host reports 15 us stolen within a 10 us interval.
        let c = clock.advance(10_000, 15_000, false);
        assert_eq!((c.steal_ns, c.task_ns), (10_000, 0));
        let c = clock.advance(20_000, 15_000, false);
        assert_eq!((c.steal_ns, c.task_ns), (5_000, 5_000));
        assert_eq!(clock.times.steal_ns, 15_000);
    }

    #[test]
    fn steal_total_tracks_the_steal_clock_over_many_intervals() {
        let mut clock = CpuClock::new();
        clock.start(0, 0);
        let (mut now, mut steal) = (0u64, 0u64);
        for i in 0..10_000u64 {
            now += 1_000 + i % 7 * 300;
            steal += (i * 7919) % 900;
            clock.advance(now, steal, i % 3 == 0);
        }
        assert_eq!(clock.times.total_ns(), now);
        assert!(
            steal - clock.times.steal_ns < 3_000,
            "carried {}",
            steal - clock.times.steal_ns
        );
    }

    #[test]
    fn clocks_that_go_backwards_add_nothing() {
        let mut clock = CpuClock::new();
        clock.start(10_000, 5_000);
        let c = clock.advance(9_000, 4_000, false);
        assert_eq!(c, Charge::default());
        let c = clock.advance(12_000, 5_500, false);
        assert_eq!((c.wall_ns, c.steal_ns, c.task_ns), (2_000, 500, 1_500));
    }

    #[test]
    fn without_a_steal_clock_all_time_is_task_time() {
        let mut clock = CpuClock::new();
        clock.start(0, 0);
        let c = clock.advance(5_000, 0, false);
        assert_eq!((c.steal_ns, c.task_ns), (0, 5_000));
    }
}
