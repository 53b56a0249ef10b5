//! Steal-aware time accounting: the idea of Linux's `clock_task`.
//!
//! Each CPU samples guest time and its PV steal clock at every context
//! switch, every tick and on entry to and exit from every interrupt. The
//! wall time between two samples is split into time stolen by the host and
//! task time; task time is charged to the thread that ran (and to the CPU's
//! busy or idle total) or, inside an interrupt, to the CPU's interrupt
//! total (Linux's IRQ time accounting); steal only to the CPU's steal
//! total. So a thread's run time is the time it actually had the CPU,
//! whatever the host and the interrupts did, and fair-share decisions built
//! on it are not skewed by them.
//!
//! A timer interrupt's time starts when the timer fired, not when its
//! handler began ([`irq_start`]): delivering it takes a trip through the
//! host (an exit, the host's handler, an injection), which under nested
//! KVM costs a fifth of a millisecond, and that time is no more the
//! interrupted thread's than the handler is.
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

/// One CPU's time split into busy, idle, interrupt and steal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Task time of threads other than the idle thread.
    pub busy_ns: u64,
    /// Task time of the idle thread.
    pub idle_ns: u64,
    /// Task time in interrupts (charged to no thread).
    pub irq_ns: u64,
    /// Time stolen by the host.
    pub steal_ns: u64,
}

impl CpuTimes {
    /// Everything accounted: the guest time the clock has covered.
    pub fn total_ns(&self) -> u64 {
        self.busy_ns + self.idle_ns + self.irq_ns + self.steal_ns
    }
}

/// What ran during an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// A thread other than the idle thread.
    Thread,
    /// The idle thread.
    Idle,
    /// An interrupt.
    Irq,
}

/// Longest a timer's delivery is believed to take. Later than this the
/// vCPU was away (steal, or a stretch with interrupts masked), and the
/// interrupt's time starts at its handler.
pub const MAX_DELIVERY_NS: u64 = 1_000_000;

/// When an interrupt's time starts, its handler starting at `now_ns`: for a
/// timer that fired at `fired_ns`, then, unless that is in the future or
/// more than [`MAX_DELIVERY_NS`] ago.
pub fn irq_start(now_ns: u64, fired_ns: Option<u64>) -> u64 {
    match fired_ns {
        Some(fired) if fired <= now_ns && now_ns - fired <= MAX_DELIVERY_NS => fired,
        _ => now_ns,
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
                irq_ns: 0,
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

    /// Accounts the interval up to `now_ns`, during which `ran` ran, with
    /// the steal clock now at `steal_clock_ns`.
    pub fn advance(&mut self, now_ns: u64, steal_clock_ns: u64, ran: Ran) -> Charge {
        let wall_ns = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        // A clock that went backwards (a re-registered record) adds nothing.
        let pending = steal_clock_ns.saturating_sub(self.steal_seen_ns);
        let steal_ns = pending.min(wall_ns);
        self.steal_seen_ns += steal_ns;
        let task_ns = wall_ns - steal_ns;
        *match ran {
            Ran::Thread => &mut self.times.busy_ns,
            Ran::Idle => &mut self.times.idle_ns,
            Ran::Irq => &mut self.times.irq_ns,
        } += task_ns;
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
        let c = clock.advance(11_000, 3_500, Ran::Thread);
        assert_eq!(
            c,
            Charge {
                wall_ns: 10_000,
                steal_ns: 3_000,
                task_ns: 7_000
            }
        );
        let c = clock.advance(21_000, 3_500, Ran::Idle);
        assert_eq!((c.steal_ns, c.task_ns), (0, 10_000));
        assert_eq!(
            clock.times,
            CpuTimes {
                busy_ns: 7_000,
                idle_ns: 10_000,
                irq_ns: 0,
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
        let c = clock.advance(10_000, 15_000, Ran::Thread);
        assert_eq!((c.steal_ns, c.task_ns), (10_000, 0));
        let c = clock.advance(20_000, 15_000, Ran::Thread);
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
            clock.advance(
                now,
                steal,
                [Ran::Thread, Ran::Idle, Ran::Irq][i as usize % 3],
            );
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
        let c = clock.advance(9_000, 4_000, Ran::Thread);
        assert_eq!(c, Charge::default());
        let c = clock.advance(12_000, 5_500, Ran::Thread);
        assert_eq!((c.wall_ns, c.steal_ns, c.task_ns), (2_000, 500, 1_500));
    }

    #[test]
    fn without_a_steal_clock_all_time_is_task_time() {
        let mut clock = CpuClock::new();
        clock.start(0, 0);
        let c = clock.advance(5_000, 0, Ran::Thread);
        assert_eq!((c.steal_ns, c.task_ns), (0, 5_000));
    }

    #[test]
    fn interrupt_time_is_nobody_s_task_time() {
        let mut clock = CpuClock::new();
        clock.start(0, 0);
        // A thread runs 10 us; a timer fires at 10 us, its handler starts
        // at 12 us (delivery), ends at 15 us; 2 us of steal happened inside.
        let start = irq_start(12_000, Some(10_000));
        assert_eq!(start, 10_000);
        let c = clock.advance(start, 0, Ran::Thread);
        assert_eq!(c.task_ns, 10_000);
        let c = clock.advance(15_000, 2_000, Ran::Irq);
        assert_eq!((c.steal_ns, c.task_ns), (2_000, 3_000));
        clock.advance(20_000, 2_000, Ran::Thread);
        assert_eq!(
            clock.times,
            CpuTimes {
                busy_ns: 15_000,
                idle_ns: 0,
                irq_ns: 3_000,
                steal_ns: 2_000
            }
        );
        assert_eq!(clock.times.total_ns(), 20_000);
    }

    #[test]
    fn a_timer_s_time_starts_when_it_fired_unless_that_is_implausible() {
        assert_eq!(irq_start(50_000, Some(40_000)), 40_000);
        assert_eq!(irq_start(50_000, None), 50_000);
        // Fired in the future (re-armed meanwhile): the handler's start.
        assert_eq!(irq_start(50_000, Some(60_000)), 50_000);
        // Fired long ago: the vCPU was away, which steal accounts for.
        let late = 50_000 + MAX_DELIVERY_NS + 1;
        assert_eq!(irq_start(late, Some(50_000)), late);
        assert_eq!(irq_start(50_000 + MAX_DELIVERY_NS, Some(50_000)), 50_000);
    }
}
