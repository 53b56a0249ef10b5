//! pvhost at EL2: one vCPU per pCPU, the guest at EL1 with the machine as
//! QEMU made it, except for what a KVM guest would not own.
//!
//! What the guest gets and what pvhost keeps:
//!
//! | resource | owner | how |
//! |---|---|---|
//! | RAM below pvhost's image | guest | its FDT's `/memory`; no stage 2 (identity, `VTTBR_EL2` unused), so a guest that maps beyond it is not stopped: pvhost is a test host, not an isolation boundary |
//! | devices, GIC distributor and redistributors | guest | untouched, except pvhost's two Group 0 interrupts ([`gic`]) |
//! | Group 1 interrupts (IRQ) | guest | `HCR_EL2.IMO = 0`: taken at EL1 directly |
//! | Group 0 interrupts (FIQ): the kick SGI, CNTHP | pvhost | `HCR_EL2.FMO = 1` |
//! | HVC, SMC | pvhost | HVC from EL1 always traps; SMC by `HCR_EL2.TSC`: both are SMCCC calls ([`host::hvc`]) |
//! | WFI | pvhost | `HCR_EL2.TWI`: a WFI that would sleep traps and pvhost waits at EL2, so a kick can end it ([`guest_wfi`]) |
//! | ICC_SGI1R_EL1 writes | pvhost | trap with FMO; forwarded ([`sysreg_trap`]) |
//! | EL1 virtual and physical timers, CNTVOFF = 0 | guest | guest time is the real count: stolen time shows as a gap, as under KVM |
//! | CNTHP (EL2 physical timer) | pvhost | the preemption injector |
//!
//! Preemption ([`preempted_wait`]): when a window of the vCPU's schedule
//! ([`host::policy`]) opens, CNTHP fires (FIQ, taken at EL2 whatever the
//! guest masks); pvhost sets the vCPU's PV lock and PV sched flags, raises
//! the physical priority mask so that the guest's interrupts stay pending
//! (they are delivered at EL1 as soon as the guest resumes), waits in WFI
//! until the window ends, then adds the stolen time to the vCPU's PV time
//! record and to its ground truth, clears the flags and returns. A vCPU
//! halted in WFI when its window opens is not preempted: it loses time only
//! if it wakes up inside the window (as KVM counts only runnable time).

mod console;
mod gic;
mod power;
mod start;
mod trap;

use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

use arch::abi::arm64::{PvLockRecord, PvSchedRecord, PvTimeRecord, PV_TIME_STOLEN_OFFSET};
use host::args::{Args, Fault, KICK_DELAY_NS, USAGE};
use host::fdt_patch::{self, Edits};
use host::hvc::{self, Call, Family, Machine, Offer, Outcome};
use host::policy::{Schedule, Steal};
use host::{elf, MAX_VCPUS};
use smccc::psci;

use trap::Frame;

/// Reads a system register (no effect beyond the read).
macro_rules! sysreg {
    ($name:literal) => {{
        let value: u64;
        // SAFETY: an MRS of a register that has no read side effects.
        unsafe {
            core::arch::asm!(concat!("mrs {}, ", $name), out(reg) value,
                options(nomem, nostack, preserves_flags))
        };
        value
    }};
}
pub(crate) use sysreg;

/// Writes a system register; the caller's `unsafe` block says why it is fine.
macro_rules! set_sysreg {
    ($name:literal, $value:expr) => {
        core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) $value,
            options(nomem, nostack, preserves_flags))
    };
}

pub const MAX_PCPUS: usize = MAX_VCPUS;

/// Where QEMU `virt` puts the DTB for an ELF image: the start of RAM.
const QEMU_DTB: u64 = 0x4000_0000;
/// The guest's patched FDT is built here first: QEMU's (about 8 KiB of
/// content) plus the guest's command line.
const FDT_BUF_SIZE: usize = 64 * 1024;

/// HCR_EL2: EL1 is AArch64 (RW), FIQs go to EL2 (FMO), SMC traps (TSC),
/// WFI traps (TWI). IRQs, SErrors, WFE and everything else stay with EL1.
const HCR_EL2_VALUE: u64 = (1 << 31) | (1 << 3) | (1 << 19) | (1 << 13);
/// CNTHCTL_EL2 (E2H = 0): EL1 may use the physical counter and timer.
const CNTHCTL_EL2_VALUE: u64 = 0b11;
/// SCTLR_EL1's RES1 bits, MMU and caches off: the state a vCPU starts in.
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;
/// ISR_EL1.I: a physical IRQ (the guest's) is pending.
const ISR_I: u64 = 1 << 7;

/// Exception classes (ESR_EL2.EC) of the guest's traps.
const EC_WFX: u64 = 0x01;
const EC_HVC64: u64 = 0x16;
const EC_SMC64: u64 = 0x17;
const EC_SYSREG: u64 = 0x18;

/// Facts fixed at boot, read by every pCPU.
struct Facts {
    offer: Offer,
    steal: Steal,
    fault: Fault,
    guest_ram: Range<u64>,
    /// pCPU (= vCPU) `i`'s MPIDR affinity, in the DTB's `/cpus` order.
    mpidr: [u64; MAX_PCPUS],
    pcpus: usize,
    gicr: u64,
    counter_hz: u64,
}

static FACTS: spin::Once<Facts> = spin::Once::new();

fn facts() -> &'static Facts {
    FACTS
        .get()
        .expect("pvhost facts read before boot_main set them")
}

const POWER_OFF: u8 = 0;
const POWER_PENDING: u8 = 1;
const POWER_ON: u8 = 2;

/// What other pCPUs may read or write about a vCPU.
struct Vcpu {
    power: AtomicU8,
    /// The guest's CPU_ON entry point and context id.
    entry: AtomicU64,
    context: AtomicU64,
    /// A PV_SCHED_KICK_CPU arrived: the vCPU's next WFI returns at once
    /// (with `pvhost.fault=delay-kicks`, its next WFI from `kick_due_ns` on).
    kick: AtomicBool,
    /// When the pending kick takes effect (host time, ns; 0: at once).
    kick_due_ns: AtomicU64,
    /// IPA of the vCPU's PV sched record (0: none).
    sched_ipa: AtomicU64,
    /// This pCPU's GIC redistributor (RD frame).
    rd: AtomicU64,
    /// Ground truth.
    preemptions: AtomicU64,
    stolen_ns: AtomicU64,
    /// When the last preemption's steal reached the PV time record (host
    /// time, ns): a guest reading taken later holds all of `stolen_ns`.
    last_end_ns: AtomicU64,
    pv_calls: AtomicU64,
    /// Kicks to this vCPU that `pvhost.fault=drop-kicks` dropped.
    kicks_dropped: AtomicU64,
    /// Kicks to this vCPU that `pvhost.fault=delay-kicks` delayed.
    kicks_delayed: AtomicU64,
    /// Preemptions whose steal a steal fault wrote wrong into the record.
    steal_faults: AtomicU64,
    /// PV_SCHED_IPA_RELEASE calls that released a registered record (the
    /// guest's power-off releases each).
    sched_releases: AtomicU64,
    /// `preemptions` when the vCPU first asked PV_TIME_ST for its record
    /// (`u64::MAX`: not yet), from which the steal faults count.
    time_asked_at: AtomicU64,
}

impl Vcpu {
    const fn new() -> Self {
        Self {
            power: AtomicU8::new(POWER_OFF),
            entry: AtomicU64::new(0),
            context: AtomicU64::new(0),
            kick: AtomicBool::new(false),
            kick_due_ns: AtomicU64::new(0),
            sched_ipa: AtomicU64::new(0),
            rd: AtomicU64::new(0),
            preemptions: AtomicU64::new(0),
            stolen_ns: AtomicU64::new(0),
            last_end_ns: AtomicU64::new(0),
            pv_calls: AtomicU64::new(0),
            kicks_dropped: AtomicU64::new(0),
            kicks_delayed: AtomicU64::new(0),
            steal_faults: AtomicU64::new(0),
            sched_releases: AtomicU64::new(0),
            time_asked_at: AtomicU64::new(u64::MAX),
        }
    }
}

static VCPUS: [Vcpu; MAX_PCPUS] = [const { Vcpu::new() }; MAX_PCPUS];

/// PV time record as pvhost writes it: the ABI's [`PvTimeRecord`] with
/// atomic fields (revision and attributes stay 0).
#[repr(C, align(64))]
struct TimeSlot {
    revision_attributes: AtomicU64,
    stolen_ns: AtomicU64,
}
const _: () = assert!(core::mem::size_of::<TimeSlot>() == core::mem::size_of::<PvTimeRecord>());
const _: () = assert!(core::mem::offset_of!(TimeSlot, stolen_ns) == PV_TIME_STOLEN_OFFSET);

/// PV lock record as pvhost writes it ([`PvLockRecord`], atomic).
#[repr(C, align(64))]
struct LockSlot {
    preempted: AtomicU64,
}
const _: () = assert!(core::mem::size_of::<LockSlot>() == core::mem::size_of::<PvLockRecord>());
const _: () = assert!(core::mem::offset_of!(PvLockRecord, preempted) == 0);
const _: () = assert!(core::mem::offset_of!(PvSchedRecord, preempted) == 0);

/// The host-owned records, in one page of their own (the guest maps it).
#[repr(C, align(4096))]
struct Records {
    time: [TimeSlot; MAX_PCPUS],
    lock: [LockSlot; MAX_PCPUS],
}
const _: () = assert!(core::mem::size_of::<Records>() == 4096);

static RECORDS: Records = Records {
    time: [const {
        TimeSlot {
            revision_attributes: AtomicU64::new(0),
            stolen_ns: AtomicU64::new(0),
        }
    }; MAX_PCPUS],
    lock: [const {
        LockSlot {
            preempted: AtomicU64::new(0),
        }
    }; MAX_PCPUS],
};

/// The injector of one pCPU: its schedule and the window it is at.
struct Injector {
    schedule: Schedule,
    /// The current or next window `[start, end)` in ns (`None`: never).
    window: Option<(u64, u64)>,
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
    fn arm(&mut self, now_ns: u64) {
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

static INJECTORS: [spin::Mutex<Option<Injector>>; MAX_PCPUS] =
    [const { spin::Mutex::new(None) }; MAX_PCPUS];

/// The pCPU (= vCPU) this runs on.
fn cpu_index() -> usize {
    sysreg!("tpidr_el2") as usize
}

fn ticks() -> u64 {
    // SAFETY: an ISB only orders the counter read after what came before.
    unsafe { core::arch::asm!("isb", options(nomem, nostack, preserves_flags)) };
    sysreg!("cntpct_el0")
}

fn ticks_to_ns(ticks: u64) -> u64 {
    (u128::from(ticks) * 1_000_000_000 / u128::from(facts().counter_hz)) as u64
}

fn ns_to_ticks(ns: u64) -> u64 {
    (u128::from(ns) * u128::from(facts().counter_hz) / 1_000_000_000) as u64
}

fn now_ns() -> u64 {
    ticks_to_ns(ticks())
}

fn wfi() {
    // SAFETY: WFI only waits; interrupts stay masked at EL2, pending ones
    // end the wait.
    unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
}

/// Sets or clears `cpu`'s preempted flags (PV lock record, PV sched record).
fn set_preempted(cpu: usize, preempted: bool) {
    let preempted = preempted || facts().fault == Fault::StuckPreempted;
    RECORDS.lock[cpu]
        .preempted
        .store(u64::from(preempted), Ordering::Release);
    let ipa = VCPUS[cpu].sched_ipa.load(Ordering::Acquire);
    if ipa != 0 {
        // SAFETY: `ipa` passed `hvc::record_ipa_ok` (64-byte aligned, inside
        // guest RAM, which the EL2 map covers as Normal memory); the record's
        // first field is the u32 flag, written atomically for the guest.
        let flag = unsafe { &*(ipa as *const AtomicU32) };
        flag.store(u32::from(preempted), Ordering::Release);
    }
}

/// Acknowledges every pending Group 0 interrupt (kicks leave their flag
/// set; CNTHP is disabled until [`Injector::arm`]), then re-arms the
/// injector.
fn service_host_interrupts(cpu: usize, injector: &mut Injector) {
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
fn preempt_if_due(cpu: usize) {
    let mut slot = INJECTORS[cpu].lock();
    let Some(injector) = slot.as_mut() else {
        return;
    };
    if let Some(end) = injector.due(now_ns()) {
        preempted_wait(cpu, injector, end);
    }
}

/// FIQ from the guest: pvhost's own interrupts.
fn host_interrupts(_frame: &mut Frame) {
    let cpu = cpu_index();
    if let Some(injector) = INJECTORS[cpu].lock().as_mut() {
        service_host_interrupts(cpu, injector);
    }
    preempt_if_due(cpu);
}

/// The guest executed a WFI that would sleep: wait at EL2 for a guest
/// interrupt or a kick (a kick that came first ends it at once).
fn guest_wfi(cpu: usize) {
    let v = &VCPUS[cpu];
    loop {
        // A delayed kick waits for its time (then ends the first WFI after
        // it, whatever that WFI waits for).
        if v.kick.load(Ordering::Acquire)
            && now_ns() >= v.kick_due_ns.load(Ordering::Acquire)
            && v.kick.swap(false, Ordering::AcqRel)
        {
            v.kick_due_ns.store(0, Ordering::Release);
            break;
        }
        if sysreg!("isr_el1") & ISR_I != 0 {
            break;
        }
        wfi();
        if let Some(injector) = INJECTORS[cpu].lock().as_mut() {
            service_host_interrupts(cpu, injector);
        }
    }
    // Runnable again: if its window is under way, it waits for the end.
    preempt_if_due(cpu);
}

/// A trapped system register access (ESR_EL2.EC = 0x18).
fn sysreg_trap(frame: &mut Frame, iss: u64) {
    let read = iss & 1 != 0;
    let crm = (iss >> 1) & 0xf;
    let rt = ((iss >> 5) & 0x1f) as usize;
    let crn = (iss >> 10) & 0xf;
    let op1 = (iss >> 14) & 0x7;
    let op2 = (iss >> 17) & 0x7;
    let op0 = (iss >> 20) & 0x3;
    // ICC_SGI1R_EL1 (op2 5), ICC_ASGI1R_EL1 (6), ICC_SGI0R_EL1 (7):
    // S3_0_C12_C11_{5,6,7}, write-only.
    if (op0, op1, crn, crm) != (3, 0, 12, 11) || !(5..=7).contains(&op2) {
        return inject_undef(frame);
    }
    if read {
        frame.set_reg(rt, 0);
    } else {
        let value = frame.reg(rt);
        // Group 1 SGIs are the guest's; Group 0 and SGI 15 are pvhost's,
        // and ASGI1R (the other security state) has no one to go to.
        if op2 == 5 && gic::sgi_intid(value) != gic::KICK_SGI {
            gic::forward_sgi1r(value);
        }
    }
    frame.elr += 4;
}

/// Makes the guest take an Undefined Instruction exception at EL1 (for a
/// trapped instruction pvhost does not emulate), as KVM does.
fn inject_undef(frame: &mut Frame) {
    const ESR_EC_UNKNOWN_IL: u64 = 1 << 25;
    let vbar = sysreg!("vbar_el1");
    let offset = match frame.spsr & 0xf {
        0b0101 => 0x200, // from EL1h: current EL with SP_ELx
        0b0100 => 0x000, // from EL1t: current EL with SP_EL0
        _ => 0x400,      // from EL0: lower EL (AArch64)
    };
    // SAFETY: EL1's exception registers, set as the architecture does when
    // it takes an exception to EL1; the guest is not running.
    unsafe {
        set_sysreg!("esr_el1", ESR_EC_UNKNOWN_IL);
        set_sysreg!("elr_el1", frame.elr);
        set_sysreg!("spsr_el1", frame.spsr);
    }
    frame.elr = vbar + offset;
    frame.spsr = trap::SPSR_EL1H_MASKED;
}

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
        // woken vCPU (pairs with the AcqRel swap in `guest_wfi`).
        VCPUS[vcpu].kick.store(true, Ordering::Release);
        gic::send_kick(facts().mpidr[vcpu]);
    }

    fn cpu_on(&mut self, target_mpidr: u64, entry: u64, context: u64) -> i64 {
        let f = facts();
        let affinity = target_mpidr & 0xff_00ff_ffff;
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
fn hypercall(cpu: usize, frame: &mut Frame, imm: u16) {
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

/// The machine-readable ground truth, one line per vCPU:
/// `pvhost: cpu=N preemptions=K stolen_ns=S pv_calls=C last_end_ns=E
/// kicks_dropped=D kicks_delayed=L steal_faults=F sched_releases=R
/// sched_registered=0|1` (`sched_registered`: a PV sched record still
/// registered at SYSTEM_OFF).
///
/// `last_end_ns` is when the vCPU's last preemption reached its PV time
/// record (host time, which is the guest's clock too: CNTVOFF = 0): a guest
/// reading of the record taken after it must equal `stolen_ns` (see
/// `xtask/src/steal.rs`). A preemption still under way is not counted; it
/// would be added to both when it ends.
fn report_ground_truth() {
    for (cpu, v) in VCPUS.iter().enumerate().take(facts().pcpus) {
        // Acquire, then `last_end_ns`: see `preempted_wait`.
        let stolen_ns = v.stolen_ns.load(Ordering::Acquire);
        console::line(format_args!(
            "pvhost: cpu={cpu} preemptions={} stolen_ns={stolen_ns} pv_calls={} last_end_ns={} kicks_dropped={} kicks_delayed={} steal_faults={} sched_releases={} sched_registered={}",
            v.preemptions.load(Ordering::Relaxed),
            v.pv_calls.load(Ordering::Relaxed),
            v.last_end_ns.load(Ordering::Relaxed),
            v.kicks_dropped.load(Ordering::Relaxed),
            v.kicks_delayed.load(Ordering::Relaxed),
            v.steal_faults.load(Ordering::Relaxed),
            v.sched_releases.load(Ordering::Relaxed),
            u8::from(v.sched_ipa.load(Ordering::Acquire) != 0),
        ));
    }
}

/// A synchronous exception from the guest.
fn guest_sync(frame: &mut Frame) {
    let cpu = cpu_index();
    let esr = sysreg!("esr_el2");
    let iss = esr & 0x1ff_ffff;
    gic::ensure_host_interrupts(VCPUS[cpu].rd.load(Ordering::Relaxed));
    match esr >> 26 {
        // ELR_EL2 is already past the HVC.
        EC_HVC64 => hypercall(cpu, frame, iss as u16),
        EC_SMC64 => {
            // A trapped SMC returns to the SMC itself: step over it.
            frame.elr += 4;
            hypercall(cpu, frame, iss as u16);
        }
        EC_WFX => {
            // ISS.TI bit 0: 0 = WFI (or WFIT), 1 = WFE (not trapped).
            if iss & 1 == 0 {
                guest_wfi(cpu);
            }
            frame.elr += 4;
        }
        EC_SYSREG => sysreg_trap(frame, iss),
        _ => inject_undef(frame),
    }
}

/// EL2 state for this pCPU's vCPU, its GIC share and its injector.
fn init_pcpu(cpu: usize) {
    let f = facts();
    let (midr, mpidr) = (sysreg!("midr_el1"), sysreg!("mpidr_el1"));
    // SAFETY: EL2 configuration before the vCPU first runs on this pCPU:
    // the trap and routing controls above, EL1's timers and counter, EL1's
    // view of MIDR/MPIDR (the real ones, so the guest's MPIDRs match the
    // DTB), no stage 2, EL1 with its MMU off, pvhost's timer off.
    unsafe {
        set_sysreg!("hcr_el2", HCR_EL2_VALUE);
        set_sysreg!("cnthctl_el2", CNTHCTL_EL2_VALUE);
        set_sysreg!("cntvoff_el2", 0u64);
        set_sysreg!("hstr_el2", 0u64);
        set_sysreg!("vttbr_el2", 0u64);
        set_sysreg!("vpidr_el2", midr);
        set_sysreg!("vmpidr_el2", mpidr);
        set_sysreg!("sctlr_el1", SCTLR_EL1_RESET);
        set_sysreg!("cnthp_ctl_el2", 0u64);
        core::arch::asm!("isb", options(nomem, nostack, preserves_flags));
    }
    let Some(rd) = gic::find_redistributor(f.gicr, f.mpidr[cpu]) else {
        fail(format_args!("no GIC redistributor for pCPU {cpu}"));
    };
    VCPUS[cpu].rd.store(rd, Ordering::Relaxed);
    gic::init_cpu(rd);
    let mut injector = Injector {
        schedule: Schedule::new(f.steal, cpu, now_ns()),
        window: None,
    };
    injector.arm(now_ns());
    *INJECTORS[cpu].lock() = Some(injector);
}

/// Prints why pvhost cannot go on and powers the machine off.
fn fail(why: core::fmt::Arguments<'_>) -> ! {
    console::line(format_args!("pvhost: error: {why}"));
    power::system_off()
}

/// Writes back the data cache over `range` to the point of coherency and
/// drops stale instructions, so the guest (MMU and caches off at first)
/// sees what pvhost wrote through its cacheable map.
fn clean_to_poc(range: Range<u64>) {
    // CTR_EL0.DminLine: log2 of the smallest data cache line in words.
    let line = 4u64 << ((sysreg!("ctr_el0") >> 16) & 0xf);
    let mut addr = range.start & !(line - 1);
    while addr < range.end {
        // SAFETY: a cache clean by address of mapped RAM changes no data.
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) addr, options(nostack, preserves_flags)) };
        addr += line;
    }
    // SAFETY: barriers and an instruction cache invalidation only.
    unsafe { core::arch::asm!("dsb sy", "ic iallu", "dsb sy", "isb", options(nostack)) };
}

/// The guest's FDT, built before QEMU's (at the same address) is replaced.
static FDT_BUF: spin::Mutex<[u8; FDT_BUF_SIZE]> = spin::Mutex::new([0; FDT_BUF_SIZE]);

/// The boot pCPU: read QEMU's DTB, build the guest's, load the guest's ELF
/// image and enter it as vCPU 0.
extern "C" fn boot_main() -> ! {
    // SAFETY: QEMU `virt` puts its DTB at the start of RAM for an ELF
    // image linked above it (pvhost is); the EL2 map covers RAM. The `fdt`
    // crate checks the magic and sizes.
    let fdt = match unsafe { fdt::Fdt::from_ptr(QEMU_DTB as *const u8) } {
        Ok(fdt) => fdt,
        Err(e) => fail(format_args!("no DTB at {QEMU_DTB:#x}: {e:?}")),
    };
    if let Some(uart) = fdt
        .chosen()
        .stdout()
        .and_then(|n| n.reg())
        .and_then(|mut r| r.next())
    {
        console::init(uart.starting_address as u64);
    }
    let args = match Args::parse(fdt.chosen().bootargs().unwrap_or("")) {
        Ok(args) => args,
        Err(e) => fail(format_args!("{e}; usage: {USAGE}")),
    };

    // Guest RAM: from the start of the RAM region pvhost lives in up to
    // pvhost's image.
    let (host_start, host_end) = start::host_extent();
    if fdt.find_node("/memory").is_none() {
        fail(format_args!("the DTB has no /memory"));
    }
    let Some(ram) = fdt
        .memory()
        .regions()
        .map(|r| {
            let start = r.starting_address as u64;
            start..start + r.size.unwrap_or(0) as u64
        })
        .find(|r| r.contains(&host_start))
    else {
        fail(format_args!(
            "pvhost at {host_start:#x} is in no /memory region"
        ));
    };
    let ram_end = ram.end.min(start::MAPPED_RAM_END);
    let guest_ram = ram.start..host_start;
    if guest_ram.start != QEMU_DTB {
        fail(format_args!(
            "RAM starts at {:#x}, not {QEMU_DTB:#x}",
            ram.start
        ));
    }

    let mut mpidr = [0; MAX_PCPUS];
    let mut pcpus = 0;
    for cpu in fdt.cpus() {
        if pcpus == MAX_PCPUS {
            console::line(format_args!(
                "pvhost: only the first {MAX_PCPUS} CPUs of the DTB are used"
            ));
            break;
        }
        mpidr[pcpus] = cpu.ids().first() as u64;
        pcpus += 1;
    }
    let boot_mpidr = sysreg!("mpidr_el1") & 0xff_00ff_ffff;
    if pcpus == 0 || mpidr[0] != boot_mpidr {
        fail(format_args!(
            "the boot CPU {boot_mpidr:#x} is not the DTB's first CPU"
        ));
    }

    let Some(gic) = fdt.find_compatible(&["arm,gic-v3"]) else {
        fail(format_args!("the DTB has no arm,gic-v3"));
    };
    let mut regs = gic.reg().into_iter().flatten();
    let (Some(gicd), Some(gicr)) = (regs.next(), regs.next()) else {
        fail(format_args!(
            "the GICv3 node lacks its distributor or redistributors"
        ));
    };
    // The timer's interrupts: secure, non-secure physical, virtual,
    // hypervisor physical (then hypervisor virtual), as (type, PPI, flags).
    let hyp_ppi = fdt
        .find_compatible(&["arm,armv8-timer"])
        .and_then(|t| t.property("interrupts"))
        .and_then(|p| p.value.get(3 * 12 + 4..3 * 12 + 8))
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let Some(hyp_ppi) = hyp_ppi.filter(|&p| p < 16) else {
        fail(format_args!("the DTB's timer has no hypervisor timer PPI"));
    };
    let method = fdt
        .find_node("/psci")
        .and_then(|n| n.property("method"))
        .and_then(|p| p.as_str());
    if method != Some("smc") {
        fail(format_args!(
            "PSCI method {method:?}: pvhost forwards PSCI to the firmware by smc (QEMU virtualization=on)"
        ));
    }

    // The guest's FDT, built aside: QEMU's is replaced below.
    let mut buf = FDT_BUF.lock();
    let edits = Edits {
        guest_ram: guest_ram.clone(),
        psci_method: "hvc",
        bootargs: args.guest,
    };
    // SAFETY: the DTB's bytes, `total_size` of them from its start, in RAM.
    let dtb = unsafe { core::slice::from_raw_parts(QEMU_DTB as *const u8, fdt.total_size()) };
    let fdt_len = match fdt_patch::patch(dtb, &edits, &mut buf[..]) {
        Ok(n) => n,
        Err(e) => fail(format_args!("cannot patch the DTB: {e}")),
    };

    // The guest's ELF file, staged by QEMU's loader above pvhost.
    let Some(elf_pa) = args.elf_pa else {
        fail(format_args!(
            "no pvhost.elf=ADDR: where is the guest's ELF file?"
        ));
    };
    if elf_pa < host_end || elf_pa >= ram_end {
        fail(format_args!(
            "pvhost.elf={elf_pa:#x} is not in free host RAM [{host_end:#x}, {ram_end:#x})"
        ));
    }
    // SAFETY: RAM from the staged file to the end of the mapped RAM: host
    // memory nobody else uses; the ELF parser reads only inside it.
    let file =
        unsafe { core::slice::from_raw_parts(elf_pa as *const u8, (ram_end - elf_pa) as usize) };
    let image = match elf::parse(file, guest_ram.clone()) {
        Ok(image) => image,
        Err(e) => fail(format_args!("guest ELF at {elf_pa:#x}: {e}")),
    };
    let fdt_range = guest_ram.start..guest_ram.start + fdt_len as u64;
    if image
        .segments()
        .any(|s| s.pa < fdt_range.end && fdt_range.start < s.memory().end)
    {
        fail(format_args!(
            "the guest image overlaps its FDT at {:#x}",
            fdt_range.start
        ));
    }
    let on_off = |b: bool| if b { "on" } else { "off" };
    console::line(format_args!(
        "pvhost: EL2 host, {pcpus} pCPUs, guest RAM [{:#x}, {:#x}), guest entry {:#x}, FDT at {:#x} ({fdt_len} bytes)",
        guest_ram.start, guest_ram.end, image.entry, fdt_range.start
    ));
    console::line(format_args!(
        "pvhost: offers PV time {}, PV lock v2 {}, PV sched {}; steal {}; fault {:?}; guest args \"{}\"",
        on_off(args.time),
        on_off(args.lock),
        on_off(args.sched),
        args.steal,
        args.fault,
        args.guest
    ));

    // QEMU's DTB (`fdt`, `dtb`, `args.guest`) is overwritten from here on:
    // nothing below reads it.
    for s in image.segments() {
        let len = s.file.end - s.file.start;
        // SAFETY: `file[s.file]` is inside the staged file (checked by the
        // parser) and `[s.pa, s.pa + memsz)` inside guest RAM; the two do
        // not overlap (guest RAM ends where pvhost's image starts, the file
        // is above it).
        unsafe {
            core::ptr::copy_nonoverlapping(file[s.file.clone()].as_ptr(), s.pa as *mut u8, len);
            core::ptr::write_bytes((s.pa + len as u64) as *mut u8, 0, s.zeroed as usize);
        }
    }
    // SAFETY: the FDT slot at the start of guest RAM, checked above against
    // the image; the buffer is pvhost's.
    unsafe {
        core::ptr::copy_nonoverlapping(buf.as_ptr(), fdt_range.start as *mut u8, fdt_len);
    }
    drop(buf);
    clean_to_poc(guest_ram.start..image.extent().end.max(fdt_range.end));

    let counter_hz = sysreg!("cntfrq_el0");
    FACTS.call_once(|| Facts {
        offer: Offer {
            time: args.time,
            lock: args.lock,
            sched: args.sched,
        },
        steal: args.steal,
        fault: args.fault,
        guest_ram: guest_ram.clone(),
        mpidr,
        pcpus,
        gicr: gicr.starting_address as u64,
        counter_hz,
    });
    if args.fault == Fault::StuckPreempted {
        for cpu in 0..pcpus {
            set_preempted(cpu, true);
        }
    }
    gic::init_distributor(gicd.starting_address as u64, 16 + hyp_ppi);
    VCPUS[0].power.store(POWER_ON, Ordering::Release);
    init_pcpu(0);
    trap::enter_guest(
        0,
        Frame::entry(image.entry, trap::SPSR_EL1H_MASKED, guest_ram.start),
    )
}

/// A secondary pCPU, started by [`Host::cpu_on`] for the guest's CPU_ON.
extern "C" fn secondary_main(cpu: usize) -> ! {
    init_pcpu(cpu);
    let v = &VCPUS[cpu];
    let (entry, context) = (
        v.entry.load(Ordering::Acquire),
        v.context.load(Ordering::Acquire),
    );
    v.power.store(POWER_ON, Ordering::Release);
    trap::enter_guest(cpu, Frame::entry(entry, trap::SPSR_EL1H_MASKED, context))
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::line(format_args!(
        "pvhost: panic on pCPU {}: {info}",
        cpu_index()
    ));
    power::system_off()
}
