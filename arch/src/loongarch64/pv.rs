//! The LoongArch PV features on real hardware: `hvcl 0x100`, each CPU's
//! steal-time record, and the PV IPI doorbell. The decisions (what to probe,
//! which calls are allowed, the seqlock, the IPI windows) are made by
//! [`crate::pv::loongarch`], unit-tested on the host; this module only
//! carries them out.
//!
//! | feature | per CPU | read by |
//! |---|---|---|
//! | steal clock | a [`StealTimeRecord`] in [`RECORDS`], registered with FUNC_NOTIFY on the CPU itself (boot CPU in [`probe`], secondaries in [`init_cpu`]), released in [`cpu_off`] | [`steal_ns`], under the record's seqlock |
//! | preempted flag | the same record | [`vcpu_preempted`], only with PREEMPT |
//! | PV IPI | - | [`ring`], the doorbell of [`super::irq::raise`]; received as SWI0 by [`super::irq::handle`] |
//!
//! The records are guest memory (this image's `.bss`, reached through DMW1,
//! coherent cached); the host is given their physical address.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use loongArch64::cpu::CPUCFG;
use loongArch64::iocsr::iocsr_read_d;

use crate::abi::loongarch::{
    StealTimeRecord, HVCL_KVM_CODE, IOCSR_FEATURES, PREEMPTED, STEAL_PHYS_VALID,
};
use crate::pv::loongarch::{self as logic, LoongArchHost, Plan};
use crate::pv::{
    fallback_note, note, CpuMask, FallbackLine, Hypervisor, Note, PreemptedGuard, PvFeature,
    PvReport, PvSwitches, RawCallError, State, StealGuard,
};
use crate::tlb::Sent;
use crate::MAX_CPUS;

use super::{irq, mmu, timer};

/// `hvcl 0x100`: a0 = `function`, a1..a3; returns a0. The host preserves
/// every other register (a1..a5 included), so only a0 is declared clobbered.
///
/// # Safety
/// KVM must have advertised `function` (without LVZ `hvcl` raises INE), and
/// any guest memory an argument names must stay valid for as long as the
/// host may access it (FUNC_NOTIFY: until unregistered).
unsafe fn hvcl(function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let a0: i64;
    // SAFETY: forwarded to the caller. No `nomem`: the host may read and
    // write guest memory (a registered record) during the call.
    unsafe {
        asm!(
            "hvcl {code}",
            code = const HVCL_KVM_CODE,
            inlateout("$a0") u64::from(function) => a0,
            in("$a1") a1,
            in("$a2") a2,
            in("$a3") a3,
            options(nostack),
        );
    }
    a0
}

/// The real host. Private to this module, and only ever driven by
/// [`crate::pv::loongarch`], whose probing rules (no `hvcl` without the KVM
/// signature and the feature's bit) are unit-tested on every call log.
struct Kvm;

impl LoongArchHost for Kvm {
    fn iocsr_features(&mut self) -> u64 {
        iocsr_read_d(IOCSR_FEATURES)
    }

    fn cpucfg(&mut self, index: u32) -> u32 {
        // `cpucfg` has no side effects; an index no one implements reads 0
        // (and traps to the host under KVM, which answers the 0x4000_00xx
        // range).
        CPUCFG::read(index as usize).get_bits(0, 31) as u32
    }

    fn hvcl(&mut self, function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
        // SAFETY: `crate::pv::loongarch` issues a call only once the KVM
        // signature matched and the feature word advertised it; the only
        // memory it names is a record of `RECORDS` (FUNC_NOTIFY), a static.
        unsafe { hvcl(function, a1, a2, a3) }
    }
}

static PLAN: spin::Once<Plan> = spin::Once::new();
/// The probe found KVM's signature: every `hvcl 0x100` gets an answer.
static KVM_FOUND: AtomicBool = AtomicBool::new(false);

/// Each CPU's steal-time record, registered with the host by that CPU.
static RECORDS: [StealTimeRecord; MAX_CPUS] = [const { StealTimeRecord::new() }; MAX_CPUS];

/// Values of [`RECORD_STATE`].
const NOT_REGISTERED: u8 = 0;
/// The host keeps the record up to date.
const REGISTERED: u8 = 1;
/// Unregistered by [`cpu_off`]: the steal clock keeps its last value, the
/// preempted flag means nothing any more.
const RELEASED: u8 = 2;
static RECORD_STATE: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(NOT_REGISTERED) }; MAX_CPUS];
/// Each CPU's steal clock as the kernel sees it: monotonic (also when the
/// seqlock read gives up, [`logic::read_steal_ns`]) and bounded.
static STEAL: [StealGuard; MAX_CPUS] = [const { StealGuard::new() }; MAX_CPUS];
static PREEMPTED_GUARD: [PreemptedGuard; MAX_CPUS] = [const { PreemptedGuard::new() }; MAX_CPUS];

/// Guest time in ns (the stable counter).
fn now_ns() -> u64 {
    (u128::from(timer::ticks()) * 1_000_000_000 / u128::from(timer::ticks_per_sec())) as u64
}

/// `cpu`'s record's steal clock under its seqlock (`None`: the host kept
/// writing).
fn read_record(cpu: usize) -> Option<u64> {
    let record = &RECORDS[cpu];
    // Relaxed loads: `read_steal_ns` puts the Acquire fences between them.
    logic::read_steal_ns(
        || record.version.load(Ordering::Relaxed),
        || record.steal_ns.load(Ordering::Relaxed),
    )
}

/// Physical address of `cpu`'s record (the image runs in DMW1).
fn record_pa(cpu: usize) -> u64 {
    mmu::physical(&RECORDS[cpu] as *const StealTimeRecord as usize) as u64
}

/// Registers the calling CPU's record if `plan` needs one; `Some(Ok(pa))`
/// when registered.
fn register(plan: &Plan, cpu: usize, log: &mut PvReport) -> Option<Result<u64, Note>> {
    let pa = record_pa(cpu);
    // Before the registration: the steal the record gains from it on fits
    // in the time counted from here.
    let at_ns = now_ns();
    let result = logic::register_cpu(&mut Kvm, plan, pa, &mut log.calls)?;
    Some(result.map(|()| {
        let clock_ns = read_record(cpu).unwrap_or(0);
        STEAL[cpu].start(at_ns, clock_ns);
        // Release: the registration happened before readers use the record.
        RECORD_STATE[cpu].store(REGISTERED, Ordering::Release);
        pa
    }))
}

/// Probes on the boot CPU (interrupts masked, secondaries not started) and
/// registers its record. If that registration fails, no CPU uses the record.
pub(super) fn probe(switches: &PvSwitches) -> PvReport {
    let (mut report, mut plan) = logic::probe(&mut Kvm, switches);
    KVM_FOUND.store(report.hypervisor == Hypervisor::Kvm, Ordering::Release);
    match register(&plan, 0, &mut report) {
        None => {}
        Some(Ok(pa)) => {
            if plan.steal_clock {
                let why = note(format_args!("record at PA {pa:#x}"));
                report.set(PvFeature::Time, State::Used, why);
            }
        }
        Some(Err(why)) => {
            for name in [PvFeature::Time, PvFeature::Preempt] {
                if report.uses(name) {
                    report.set(name, State::Unusable, why.clone());
                }
            }
            plan.steal_clock = false;
            plan.preempt = false;
        }
    }
    PLAN.call_once(|| plan);
    report
}

/// Registers a secondary CPU's record. The boot CPU registered in
/// [`probe`], whose report says how that went.
pub(super) fn init_cpu(cpu: usize) -> Option<FallbackLine> {
    let plan = PLAN.get().filter(|_| cpu != 0)?;
    // Its call is not part of the boot report.
    let mut scratch = PvReport::new(Hypervisor::NotProbed, Note::new());
    let why = register(plan, cpu, &mut scratch)?.err()?;
    // The record holds both the steal clock and the preempted flag.
    let mut failed: heapless::Vec<(PvFeature, &str), 2> = heapless::Vec::new();
    if plan.steal_clock {
        let _ = failed.push((PvFeature::Time, why.as_str()));
    }
    if plan.preempt {
        let _ = failed.push((PvFeature::Preempt, why.as_str()));
    }
    let kept: &[PvFeature] = if plan.ipi { &[PvFeature::Ipi] } else { &[] };
    Some(fallback_note(&failed, kept))
}

/// Stolen nanoseconds of `cpu`, if the steal clock is in use and `cpu`
/// registered its record.
pub(super) fn steal_ns(cpu: usize) -> Option<u64> {
    if !PLAN.get()?.steal_clock {
        return None;
    }
    // Acquire: pairs with the Release in `register`.
    if RECORD_STATE.get(cpu)?.load(Ordering::Acquire) == NOT_REGISTERED {
        return None;
    }
    Some(STEAL[cpu].read(cpu, || read_record(cpu), now_ns))
}

/// Whether `cpu`'s vCPU is preempted, as its [`PreemptedGuard`] lets the
/// host's flag through.
pub(super) fn vcpu_preempted(cpu: usize) -> Option<bool> {
    PREEMPTED_GUARD.get(cpu)?.read(|| host_preempted(cpu))
}

/// At a tick of the calling CPU `cpu`: its own flag must read clear.
pub(super) fn check_own_preempted(cpu: usize) {
    if let Some(guard) = PREEMPTED_GUARD.get(cpu) {
        guard.check_own(cpu, host_preempted(cpu));
    }
}

/// The host's preempted flag for `cpu`, if PREEMPT is in use and `cpu`'s
/// record is registered.
fn host_preempted(cpu: usize) -> Option<bool> {
    if !PLAN.get()?.preempt {
        return None;
    }
    // Acquire: pairs with the Release in `register`.
    if RECORD_STATE.get(cpu)?.load(Ordering::Acquire) != REGISTERED {
        return None;
    }
    Some(RECORDS[cpu].preempted.load(Ordering::Relaxed) & PREEMPTED != 0)
}

/// Whether IPIs go through FUNC_IPI.
pub(super) fn ipi_in_use() -> bool {
    PLAN.get().is_some_and(|plan| plan.ipi)
}

/// The PV doorbell: rings every CPU in `targets` with FUNC_IPI, one call per
/// window of 128 physical ids, and says what it sent; `None` (nothing sent)
/// if the PV IPI is not in use. A window the host refuses is rung through
/// IOCSR instead.
pub(super) fn ring(targets: CpuMask) -> Option<Sent> {
    let plan = PLAN.get().filter(|plan| plan.ipi)?;
    let platform = super::platform();
    let mut ids = [0u64; MAX_CPUS];
    let mut n = 0;
    for cpu in targets.iter().filter(|&c| c < platform.cpus) {
        ids[n] = platform.hw_id[cpu];
        n += 1;
    }
    let mut host = Counted { calls: 0 };
    let mut refused = 0;
    logic::send_ipi(&mut host, plan, &mut ids[..n], |hw_id| {
        irq::send(hw_id, irq::IPI_DOORBELL);
        refused += 1;
    });
    Some(Sent {
        ipis: refused,
        hypercalls: host.calls,
    })
}

/// [`Kvm`], counting the hypercalls: the shootdowns' cost as the guest sees it.
struct Counted {
    calls: u32,
}

impl LoongArchHost for Counted {
    fn iocsr_features(&mut self) -> u64 {
        Kvm.iocsr_features()
    }
    fn cpucfg(&mut self, index: u32) -> u32 {
        Kvm.cpucfg(index)
    }
    fn hvcl(&mut self, function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
        self.calls += 1;
        Kvm.hvcl(function, a1, a2, a3)
    }
}

/// The calling CPU stops: the host stops writing its record.
pub(super) fn cpu_off() {
    let cpu = super::cpu_id();
    let Some(plan) = PLAN.get() else { return };
    let registered = RECORD_STATE[cpu]
        .compare_exchange(REGISTERED, RELEASED, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok();
    if registered {
        // Nothing to do about a refusal: the CPU is stopping. (No log either:
        // this runs in the parking IPI handler, while the exiting CPU may
        // hold the console.)
        let _ = logic::unregister_cpu(&mut Kvm, plan);
    }
}

/// `cpu`'s live FUNC_NOTIFY a2 (record PA | VALID), if it registered.
pub(super) fn registration(cpu: usize) -> Option<u64> {
    // Acquire: pairs with the Release in `register`.
    (RECORD_STATE.get(cpu)?.load(Ordering::Acquire) == REGISTERED)
        .then(|| record_pa(cpu) | STEAL_PHYS_VALID)
}

/// One raw `hvcl 0x100` with a0..a5 = `regs`, for `Pv::pv_raw_call`: only
/// once the probe found KVM, and never one `raw::refusal` refuses.
pub(super) fn raw_hvcl(regs: [u64; 6]) -> Result<[u64; 6], RawCallError> {
    if !KVM_FOUND.load(Ordering::Acquire) {
        return Err(RawCallError::Unavailable);
    }
    // Interrupts masked: the CPU cannot change between the check and the call.
    let irq = <super::Loongarch64 as crate::Interrupts>::irq_save();
    let registered = registration(super::cpu_id());
    let result = match logic::raw::refusal(&regs, registered) {
        Some(why) => Err(RawCallError::Refused(why)),
        None => {
            let mut r = regs;
            // SAFETY: KVM's signature matched, so `hvcl 0x100` is answered
            // (never INE), and the one call that makes the host write guest
            // memory, an accepted FUNC_NOTIFY, names the CPU's own live
            // record (`raw::refusal`). All six registers are declared: the
            // fuzz checks that a1..a5 come back unchanged.
            unsafe {
                asm!(
                    "hvcl {code}",
                    code = const HVCL_KVM_CODE,
                    inout("$a0") r[0],
                    inout("$a1") r[1],
                    inout("$a2") r[2],
                    inout("$a3") r[3],
                    inout("$a4") r[4],
                    inout("$a5") r[5],
                    options(nostack),
                );
            }
            Ok(r)
        }
    };
    <super::Loongarch64 as crate::Interrupts>::irq_restore(irq);
    result
}
