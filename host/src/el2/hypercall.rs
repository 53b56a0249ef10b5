//! A trapped HVC or SMC: one SMCCC call, answered by the hypercall table
//! ([`host::hvc`]) through [`Host`], what that table may do to the machine
//! (the records, kicks, PSCI power calls), and what the call's outcome
//! does to this pCPU.

use core::ops::Range;
use core::sync::atomic::{AtomicU32, Ordering};

use arch::abi::arm64::MPIDR_AFFINITY_MASK;
use host::args::{Fault, KICK_DELAY_NS};
use host::hvc::{self, Call, Family, Machine, Outcome};
use smccc::psci;

use super::clock::now_ns;
use super::records::{LockSlot, TimeSlot, RECORDS};
use super::trap::Frame;
use super::vcpu::{report_ground_truth, POWER_OFF, POWER_ON, POWER_PENDING, VCPUS};
use super::{facts, gic, power, set_sysreg, start};

/// What the hypercall table may do to the machine.
struct Host;

impl Machine for Host {
    fn vcpus(&self) -> usize {
        facts().pcpus
    }

    fn guest_ram(&self) -> Range<u64> {
        facts().guest_ram.clone()
    }

    fn time_record(&self, vcpu: usize) -> u64 {
        // Only `vcpu` asks for its own record (and only this pCPU counts
        // its preemptions): no race.
        let v = &VCPUS[vcpu];
        if v.time_asked_at.load(Ordering::Relaxed) == u64::MAX {
            let preemptions = v.preemptions.load(Ordering::Relaxed);
            v.time_asked_at.store(preemptions, Ordering::Relaxed);
        }
        &RECORDS.time[vcpu] as *const TimeSlot as u64
    }

    fn lock_record(&self, vcpu: usize) -> u64 {
        &RECORDS.lock[vcpu] as *const LockSlot as u64
    }

    fn set_sched_record(&mut self, vcpu: usize, ipa: Option<u64>) {
        if let Some(ipa) = ipa {
            // SAFETY: checked by `hvc::record_ipa_ok`, see `set_preempted`.
            let flag = unsafe { &*(ipa as *const AtomicU32) };
            // Running (unless the fault says otherwise).
            flag.store(
                u32::from(facts().fault == Fault::StuckPreempted),
                Ordering::Release,
            );
        }
        let v = &VCPUS[vcpu];
        if v.sched_ipa.swap(ipa.unwrap_or(0), Ordering::AcqRel) != 0 && ipa.is_none() {
            v.sched_releases.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn kick(&mut self, vcpu: usize) {
        let v = &VCPUS[vcpu];
        match facts().fault {
            Fault::DropKicks => {
                v.kicks_dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Fault::DelayKicks => {
                // No SGI: the vCPU would wake for nothing. Its halts end by
                // its own interrupts until the kick is due; a kick already
                // pending keeps its time.
                let due = now_ns() + KICK_DELAY_NS;
                let _ = v
                    .kick_due_ns
                    .compare_exchange(0, due, Ordering::AcqRel, Ordering::Acquire);
                v.kick.store(true, Ordering::Release);
                v.kicks_delayed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            _ => {}
        }
        // Release: the guest's stores before its kick are seen by the
        // woken vCPU (pairs with the AcqRel swap in `exit::guest_wfi`).
        VCPUS[vcpu].kick.store(true, Ordering::Release);
        gic::send_kick(facts().mpidr[vcpu]);
    }

    fn cpu_on(&mut self, target_mpidr: u64, entry: u64, context: u64) -> i64 {
        let f = facts();
        let affinity = target_mpidr & MPIDR_AFFINITY_MASK;
        let Some(vcpu) = f.mpidr[..f.pcpus].iter().position(|&m| m == affinity) else {
            return psci::error::INVALID_PARAMETERS.into();
        };
        let v = &VCPUS[vcpu];
        if let Err(state) = v.power.compare_exchange(
            POWER_OFF,
            POWER_PENDING,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            return if state == POWER_ON {
                psci::error::ALREADY_ON.into()
            } else {
                psci::error::ON_PENDING.into()
            };
        }
        v.entry.store(entry, Ordering::Release);
        v.context.store(context, Ordering::Release);
        let r = power::cpu_on(f.mpidr[vcpu], start::secondary_entry(), vcpu as u64);
        if r != 0 {
            v.power.store(POWER_OFF, Ordering::Release);
        }
        r
    }

    fn affinity_info(&mut self, target: u64, lowest_level: u64) -> i64 {
        power::affinity_info(target, lowest_level)
    }
}

/// A trapped HVC or SMC: one SMCCC call.
pub fn hypercall(cpu: usize, frame: &mut Frame, imm: u16) {
    let f = facts();
    let call = Call {
        x: [frame.x[0], frame.x[1], frame.x[2], frame.x[3]],
        imm,
    };
    if hvc::family(call.x[0] as u32) == Family::Pv {
        VCPUS[cpu].pv_calls.fetch_add(1, Ordering::Relaxed);
    }
    match hvc::dispatch(f.offer, f.fault, cpu, call, &mut Host) {
        Outcome::Return(x0) => frame.x[0] = x0,
        Outcome::Return4(x) => frame.x[..4].copy_from_slice(&x),
        Outcome::CpuOff => {
            let v = &VCPUS[cpu];
            v.sched_ipa.store(0, Ordering::Release);
            v.power.store(POWER_OFF, Ordering::Release);
            // SAFETY: this pCPU's EL2 timer; the vCPU is going away.
            unsafe { set_sysreg!("cnthp_ctl_el2", 0u64) };
            let r = power::cpu_off();
            // Still here: the firmware refused.
            v.power.store(POWER_ON, Ordering::Release);
            frame.x[0] = r as u64;
        }
        Outcome::SystemOff => {
            report_ground_truth();
            power::system_off()
        }
        Outcome::SystemReset => {
            report_ground_truth();
            power::system_reset()
        }
    }
}
