//! Whether the host's PV kicks arrive: a kick that does not end the halt
//! it was sent to (dropped, or delayed past the tick) is a host fault.
//!
//! The kicker stamps the target before its kick call ([`sent`]); the
//! target, after its halt ([`after_halt`]), judges the time from that stamp
//! to running again, less the steal its clock saw meanwhile (a kick to a
//! vCPU the host holds off is late by design). A late kick adds one to the
//! target's score, an on-time one takes one off: on a host that delivers,
//! the score stays near 0; one that drops or delays kicks drives it up.
//! At [`SCORE_LIMIT`] the target says so in one line and from then on is
//! kicked by IPI; the other CPUs keep the PV kick.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::percpu::PerCpu;
use crate::{per_cpu, time};

/// A kick is late when the halt it was sent to ends this long after it,
/// steal excluded: far above a kicked halt's wake-up on every host here
/// (pvhost tens of microseconds; TCG under load up to 4.6 ms), below the
/// 10 ms tick that ends a halt whose kick never came.
pub const LATE_NS: u64 = 6_000_000;
/// A kick is also late when its halt ended by the tick this long after it,
/// steal excluded: the tick, not the kick, woke the CPU.
pub const TICKED_LATE_NS: u64 = 1_000_000;
/// Late kicks (net of on-time ones) before a CPU gives up on the PV kick:
/// few, as a lock storm under a faulty host kicks each CPU about ten times
/// a second; a host that delivers kicks them in tens of microseconds.
pub const SCORE_LIMIT: u32 = 4;

/// Guest time of the last PV kick sent to each CPU (0: none since its halt).
static SENT_AT: PerCpu<AtomicU64> = per_cpu!(AtomicU64::new(0));
/// Each CPU's score (written by that CPU only).
static SCORE: PerCpu<AtomicU32> = per_cpu!(AtomicU32::new(0));
/// CPUs kicked by IPI: their PV kicks came late or not at all.
static BY_IPI: PerCpu<AtomicBool> = per_cpu!(AtomicBool::new(false));

/// What one kick's timing says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to report.
    Fine,
    /// The score reached [`SCORE_LIMIT`]: give up on the PV kick.
    GiveUp,
}

/// The score after one judged kick: `elapsed_ns` from the kick to running
/// again, `steal_ns` of it the host's; `ticked`: the CPU took a tick
/// meanwhile.
pub fn judge(score: u32, elapsed_ns: u64, steal_ns: u64, ticked: bool) -> (u32, Verdict) {
    let unexplained = elapsed_ns.saturating_sub(steal_ns);
    let late = unexplained > LATE_NS || (ticked && unexplained > TICKED_LATE_NS);
    let score = if late {
        score + 1
    } else {
        score.saturating_sub(1)
    };
    if score >= SCORE_LIMIT {
        (score, Verdict::GiveUp)
    } else {
        (score, Verdict::Fine)
    }
}

/// Whether `cpu` is to be kicked by IPI instead of the host's PV kick.
pub(super) fn by_ipi(cpu: usize) -> bool {
    BY_IPI.of(cpu).load(Ordering::Relaxed)
}

/// A PV kick is about to go to `cpu` (stamped first: the target may run
/// and judge before the call returns); the stamp.
pub(super) fn sent(cpu: usize) -> u64 {
    let stamp = time::now_ns().max(1);
    SENT_AT.of(cpu).store(stamp, Ordering::Relaxed);
    stamp
}

/// The kick stamped `stamp` went as an IPI after all (no PV kick for
/// `cpu`): unstamped, unless a later kick stamped it again.
pub(super) fn not_sent(cpu: usize, stamp: u64) {
    let _ = SENT_AT
        .of(cpu)
        .compare_exchange(stamp, 0, Ordering::Relaxed, Ordering::Relaxed);
}

/// Where a halt began: the CPU's steal clock and ticks.
pub(super) struct HaltStart {
    steal: u64,
    ticks: u64,
}

/// The calling CPU is about to halt: forget kicks from before, and note
/// its steal clock and ticks.
pub(super) fn before_halt(cpu: usize) -> HaltStart {
    SENT_AT.of(cpu).store(0, Ordering::Relaxed);
    HaltStart {
        steal: super::steal_ns(cpu),
        ticks: time::ticks_on(cpu),
    }
}

/// The calling CPU runs again (interrupts enabled: a tick that ended the
/// halt has been taken) after a halt that began at `start`: judges the kick
/// sent to it meanwhile, if any.
pub(super) fn after_halt(cpu: usize, start: HaltStart) {
    let sent_at = SENT_AT.of(cpu).swap(0, Ordering::Relaxed);
    if sent_at == 0 || by_ipi(cpu) {
        return;
    }
    let elapsed = time::now_ns().saturating_sub(sent_at);
    let steal = super::steal_ns(cpu).saturating_sub(start.steal);
    let ticked = time::ticks_on(cpu) != start.ticks;
    let score = SCORE.of(cpu);
    let (now, verdict) = judge(score.load(Ordering::Relaxed), elapsed, steal, ticked);
    score.store(now, Ordering::Relaxed);
    if verdict == Verdict::GiveUp {
        BY_IPI.of(cpu).store(true, Ordering::Relaxed);
        log::warn!(
            "pv: PV kicks to CPU {cpu} come late or not at all ({SCORE_LIMIT} more late than on \
             time, the last {} us after the kick, steal excluded): CPU {cpu} is kicked by IPI \
             from now on; other CPUs keep the PV kick",
            elapsed.saturating_sub(steal) / 1000
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_kicks_raise_the_score_and_on_time_ones_lower_it() {
        assert_eq!(judge(0, LATE_NS + 1, 0, false), (1, Verdict::Fine));
        assert_eq!(judge(1, 1_000, 0, false), (0, Verdict::Fine));
        assert_eq!(judge(0, 1_000, 0, false), (0, Verdict::Fine));
        // Exactly the bound is on time.
        assert_eq!(judge(2, LATE_NS, 0, false), (1, Verdict::Fine));
    }

    #[test]
    fn a_halt_the_tick_ended_long_after_its_kick_is_late() {
        assert_eq!(judge(0, TICKED_LATE_NS + 1, 0, true), (1, Verdict::Fine));
        assert_eq!(judge(1, TICKED_LATE_NS + 1, 0, false), (0, Verdict::Fine));
        // A tick that came as the kick did: on time.
        assert_eq!(judge(1, 50_000, 0, true), (0, Verdict::Fine));
    }

    #[test]
    fn steal_excuses_lateness() {
        // 20 ms after the kick, 18 of them held off by the host: on time.
        assert_eq!(judge(2, 20_000_000, 18_000_000, false), (1, Verdict::Fine));
        assert_eq!(judge(2, 20_000_000, 1_000_000, false), (3, Verdict::Fine));
    }

    #[test]
    fn the_limit_gives_up() {
        assert_eq!(
            judge(SCORE_LIMIT - 1, LATE_NS + 1, 0, false),
            (SCORE_LIMIT, Verdict::GiveUp)
        );
        // A host that drops most kicks gets there; one that drops a few
        // in many does not.
        let mut score = 0;
        let mut gave_up = false;
        for i in 0..40 {
            let late = i % 4 != 0; // Three in four late.
            let (s, v) = judge(score, if late { 9_000_000 } else { 50_000 }, 0, false);
            score = s;
            gave_up |= v == Verdict::GiveUp;
        }
        assert!(gave_up);
        let mut score = 0;
        for i in 0..1000 {
            let late = i % 3 == 0; // One in three late.
            let (s, v) = judge(score, if late { 9_000_000 } else { 50_000 }, 0, false);
            score = s;
            assert_eq!(v, Verdict::Fine, "kick {i}");
        }
    }
}
