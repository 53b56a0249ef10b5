//! The arm64 PV features on real hardware: the SMCCC conduit, the host's
//! records mapped Normal write-back, and each CPU's registration. The
//! decisions are made by [`crate::pv::arm64`]; this module only carries them
//! out and reads the records.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::abi::arm64::{
    PvSchedRecord, PvTimeRecord, PV_SCHED_IPA_RELEASE, PV_SCHED_KICK_CPU, PV_TIME_STOLEN_OFFSET,
};
use crate::pv::arm64::{self as probe, Plan, Smccc};
use crate::pv::{
    fallback_note, note, FallbackLine, Note, PreemptedGuard, PvFeature, PvReport, PvSwitches,
    RawCallError, State, StealGuard,
};
use crate::{MemAttr, MAX_CPUS};

use super::psci::Conduit;
use super::{mmu, platform, timer};

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

/// Each CPU's steal clock as the kernel sees it.
static STEAL: [StealGuard; MAX_CPUS] = [const { StealGuard::new() }; MAX_CPUS];
static PREEMPTED: [PreemptedGuard; MAX_CPUS] = [const { PreemptedGuard::new() }; MAX_CPUS];

/// How the boot CPU's registration (during the probe) went, for
/// [`init_cpu`]`(0)`.
static BOOT_CPU: spin::Once<Option<FallbackLine>> = spin::Once::new();

/// Pages this module mapped for host records: the host's memory, unlike
/// every other page mapped Normal (the kernel's RAM).
static HOST_PAGES: spin::Mutex<heapless::Vec<usize, 16>> = spin::Mutex::new(heapless::Vec::new());

/// Everything the kernel can map: its identity map's reach.
const REACH: u64 = 1 << mmu::VA_BITS;

/// Whether `ipa` is memory the kernel uses: mapped Normal, and not a host
/// record page mapped here.
fn kernel_memory(ipa: u64) -> bool {
    let page = ipa as usize & !(mmu::PAGE_SIZE - 1);
    ipa < REACH && mmu::attr_of(page) == Some(MemAttr::Normal) && !HOST_PAGES.lock().contains(&page)
}

/// Makes the page holding a host record Normal write-back (as the ABIs ask),
/// unless this module already did (another CPU's record on the page).
fn map_record(ipa: u64) -> Result<usize, Note> {
    let page = ipa as usize & !(mmu::PAGE_SIZE - 1);
    let mut pages = HOST_PAGES.lock();
    if !pages.contains(&page) {
        mmu::map(page, page, mmu::PAGE_SIZE, MemAttr::Normal)
            .map_err(|e| note(format_args!("cannot map record at {ipa:#x}: {e:?}")))?;
        // A full list only costs the next CPU a second (harmless) mapping.
        let _ = pages.push(page);
    }
    Ok(ipa as usize) // Identity map.
}

/// Guest time in ns (the virtual counter, read after what came before).
fn now_ns() -> u64 {
    (u128::from(timer::ticks()) * 1_000_000_000 / u128::from(timer::ticks_per_sec())) as u64
}

/// Registers the calling CPU, maps and checks its records. A feature that
/// fails here runs native on this CPU only (the others register their
/// own); the line returned names each such feature and why, and what is
/// kept.
/// The boot CPU's successes are noted in `report`.
fn register(cpu: usize, report: &mut PvReport) -> Option<FallbackLine> {
    let plan = PLAN.get()?;
    let mut conduit = platform().conduit;
    let sched_ipa = &SCHED_RECORD[cpu] as *const PvSchedRecord as u64;
    let records = probe::register_cpu(&mut conduit, plan, sched_ipa, report, REACH, kernel_memory);
    let mut failed: heapless::Vec<(PvFeature, Note), 3> = heapless::Vec::new();
    let mut kept: heapless::Vec<PvFeature, 3> = heapless::Vec::new();

    if let Some(result) = records.time {
        let checked = result.and_then(map_record).and_then(|va| {
            // The origin's time is read before the record, so the steal
            // the record gains later fits in the time counted from it.
            let at_ns = now_ns();
            // SAFETY: `va` is the host's 64-byte-aligned record, just mapped
            // Normal; the host writes it, so read it volatile.
            let record = unsafe { core::ptr::read_volatile(va as *const PvTimeRecord) };
            probe::check_time_record(&record).map(|()| (va, at_ns, record.stolen_time_ns))
        });
        match checked {
            Ok((va, at_ns, clock_ns)) => {
                STEAL[cpu].start(at_ns, clock_ns);
                // Release: the origin is seen by whoever sees the record.
                TIME_RECORD[cpu].store(va, Ordering::Release);
                if cpu == 0 {
                    report.set(
                        PvFeature::Time,
                        State::Used,
                        note(format_args!("record at {va:#x}")),
                    );
                }
                let _ = kept.push(PvFeature::Time);
            }
            Err(why) => {
                let _ = failed.push((PvFeature::Time, why));
            }
        }
    }
    if let Some(result) = records.lock {
        match result.and_then(map_record) {
            Ok(va) => {
                LOCK_RECORD[cpu].store(va, Ordering::Release);
                let _ = kept.push(PvFeature::Lock);
            }
            Err(why) => {
                let _ = failed.push((PvFeature::Lock, why));
            }
        }
    }
    if let Some(result) = records.sched {
        match result {
            Ok(()) => {
                SCHED_REGISTERED[cpu].store(true, Ordering::Release);
                let _ = kept.push(PvFeature::Sched);
            }
            Err(why) => {
                let _ = failed.push((PvFeature::Sched, why));
            }
        }
    }
    if failed.is_empty() {
        return None;
    }
    let reasons: heapless::Vec<(PvFeature, &str), 3> = failed
        .iter()
        .map(|(name, why)| (*name, why.as_str()))
        .collect();
    Some(fallback_note(&reasons, &kept))
}

/// Probes on the boot CPU and registers it. Runs before the secondaries
/// start, with interrupts masked: mapping a record may split the device
/// block (break-before-make) that holds the console.
pub(super) fn probe(switches: &PvSwitches) -> PvReport {
    let mut conduit = platform().conduit;
    let (mut report, plan) = probe::probe(&mut conduit, platform().psci_version, switches);
    PLAN.call_once(|| plan);
    let boot = register(0, &mut report);
    BOOT_CPU.call_once(|| boot);
    report
}

/// Registers a secondary CPU; for the boot CPU, registered by [`probe`],
/// says how that went.
pub(super) fn init_cpu(cpu: usize) -> Option<FallbackLine> {
    if cpu == 0 {
        return BOOT_CPU.get().cloned().flatten();
    }
    // Its calls are not part of the boot report.
    let mut scratch = PvReport::new(crate::pv::Hypervisor::NotProbed, Note::new());
    register(cpu, &mut scratch)
}

/// `cpu`'s steal clock, from any CPU, as [`StealGuard`] lets it through.
pub(super) fn steal_ns(cpu: usize) -> Option<u64> {
    let va = TIME_RECORD.get(cpu)?.load(Ordering::Acquire);
    if va == 0 {
        return None;
    }
    // SAFETY: a mapped, 8-byte-aligned host record; the ABI promises a
    // single-copy-atomic 64-bit value, so an atomic load reads it whole.
    let stolen = unsafe { &*((va + PV_TIME_STOLEN_OFFSET) as *const AtomicU64) };
    // `now_ns` is read after the record (the ISB in `ticks`).
    Some(STEAL[cpu].read(cpu, || Some(stolen.load(Ordering::Acquire)), now_ns))
}

/// Whether `cpu`'s vCPU is preempted, as its [`PreemptedGuard`] lets the
/// host's flag through.
pub(super) fn vcpu_preempted(cpu: usize) -> Option<bool> {
    PREEMPTED.get(cpu)?.read(|| host_preempted(cpu))
}

/// At a tick of the calling CPU `cpu`: its own flag must read clear.
pub(super) fn check_own_preempted(cpu: usize) {
    if let Some(guard) = PREEMPTED.get(cpu) {
        guard.check_own(cpu, host_preempted(cpu));
    }
}

/// The host's preempted flag for `cpu` (PV lock's record, else PV sched's).
fn host_preempted(cpu: usize) -> Option<bool> {
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

/// One raw SMCCC call, for `Pv::pv_raw_call`: only after the probe saw
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
