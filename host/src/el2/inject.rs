//! The preemption injector: each pCPU's schedule of windows
//! ([`host::policy`]), CNTHP armed for its next edge, and what a window
//! does to the vCPU.
//!
//! When a window opens, CNTHP fires (FIQ, taken at EL2 whatever the guest
//! masks); pvhost sets the vCPU's PV lock and PV sched flags, raises the
//! physical priority mask so that the guest's interrupts stay pending (they
//! are delivered at EL1 as soon as the guest resumes), waits in WFI until
//! the window ends, then adds the stolen time to the vCPU's PV time record
//! and to its ground truth, clears the flags and returns
//! ([`preempted_wait`]). A vCPU halted in WFI when its window opens is not
//! preempted: it loses time only if it wakes up inside the window (as KVM
//! counts only runnable time).

use core::sync::atomic::Ordering;

use host::policy::Schedule;

use super::clock::{now_ns, ns_to_ticks, ticks, ticks_to_ns};
use super::pcpu::{cpu_index, wfi};
use super::records::{set_preempted, RECORDS};
use super::trap::Frame;
use super::vcpu::VCPUS;
use super::{facts, gic, set_sysreg, MAX_PCPUS};

/// The injector of one pCPU: its schedule and the window it is at.
pub struct Injector {
    pub schedule: Schedule,
    /// The current or next window `[start, end)` in ns (`None`: never).
    pub window: Option<(u64, u64)>,
}

impl Injector {
    /// Moves past windows that have ended.
    fn refresh(&mut self, now_ns: u64) {
        if self.window.is_none_or(|(_, end)| end <= now_ns) {
            self.window = self.schedule.next_window(now_ns);
        }
    }

    /// The end of the window under way at `now_ns`, if any.
    fn due(&mut self, now_ns: u64) -> Option<u64> {
        self.refresh(now_ns);
        self.window
            .filter(|&(start, _)| start <= now_ns)
            .map(|(_, end)| end)
    }

    /// Arms CNTHP for the next edge: the window's start, or its end if it
    /// is under way (so a halted vCPU's window moves on).
    pub fn arm(&mut self, now_ns: u64) {
        self.refresh(now_ns);
        match self.window {
            None => {
                // SAFETY: disabling this pCPU's EL2 timer only.
                unsafe { set_sysreg!("cnthp_ctl_el2", 0u64) };
            }
            Some((start, end)) => {
                let at = if now_ns < start { start } else { end };
                // SAFETY: CNTHP is pvhost's; ENABLE = 1, IMASK = 0.
                unsafe {
                    set_sysreg!("cnthp_cval_el2", ns_to_ticks(at));
                    set_sysreg!("cnthp_ctl_el2", 1u64);
                }
            }
        }
    }
}

pub static INJECTORS: [spin::Mutex<Option<Injector>>; MAX_PCPUS] =
    [const { spin::Mutex::new(None) }; MAX_PCPUS];

/// Acknowledges every pending Group 0 interrupt (kicks leave their flag
/// set; CNTHP is disabled until [`Injector::arm`]), then re-arms the
/// injector.
pub fn service_host_interrupts(cpu: usize, injector: &mut Injector) {
    while let Some(intid) = gic::ack() {
        if intid == gic::hyp_timer_intid() {
            // SAFETY: silences this pCPU's (level-triggered) EL2 timer.
            unsafe { set_sysreg!("cnthp_ctl_el2", 0u64) };
        }
        gic::eoi(intid);
    }
    gic::ensure_host_interrupts(VCPUS[cpu].rd.load(Ordering::Relaxed));
    injector.arm(now_ns());
}

/// The vCPU on this pCPU is preempted until `end_ns`.
fn preempted_wait(cpu: usize, injector: &mut Injector, end_ns: u64) {
    set_preempted(cpu, true);
    let start = ticks();
    gic::set_priority_mask(gic::PMR_HOST_ONLY);
    loop {
        service_host_interrupts(cpu, injector);
        if now_ns() >= end_ns {
            break;
        }
        wfi();
    }
    gic::set_priority_mask(gic::PMR_ALL);
    let stolen_ns = ticks_to_ns(ticks()) - ticks_to_ns(start);
    // Single writer (this pCPU): the guest reads it with one 64-bit load.
    // A steal fault makes it wrong; the ground truth below stays right.
    let v = &VCPUS[cpu];
    let preemptions = v.preemptions.load(Ordering::Relaxed);
    let nth = (preemptions + 1).saturating_sub(v.time_asked_at.load(Ordering::Relaxed));
    let record = &RECORDS.time[cpu].stolen_ns;
    let before = record.load(Ordering::Relaxed);
    let after = facts().fault.steal_record(cpu, nth, before, stolen_ns);
    if after != before + stolen_ns {
        v.steal_faults.fetch_add(1, Ordering::Relaxed);
    }
    record.store(after, Ordering::Release);
    // Taken after the record holds the steal, stored before the count does:
    // whoever sees the count sees a `last_end_ns` no earlier than this.
    v.last_end_ns.store(now_ns(), Ordering::Relaxed);
    v.preemptions.fetch_add(1, Ordering::Relaxed);
    // Release: pairs with the Acquire in `report_ground_truth`.
    v.stolen_ns.fetch_add(stolen_ns, Ordering::Release);
    set_preempted(cpu, false);
    injector.arm(now_ns());
}

/// Preempts the vCPU now if a window of its schedule is under way.
pub fn preempt_if_due(cpu: usize) {
    let mut slot = INJECTORS[cpu].lock();
    let Some(injector) = slot.as_mut() else {
        return;
    };
    if let Some(end) = injector.due(now_ns()) {
        preempted_wait(cpu, injector, end);
    }
}

/// FIQ from the guest: pvhost's own interrupts.
pub fn host_interrupts(_frame: &mut Frame) {
    let cpu = cpu_index();
    if let Some(injector) = INJECTORS[cpu].lock().as_mut() {
        service_host_interrupts(cpu, injector);
    }
    preempt_if_due(cpu);
}
