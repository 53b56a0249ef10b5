//! The arm64 PV features on real hardware: the SMCCC conduit, the host's
//! records mapped Normal write-back, and each CPU's registration. The
//! decisions are made by [`crate::pv::arm64`]; this module only carries them
//! out and reads the records.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::abi::arm64::{
    PvSchedRecord, PvTimeRecord, PV_SCHED_IPA_RELEASE, PV_SCHED_KICK_CPU, PV_TIME_STOLEN_OFFSET,
};
use crate::pv::arm64::{self as probe, Plan, Smccc};
use crate::pv::{note, Note, PvReport, PvSwitches, RawCallError, State};
use crate::{MemAttr, MAX_CPUS};

use super::psci::Conduit;
use super::{mmu, platform};

impl Smccc for Conduit {
    fn call(&mut self, function: u32, arg: u64) -> [u64; 4] {
        let mut args = [0u64; 17];
        args[0] = arg;
        let r = match self {
            Conduit::Hvc => smccc::hvc64(function, args),
            Conduit::Smc => smccc::smc64(function, args),
        };
        [r[0], r[1], r[2], r[3]]
    }
}

static PLAN: spin::Once<Plan> = spin::Once::new();
/// Virtual address of each CPU's stolen-time record (0: none).
static TIME_RECORD: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
/// Virtual address of each CPU's PV lock record (0: none).
static LOCK_RECORD: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
/// PV sched records: guest-owned, registered with the host per CPU.
static SCHED_RECORD: [PvSchedRecord; MAX_CPUS] = [const { PvSchedRecord::new() }; MAX_CPUS];
static SCHED_REGISTERED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Makes the page holding a host record Normal write-back (as the ABIs ask),
/// unless it already is (e.g. a record inside RAM).
fn map_record(ipa: u64) -> Result<usize, Note> {
    let page = ipa as usize & !(mmu::PAGE_SIZE - 1);
    if mmu::attr_of(page) != Some(MemAttr::Normal) {
        mmu::map(page, page, mmu::PAGE_SIZE, MemAttr::Normal)
            .map_err(|e| note(format_args!("cannot map record at {ipa:#x}: {e:?}")))?;
    }
    Ok(ipa as usize) // Identity map.
}

/// Registers the calling CPU, maps and checks its records. Failures are
/// reported per feature in `report` (boot CPU) and returned.
fn register(cpu: usize, report: &mut PvReport) -> Result<(), Note> {
    let Some(plan) = PLAN.get() else {
        return Ok(());
    };
    let mut conduit = platform().conduit;
    let sched_ipa = &SCHED_RECORD[cpu] as *const PvSchedRecord as u64;
    let records = probe::register_cpu(&mut conduit, plan, sched_ipa, report);
    let mut first_error = None;
    let mut fail = |report: &mut PvReport, name: &'static str, why: Note| {
        report.set(name, State::Unusable, why.clone());
        first_error.get_or_insert(why);
    };

    if let Some(result) = records.time {
        let checked = result.and_then(map_record).and_then(|va| {
            // SAFETY: `va` is the host's 64-byte-aligned record, just mapped
            // Normal; the host writes it, so read it volatile.
            let record = unsafe { core::ptr::read_volatile(va as *const PvTimeRecord) };
            probe::check_time_record(&record).map(|()| va)
        });
        match checked {
            Ok(va) => {
                TIME_RECORD[cpu].store(va, Ordering::Release);
                report.set("time", State::Used, note(format_args!("record at {va:#x}")));
            }
            Err(why) => fail(report, "time", why),
        }
    }
    if let Some(result) = records.lock {
        match result.and_then(map_record) {
            Ok(va) => LOCK_RECORD[cpu].store(va, Ordering::Release),
            Err(why) => fail(report, "lock", why),
        }
    }
    if let Some(result) = records.sched {
        match result {
            Ok(()) => SCHED_REGISTERED[cpu].store(true, Ordering::Release),
            Err(why) => fail(report, "sched", why),
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Probes on the boot CPU and registers it. Runs before the secondaries
/// start, with interrupts masked: mapping a record may split the device
/// block (break-before-make) that holds the console.
pub(super) fn probe(switches: &PvSwitches) -> PvReport {
    let mut conduit = platform().conduit;
    let (mut report, plan) = probe::probe(&mut conduit, platform().psci_version, switches);
    PLAN.call_once(|| plan);
    let _ = register(0, &mut report);
    report
}

/// Registers a secondary CPU.
pub(super) fn init_cpu(cpu: usize) -> Result<(), Note> {
    // Its calls are not part of the boot report.
    let mut scratch = PvReport::new(crate::pv::Hypervisor::NotProbed, Note::new());
    register(cpu, &mut scratch)
}

pub(super) fn steal_ns(cpu: usize) -> Option<u64> {
    let va = TIME_RECORD.get(cpu)?.load(Ordering::Acquire);
    if va == 0 {
        return None;
    }
    // SAFETY: a mapped, 8-byte-aligned host record; the ABI promises a
    // single-copy-atomic 64-bit value, so an atomic load reads it whole.
    let stolen = unsafe { &*((va + PV_TIME_STOLEN_OFFSET) as *const AtomicU64) };
    Some(stolen.load(Ordering::Relaxed))
}

pub(super) fn vcpu_preempted(cpu: usize) -> Option<bool> {
    let lock = LOCK_RECORD.get(cpu)?.load(Ordering::Acquire);
    if lock != 0 {
        // SAFETY: a mapped, 64-byte-aligned host record whose first field is
        // the 64-bit preempted flag.
        let flag = unsafe { &*(lock as *const AtomicU64) };
        return Some(flag.load(Ordering::Relaxed) != 0);
    }
    if SCHED_REGISTERED.get(cpu)?.load(Ordering::Acquire) {
        return Some(SCHED_RECORD[cpu].preempted.load(Ordering::Relaxed) != 0);
    }
    None
}

/// PV_SCHED_KICK_CPU, if offered and `cpu` registered; false otherwise.
pub(super) fn kick(cpu: usize) -> bool {
    let Some(plan) = PLAN.get() else { return false };
    if !plan.sched_kick
        || !SCHED_REGISTERED
            .get(cpu)
            .is_some_and(|r| r.load(Ordering::Acquire))
    {
        return false;
    }
    let vcpu = platform().vcpu_index[cpu];
    let mut conduit = platform().conduit;
    conduit.call(PV_SCHED_KICK_CPU, vcpu.into())[0] == 0
}

/// Releases this CPU's PV sched record before it stops.
pub(super) fn cpu_off(cpu: usize) {
    let released = PLAN.get().is_some_and(|p| p.sched_release);
    if released && SCHED_REGISTERED[cpu].swap(false, Ordering::AcqRel) {
        let mut conduit = platform().conduit;
        let _ = conduit.call(PV_SCHED_IPA_RELEASE, 0);
    }
}

/// One raw SMCCC call, for `Arch::pv_raw_call`: only after the probe saw
/// SMCCC >= 1.1 on the conduit, and never one `raw_call_refusal` refuses.
pub(super) fn raw_call(function: u32, args: [u64; 3]) -> Result<[u64; 4], RawCallError> {
    if !PLAN.get().is_some_and(|plan| plan.smccc_1_1) {
        return Err(RawCallError::Unavailable);
    }
    // The kernel's memory: what it maps as Normal (RAM, and the host
    // records it mapped); identity-mapped, so an IPA is its own address.
    let kernel_memory =
        |ipa: u64| usize::try_from(ipa).is_ok_and(|va| mmu::attr_of(va) == Some(MemAttr::Normal));
    if let Some(why) = probe::raw_call_refusal(function, args, kernel_memory) {
        return Err(RawCallError::Refused(why));
    }
    let mut regs = [0u64; 17];
    regs[..3].copy_from_slice(&args);
    let r = match platform().conduit {
        Conduit::Hvc => smccc::hvc64(function, regs),
        Conduit::Smc => smccc::smc64(function, regs),
    };
    Ok([r[0], r[1], r[2], r[3]])
}
