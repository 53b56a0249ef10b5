//! Guest time and the per-CPU tick.
//!
//! Time is the architecture's free-running counter ([`Timer::ticks`]), shared by
//! all CPUs and, under KVM, guest time: it keeps running while a vCPU is
//! preempted. Each CPU's timer interrupts it [`TICK_HZ`] times a second,
//! and also at the deadline of its earliest sleeping thread, so a sleep
//! ends when it is due, not at the next tick.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;

use arch::{Cpu, Timer};

use crate::percpu::PerCpu;
use crate::{per_cpu, A};

/// Tick rate of every CPU's timer.
pub const TICK_HZ: u64 = 100;

/// Ticks taken so far on each CPU.
static TICKS: PerCpu<AtomicU64> = per_cpu!(AtomicU64::new(0));
/// Counter value of each CPU's next tick.
static NEXT_TICK: PerCpu<AtomicU64> = per_cpu!(AtomicU64::new(0));
/// Counter value each CPU's timer was last armed to fire at.
static ARMED_AT: PerCpu<AtomicU64> = per_cpu!(AtomicU64::new(0));
/// Whether each CPU's timer is silenced: inside its timer interrupt, from
/// the arch's silencing (before [`on_timer`]) to the re-arming at its end.
static SILENCED: PerCpu<AtomicBool> = per_cpu!(AtomicBool::new(false));

/// Counter ticks to nanoseconds at `hz`, without overflow for any u64 input.
pub const fn ticks_to_ns(ticks: u64, hz: u64) -> u64 {
    (ticks as u128 * 1_000_000_000 / hz as u128) as u64
}

/// Nanoseconds to counter ticks at `hz`, rounded up.
pub const fn ns_to_ticks(ns: u64, hz: u64) -> u64 {
    (ns as u128 * hz as u128).div_ceil(1_000_000_000) as u64
}

/// Guest time since the counter started, in nanoseconds.
pub fn now_ns() -> u64 {
    ticks_to_ns(A::ticks(), A::ticks_per_sec())
}

/// Guest time between two counter readings.
pub fn ticks_between(earlier: u64, later: u64) -> Duration {
    Duration::from_nanos(ticks_to_ns(
        later.saturating_sub(earlier),
        A::ticks_per_sec(),
    ))
}

/// Busy-waits for `d` of guest time.
pub fn spin_for(d: Duration) {
    let end = A::ticks() + ns_to_ticks(d.as_nanos() as u64, A::ticks_per_sec());
    while A::ticks() < end {
        A::spin_hint();
    }
}

/// Spins until `done()` or `timeout` of guest time passes; true if done.
pub fn spin_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = A::ticks() + ns_to_ticks(timeout.as_nanos() as u64, A::ticks_per_sec());
    loop {
        if done() {
            return true;
        }
        if A::ticks() >= end {
            return done();
        }
        A::spin_hint();
    }
}

fn tick_period() -> u64 {
    A::ticks_per_sec() / TICK_HZ
}

/// Starts this CPU's periodic tick. Interrupts masked.
pub(crate) fn start_tick() {
    NEXT_TICK
        .current()
        .store(A::ticks() + tick_period(), Ordering::Relaxed);
    program_timer(None);
}

/// Arms this CPU's timer for its next tick or `deadline`, whichever comes
/// first. Interrupts masked.
pub(crate) fn program_timer(deadline: Option<u64>) {
    let next = NEXT_TICK.current().load(Ordering::Relaxed);
    let at = deadline.map_or(next, |d| d.min(next));
    let now = A::ticks();
    let delay = at.saturating_sub(now).max(1);
    ARMED_AT.current().store(now + delay, Ordering::Relaxed);
    A::timer_arm(delay);
    SILENCED.current().store(false, Ordering::Relaxed);
}

/// Before a halt, interrupts masked: if this CPU's timer is silenced (a
/// lock waiter halting inside the timer interrupt: the clock lock,
/// balancing, expiring sleepers), arm it for one tick, so that the halt
/// ends by then even if its kick never comes. The interrupt's own re-arming
/// at its end replaces this.
pub(crate) fn bound_halt() {
    if SILENCED.current().load(Ordering::Relaxed) {
        A::timer_arm(tick_period());
    }
}

/// Guest time at which this CPU's timer fired (or will), as last armed: a
/// timer interrupt's time starts there (`sched::account`). Interrupts
/// masked.
pub(crate) fn timer_fired_ns() -> u64 {
    ticks_to_ns(
        ARMED_AT.current().load(Ordering::Relaxed),
        A::ticks_per_sec(),
    )
}

/// When the tick after the one due at `due` falls, taken at `now`.
///
/// Ticks missed while the vCPU was away are not made up for, and a tick
/// more than a period late starts a whole new period: firing again at once
/// would interrupt a CPU twice for one tick, and under host overcommit
/// (late ticks are the rule there) end every halt of a lock waiter that
/// waits with interrupts masked, turning it into a spinner.
fn tick_after(due: u64, now: u64, period: u64) -> u64 {
    let on_time = due + period;
    if on_time > now {
        on_time
    } else {
        now + period
    }
}

/// Timer interrupt: the tick if one is due (counted, then the scheduler's),
/// sleepers whose time has come, then re-arm.
pub(crate) fn on_timer() {
    SILENCED.current().store(true, Ordering::Relaxed);
    let now = A::ticks();
    let next = NEXT_TICK.current();
    let due = next.load(Ordering::Relaxed);
    if now >= due {
        next.store(tick_after(due, now, tick_period()), Ordering::Relaxed);
        TICKS.current().fetch_add(1, Ordering::Relaxed);
        crate::pv::check_own_preempted();
        crate::sched::on_tick();
    }
    program_timer(crate::sched::expire_sleepers(now));
}

/// Ticks CPU `cpu` has taken.
pub fn ticks_on(cpu: usize) -> u64 {
    TICKS.of(cpu).load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_tick_keeps_the_period_and_never_fires_at_once() {
        // On time or a little late: the grid holds.
        assert_eq!(tick_after(1000, 1000, 100), 1100);
        assert_eq!(tick_after(1000, 1099, 100), 1100);
        // A period or more late: a whole period from now, not a catch-up.
        assert_eq!(tick_after(1000, 1100, 100), 1200);
        assert_eq!(tick_after(1000, 5000, 100), 5100);
    }

    #[test]
    fn conversions_round_trip_at_common_rates() {
        for hz in [62_500_000, 100_000_000, 1_000_000_000, 24_000_000] {
            assert_eq!(ticks_to_ns(hz, hz), 1_000_000_000);
            assert_eq!(ns_to_ticks(1_000_000_000, hz), hz);
            assert!(ticks_to_ns(ns_to_ticks(12_345, hz), hz) >= 12_345);
        }
    }

    #[test]
    fn conversions_do_not_overflow() {
        assert_eq!(ticks_to_ns(u64::MAX, 1_000_000_000), u64::MAX);
        assert_eq!(
            ticks_to_ns(u64::MAX / 2, 62_500_000),
            (u64::MAX as u128 / 2 * 16) as u64
        );
    }

    #[test]
    fn a_halt_inside_the_timer_interrupt_arms_the_timer() {
        arch::hosted::set_cpu_id(3);
        arch::hosted::take_timer_arm();
        crate::pv::wait(&|| true);
        assert_eq!(
            arch::hosted::take_timer_arm(),
            None,
            "timer running: no arming"
        );
        SILENCED.of(3).store(true, Ordering::Relaxed);
        crate::pv::wait(&|| false);
        assert_eq!(arch::hosted::take_timer_arm(), None, "no halt: no arming");
        crate::pv::wait(&|| true);
        assert_eq!(arch::hosted::take_timer_arm(), Some(tick_period()));
    }

    #[test]
    fn spin_until_reports_timeout() {
        assert!(!spin_until(Duration::from_millis(1), || false));
        assert!(spin_until(Duration::from_millis(1), || true));
    }
}
