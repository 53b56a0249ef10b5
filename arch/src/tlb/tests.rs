//! The shootdown rules against a simulated machine: one requester thread,
//! targets that answer (or not) when the simulated clock says so, and a
//! thread that migrates whenever interrupts are enabled and the test asks.

use super::*;
use std::cell::RefCell;
use std::vec::Vec;

/// Simulated ticks per second (1 tick = 1 µs); every spin is 1 ms.
const HZ: u64 = 1_000_000;
const SPIN_TICKS: u64 = 1_000;
const CPUS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    All,
    Range(usize, usize),
}

#[derive(Default)]
struct State {
    /// The CPU the running thread is on.
    cpu: usize,
    irqs_off: bool,
    /// The thread moves here right after its next CPU-id read with
    /// interrupts enabled (what a preemption at that point does).
    migrate_to: Option<usize>,
    now: u64,
    flushed: Vec<(usize, Flush)>,
    rung: Vec<usize>,
    doorbell: [bool; CPUS],
    /// The host holds the vCPU off until this time.
    preempted_until: [u64; CPUS],
    /// Whether the host's preempted flag is offered (else only steal).
    reports_preempted: bool,
    steal: bool,
    /// Never answers an IPI (spins with interrupts masked, or parked so).
    deaf: [bool; CPUS],
    /// The host holds the requester itself off for `.1` ticks at its clock
    /// read after the next `.0` ones (the targets run meanwhile).
    hold_requester: Option<(u32, u64)>,
}

struct Fake<'a> {
    sd: &'a Shootdowns,
    s: RefCell<State>,
}

impl<'a> Fake<'a> {
    fn new(sd: &'a Shootdowns) -> Self {
        let fake = Self {
            sd,
            s: RefCell::new(State {
                reports_preempted: true,
                ..State::default()
            }),
        };
        for cpu in 0..CPUS {
            fake.as_cpu(cpu, || sd.join(&fake, cpu));
        }
        fake.s.borrow_mut().flushed.clear();
        fake
    }

    /// Runs `f` as the thread of `cpu`, then returns to the one before.
    fn as_cpu<R>(&self, cpu: usize, f: impl FnOnce() -> R) -> R {
        let (was, irqs) = {
            let mut s = self.s.borrow_mut();
            let was = (s.cpu, s.irqs_off);
            s.cpu = cpu;
            s.irqs_off = true; // A handler: interrupts masked.
            was
        };
        let r = f();
        let mut s = self.s.borrow_mut();
        s.cpu = was;
        s.irqs_off = irqs;
        r
    }

    fn flushed(&self, cpu: usize) -> Vec<Flush> {
        let s = self.s.borrow();
        s.flushed
            .iter()
            .filter(|(c, _)| *c == cpu)
            .map(|(_, f)| *f)
            .collect()
    }

    fn pending(&self, cpu: usize) -> u8 {
        self.sd.pending[cpu].load(Ordering::Relaxed)
    }
}

impl TlbCpu for Fake<'_> {
    fn cpu_id(&self) -> usize {
        let mut s = self.s.borrow_mut();
        let id = s.cpu;
        if !s.irqs_off {
            if let Some(to) = s.migrate_to.take() {
                s.cpu = to;
            }
        }
        id
    }
    fn irq_save(&self) -> IrqState {
        let mut s = self.s.borrow_mut();
        let old = IrqState(usize::from(s.irqs_off));
        s.irqs_off = true;
        old
    }
    fn irq_restore(&self, state: IrqState) {
        self.s.borrow_mut().irqs_off = state.0 != 0;
    }
    fn invalidate_all(&self) {
        let mut s = self.s.borrow_mut();
        let cpu = s.cpu;
        s.flushed.push((cpu, Flush::All));
    }
    fn invalidate_range(&self, start: usize, end: usize) {
        let mut s = self.s.borrow_mut();
        let cpu = s.cpu;
        s.flushed.push((cpu, Flush::Range(start, end)));
    }
    fn ring(&self, targets: CpuMask) -> Sent {
        let mut s = self.s.borrow_mut();
        let mut n = 0;
        for cpu in targets.iter() {
            s.rung.push(cpu);
            s.doorbell[cpu] = true;
            n += 1;
        }
        Sent {
            ipis: n,
            hypercalls: 0,
        }
    }
    fn ticks(&self) -> u64 {
        let held = {
            let mut s = self.s.borrow_mut();
            match s.hold_requester {
                Some((0, ticks)) => {
                    s.hold_requester = None;
                    Some(ticks)
                }
                Some((n, ticks)) => {
                    s.hold_requester = Some((n - 1, ticks));
                    None
                }
                None => None,
            }
        };
        if let Some(ticks) = held {
            // The requester's vCPU is off its CPU: time passes, and every
            // target runs (answers) meanwhile.
            let mut left = ticks;
            while left > 0 {
                self.spin_hint();
                left = left.saturating_sub(SPIN_TICKS);
            }
        }
        self.s.borrow().now
    }
    fn ticks_per_sec(&self) -> u64 {
        HZ
    }
    fn preempted(&self, cpu: usize) -> Option<bool> {
        let s = self.s.borrow();
        s.reports_preempted.then(|| s.now < s.preempted_until[cpu])
    }
    fn steal_ns(&self, cpu: usize) -> Option<u64> {
        let s = self.s.borrow();
        // Accrues while held off: 1 tick = 1000 ns.
        s.steal.then(|| s.now.min(s.preempted_until[cpu]) * 1000)
    }
    /// Time passes; every target that runs takes its doorbell.
    fn spin_hint(&self) {
        let answering: Vec<usize> = {
            let mut s = self.s.borrow_mut();
            s.now += SPIN_TICKS;
            let now = s.now;
            (0..CPUS)
                .filter(|&c| s.doorbell[c] && !s.deaf[c] && now >= s.preempted_until[c])
                .collect()
        };
        for cpu in answering {
            self.s.borrow_mut().doorbell[cpu] = false;
            self.as_cpu(cpu, || self.sd.on_flush_ipi(self));
        }
    }
}

const PAGE: (usize, usize) = (0x10_0000, 0x10_1000);

#[test]
fn every_running_target_is_flushed_by_range_before_the_call_returns() {
    let sd = Shootdowns::new();
    let fake = Fake::new(&sd);
    let sent = sd.shoot_down(&fake, CPUS, PAGE.0, PAGE.1).unwrap();
    assert_eq!(sent.ipis, CPUS as u32 - 1);
    for cpu in 0..CPUS {
        assert_eq!(
            fake.flushed(cpu),
            [Flush::Range(PAGE.0, PAGE.1)],
            "CPU {cpu}"
        );
        assert_eq!(fake.pending(cpu), NONE);
    }
    let stats = sd.stats();
    assert_eq!((stats.shootdowns, stats.targets, stats.ipis), (1, 3, 3));
}

#[test]
fn a_cpu_that_never_joined_is_not_asked() {
    let sd = Shootdowns::new();
    let fake = Fake::new(&sd);
    sd.joined[2].store(false, Ordering::Relaxed);
    sd.shoot_down(&fake, CPUS, PAGE.0, PAGE.1).unwrap();
    assert_eq!(fake.s.borrow().rung, [1, 3]);
    assert_eq!(fake.pending(2), NONE);
}

/// Review fault (b): the poll read its CPU id, the thread migrated, and the
/// new CPU's invalidation cleared the old CPU's flag.
#[test]
fn a_poller_that_would_migrate_flushes_the_cpu_whose_flag_it_clears() {
    let sd = Shootdowns::new();
    let fake = Fake::new(&sd);
    sd.pending[0].store(FULL, Ordering::Relaxed);
    fake.s.borrow_mut().migrate_to = Some(1);
    sd.on_flush_ipi(&fake); // Thread context: interrupts enabled.
    assert!(
        fake.pending(0) != NONE || fake.flushed(0) == [Flush::All],
        "CPU 0's flag cleared, but the flush ran on {:?}",
        fake.s.borrow().flushed
    );
}

/// Review fault (a): a target the host holds off for longer than the
/// timeout is waited for, not reported.
#[test]
fn a_preempted_target_is_waited_for() {
    let sd = Shootdowns::new();
    let fake = Fake::new(&sd);
    fake.s.borrow_mut().preempted_until[2] = 3 * HZ;
    assert!(sd.shoot_down(&fake, CPUS, PAGE.0, PAGE.1).is_ok());
    assert_eq!(fake.flushed(2), [Flush::Range(PAGE.0, PAGE.1)]);
    assert!(fake.s.borrow().now >= 3 * HZ);
    assert!(sd.stats().preempted_waits >= 1);
}

/// As above where the host offers only a steal clock: steal that grows is
/// the sign of a descheduled vCPU.
#[test]
fn a_target_whose_steal_grows_is_waited_for() {
    let sd = Shootdowns::new();
    let fake = Fake::new(&sd);
    {
        let mut s = fake.s.borrow_mut();
        s.reports_preempted = false;
        s.steal = true;
        s.preempted_until[1] = 5 * HZ;
    }
    assert!(sd.shoot_down(&fake, CPUS, PAGE.0, PAGE.1).is_ok());
    assert_eq!(fake.flushed(1), [Flush::Range(PAGE.0, PAGE.1)]);
}

/// A target that runs and never answers is reported after the timeout,
/// naming it: no hang.
#[test]
fn a_stuck_target_is_reported() {
    let sd = Shootdowns::new();
    let fake = Fake::new(&sd);
    fake.s.borrow_mut().deaf[3] = true;
    let stuck = sd.shoot_down(&fake, CPUS, PAGE.0, PAGE.1).unwrap_err();
    assert_eq!(stuck.cpu, 3);
    assert!(!stuck.seen_preempted);
    assert!(stuck.waited_ticks >= SILENT_SEC * HZ);
    assert!(stuck.waited_ticks < (SILENT_SEC + 1) * HZ);
}

/// A target held off longer than the timeout by a host that shows no sign
/// of it (no preempted flag, no steal clock: a flag of 0 is no proof that
/// a vCPU runs) is waited for, not reported. (With silence taken for
/// running after `TIMEOUT_SEC`: `Stuck { cpu: 2, .. }` at 2 s.)
#[test]
fn a_target_held_off_without_a_sign_is_waited_for() {
    let sd = Shootdowns::new();
    let fake = Fake::new(&sd);
    {
        let mut s = fake.s.borrow_mut();
        s.reports_preempted = false;
        s.steal = false;
        s.preempted_until[2] = 5 * HZ;
    }
    assert!(sd.shoot_down(&fake, CPUS, PAGE.0, PAGE.1).is_ok());
    assert_eq!(fake.flushed(2), [Flush::Range(PAGE.0, PAGE.1)]);
    assert!(fake.s.borrow().now >= 5 * HZ);
}

/// A preempted-then-stuck target gets the full timeout of running time.
#[test]
fn a_target_stuck_after_its_preemption_is_reported_after_it_ran() {
    let sd = Shootdowns::new();
    let fake = Fake::new(&sd);
    {
        let mut s = fake.s.borrow_mut();
        s.deaf[1] = true;
        s.preempted_until[1] = 4 * HZ;
    }
    let stuck = sd.shoot_down(&fake, CPUS, PAGE.0, PAGE.1).unwrap_err();
    assert_eq!(stuck.cpu, 1);
    assert!(stuck.seen_preempted);
    assert!(stuck.waited_ticks >= (4 + TIMEOUT_SEC) * HZ);
}

/// Review fault (a), halted and offline targets: a CPU halted (here one
/// parked with interrupts masked, which never answers) gets no IPI and is
/// not waited for; it flushes its whole TLB on waking, before `halt`
/// returns.
#[test]
fn a_halted_target_is_not_rung_and_flushes_on_waking() {
    let sd = Shootdowns::new();
    let fake = Fake::new(&sd);
    let result = fake.as_cpu(2, || {
        sd.halt(&fake, || {
            fake.s.borrow_mut().deaf[2] = true;
            let r = fake.as_cpu(0, || {
                fake.s.borrow_mut().irqs_off = false;
                sd.shoot_down(&fake, CPUS, PAGE.0, PAGE.1)
            });
            assert_eq!(fake.flushed(2), [], "a halted CPU ran code");
            fake.s.borrow_mut().deaf[2] = false;
            r
        })
    });
    assert!(result.is_ok(), "{result:?}");
    assert!(!fake.s.borrow().rung.contains(&2));
    assert_eq!(fake.flushed(2), [Flush::All]);
    assert_eq!(fake.pending(2), NONE);
    assert_eq!(sd.stats().lazy, 1);
}

/// A flag a halted target left (a whole-TLB flush owed) is not narrowed to
/// a later request's range once the target runs again.
#[test]
fn a_flush_owed_is_not_narrowed_by_a_later_range() {
    let sd = Shootdowns::new();
    let fake = Fake::new(&sd);
    sd.pending[1].store(FULL, Ordering::Relaxed);
    sd.shoot_down(&fake, CPUS, PAGE.0, PAGE.1).unwrap();
    assert_eq!(fake.flushed(1), [Flush::All]);
}

/// The requester itself held off past the timeout while it waits: its
/// target answered meanwhile, which is no stuck target (seen under pvhost:
/// "no answer for 2499 ms" from a requester that had been held 2.5 s).
#[test]
fn a_requester_held_off_itself_does_not_report_a_target_that_answered() {
    let sd = Shootdowns::new();
    let fake = Fake::new(&sd);
    // Deaf until rung, so that the wait's loop runs at least once.
    fake.s.borrow_mut().deaf[1] = true;
    let result = {
        let fake_ref = &fake;
        struct HoldOnRing<'a, 'b>(&'a Fake<'b>);
        impl TlbCpu for HoldOnRing<'_, '_> {
            fn cpu_id(&self) -> usize {
                self.0.cpu_id()
            }
            fn irq_save(&self) -> IrqState {
                self.0.irq_save()
            }
            fn irq_restore(&self, state: IrqState) {
                self.0.irq_restore(state);
            }
            fn invalidate_all(&self) {
                self.0.invalidate_all();
            }
            fn invalidate_range(&self, start: usize, end: usize) {
                self.0.invalidate_range(start, end);
            }
            fn ring(&self, targets: CpuMask) -> Sent {
                let sent = self.0.ring(targets);
                let mut s = self.0.s.borrow_mut();
                s.deaf[1] = false;
                // After the wait's first clock read (its start), at the
                // one that follows the flag read in the loop.
                s.hold_requester = Some((1, 3 * HZ));
                sent
            }
            fn ticks(&self) -> u64 {
                self.0.ticks()
            }
            fn ticks_per_sec(&self) -> u64 {
                HZ
            }
            fn preempted(&self, cpu: usize) -> Option<bool> {
                self.0.preempted(cpu)
            }
            fn steal_ns(&self, cpu: usize) -> Option<u64> {
                self.0.steal_ns(cpu)
            }
            fn spin_hint(&self) {
                self.0.spin_hint();
            }
        }
        sd.shoot_down(&HoldOnRing(fake_ref), CPUS, PAGE.0, PAGE.1)
    };
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(fake.flushed(1), [Flush::Range(PAGE.0, PAGE.1)]);
}
