//! The SMCCC fuzz (arm64): random calls on the conduit the FDT names, every
//! answer checked against what the host must answer. Each call is of one of
//! three kinds ([`Kind`]), a third of the time each (a call that must not be
//! issued is drawn again, so fewer `near` ones remain in the end):
//!
//! | kind | the call |
//! |---|---|
//! | random | any 32-bit function ID, random x1..x3 |
//! | near | a known ID changed a little: ±1..4, the other calling convention (bit 30), a yielding call (bit 31 clear), a low bit flipped; random x1..x3 |
//! | known | a known ID with arguments at its edges: function IDs and their neighbours for the `*_FEATURES` calls, bad record IPAs for PV_SCHED_IPA_INIT, valid and invalid vCPUs for KICK_CPU, random upper halves for 32-bit calls (which must ignore them) |
//!
//! The answers it expects (x0 unless said), from `docs/abi.md` and,
//! for PSCI, pvhost's table (`host/src/hvc.rs`):
//!
//! | call | answer |
//! |---|---|
//! | any ID not listed below | NOT_SUPPORTED (-1) |
//! | PSCI_VERSION, SMCCC_VERSION | 1.1 (0x10001) |
//! | PSCI_FEATURES(f) | 0 for VERSION, CPU_ON, CPU_OFF, AFFINITY_INFO, MIGRATE_INFO_TYPE, SYSTEM_OFF, SYSTEM_RESET, PSCI_FEATURES, SMCCC_VERSION; else -1 |
//! | AFFINITY_INFO(an online CPU, level 0) | 0 (on) |
//! | MIGRATE_INFO_TYPE | 2 |
//! | SMCCC_ARCH_FEATURES(f) | 0 for ARCH_FEATURES, PV_TIME_FEATURES (even with PV time off, as KVM), PV_LOCK_FEATURES / PV_SCHED_FEATURES when offered; else -1 |
//! | VENDOR_HYP_CALL_UID | KVM's UID in x0..x3 |
//! | VENDOR_HYP_KVM_FEATURES | 1 (no PTP) |
//! | PV_TIME_FEATURES(f), PV_LOCK_FEATURES(f), PV_SCHED_FEATURES(f) | 0 for the ABI's own functions when offered; else -1 |
//! | PV_TIME_ST, PV_LOCK_PREEMPTED | this vCPU's record: 64-byte aligned, below 2^48, the same on every call, another CPU's or ABI's never |
//! | PV_SCHED_IPA_INIT(bad IPA) | INVALID_PARAMETER (-3) when offered |
//! | PV_SCHED_KICK_CPU(v) | 0 for a vCPU, INVALID_PARAMETER beyond, when offered |
//!
//! SMC32/HVC32 calls (bit 30 clear) see only the low halves of x1..x3.
//!
//! Never issued (the generator draws again), because a host that
//! implements them acts on them behind the kernel's back: what
//! [`arch::pv::arm64::raw_call_refusal`] refuses, with guest RAM as the
//! kernel's memory — PSCI's power calls (CPU_ON, CPU_OFF, CPU_SUSPEND,
//! SYSTEM_OFF, SYSTEM_RESET, ...: they would start, stop or suspend CPUs or
//! end the run) and the rest of the standard secure services (SDEI entry
//! points, FF-A memory sharing, TRNG); PV_SCHED_IPA_RELEASE (the kernel's live
//! registration would be dropped) and PV_SCHED_IPA_INIT with a record
//! touching RAM (the live record would move, and the host would write
//! there), so its IPAs are all outside RAM: below it, just past it, above
//! 2^40, beyond 2^48, aligned or not. PV_TIME_ST and PV_LOCK_PREEMPTED are
//! issued freely: they return the host's records and register nothing.
//! Also never issued: AFFINITY_INFO with other arguments, whose answer is
//! the firmware's (pvhost forwards it), not pvhost's.
//!

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use arch::abi::arm64::*;
use arch::pv::arm64::raw_call_refusal;
use arch::pv::{PvFeature, State};
use kernel::percpu::PerCpu;
use kernel::pv;
use kernel::{per_cpu, smp};

use super::{Config, Kind, Rng, Tally};

/// The IDs the fuzz knows, the bases of the `near` and `known` kinds (the
/// refused ones are among them: their neighbours are worth a call): the
/// PSCI functions a host implements, then these.
const KNOWN_BEYOND_PSCI: [u32; 18] = [
    psci::PSCI_MIGRATE_INFO_UP_CPU_32,
    psci::PSCI_MIGRATE_INFO_UP_CPU_64,
    SMCCC_ARCH_FEATURES,
    SMCCC_ARCH_SOC_ID,
    SMCCC_ARCH_WORKAROUND_1,
    SMCCC_ARCH_WORKAROUND_2,
    SMCCC_ARCH_WORKAROUND_3,
    VENDOR_HYP_CALL_UID,
    VENDOR_HYP_KVM_FEATURES,
    PV_LOCK_V3,
    PV_TIME_FEATURES,
    PV_TIME_ST,
    PV_LOCK_FEATURES,
    PV_LOCK_PREEMPTED,
    PV_SCHED_FEATURES,
    PV_SCHED_IPA_INIT,
    PV_SCHED_IPA_RELEASE,
    PV_SCHED_KICK_CPU,
];
const KNOWN_LEN: usize = PSCI_IMPLEMENTED.len() + KNOWN_BEYOND_PSCI.len();
const KNOWN: &[u32; KNOWN_LEN] = &{
    let mut known = [0; KNOWN_LEN];
    let mut i = 0;
    while i < KNOWN_LEN {
        known[i] = if i < PSCI_IMPLEMENTED.len() {
            PSCI_IMPLEMENTED[i]
        } else {
            KNOWN_BEYOND_PSCI[i - PSCI_IMPLEMENTED.len()]
        };
        i += 1;
    }
    known
};

/// What the expectations depend on.
#[derive(Debug, Clone)]
pub struct Machine {
    pub offer: Offer,
    /// Guest RAM, `[start, end)` per region.
    pub ram: Vec<(u64, u64)>,
    /// The MPIDR affinity of every online CPU.
    pub online_mpidr: Vec<u64>,
    /// vCPUs the host knows (the FDT's CPUs), for KICK_CPU.
    pub vcpus: u64,
}

impl Machine {
    fn in_ram(&self, addr: u64) -> bool {
        self.ram
            .iter()
            .any(|&(start, end)| (start..end).contains(&addr))
    }
}

/// A host record a call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    Time = 0,
    Lock = 1,
}

/// The answer a call must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// x0 is this (x1..x3 are the callee's business).
    X0(u64),
    /// x0..x3 are KVM's vendor UID.
    Uid,
    /// x0 is the calling vCPU's record of this kind.
    Record(Record),
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Expect::X0(v) => write!(f, "{}", v as i64),
            Expect::Uid => f.write_str("KVM's UID"),
            Expect::Record(Record::Time) => f.write_str("this vCPU's PV time record"),
            Expect::Record(Record::Lock) => f.write_str("this vCPU's PV lock record"),
        }
    }
}

/// One call: x0 and x1..x3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub function: u32,
    pub args: [u64; 3],
}

/// The answer `call` must get, or `None` if the fuzz must not issue it
/// (see the module's header for which and why).
pub fn expect(call: Call, m: &Machine) -> Option<Expect> {
    if raw_call_refusal(call.function, call.args, |a| m.in_ram(a)).is_some() {
        return None;
    }
    let f = call.function;
    // x1..x3; SMC32/HVC32 calls see only their low halves.
    let x = |n: usize| {
        let value = call.args[n - 1];
        if f & SMC64 != 0 {
            value
        } else {
            value & 0xffff_ffff
        }
    };
    let code = |c: i64| Some(Expect::X0(c as u64));
    let yes_if = |offered: bool| code(if offered { SUCCESS } else { NOT_SUPPORTED });
    let o = m.offer;
    match f {
        PSCI_VERSION => Some(Expect::X0(PSCI_VERSION_1_1.into())),
        SMCCC_VERSION => Some(Expect::X0(SMCCC_VERSION_1_1.into())),
        PSCI_FEATURES => yes_if(PSCI_IMPLEMENTED.contains(&(x(1) as u32))),
        psci::PSCI_AFFINITY_INFO_32 | psci::PSCI_AFFINITY_INFO_64 => {
            let online = m.online_mpidr.contains(&x(1));
            (online && x(2) == 0).then_some(Expect::X0(0))
        }
        psci::PSCI_MIGRATE_INFO_TYPE => Some(Expect::X0(PSCI_MIGRATE_INFO_TYPE_NONE)),
        SMCCC_ARCH_FEATURES => {
            let g = x(1) as u32;
            yes_if(
                g == SMCCC_ARCH_FEATURES
                    || g == PV_TIME_FEATURES
                    || (g == PV_LOCK_FEATURES && o.lock)
                    || (g == PV_SCHED_FEATURES && o.sched),
            )
        }
        VENDOR_HYP_CALL_UID => Some(Expect::Uid),
        VENDOR_HYP_KVM_FEATURES => Some(Expect::X0(1 << KVM_FEATURE_FEATURES)),
        PV_TIME_FEATURES => yes_if(
            o.time
                && [PV_TIME_FEATURES, PV_TIME_ST]
                    .map(u64::from)
                    .contains(&x(1)),
        ),
        PV_TIME_ST if o.time => Some(Expect::Record(Record::Time)),
        PV_LOCK_FEATURES => yes_if(
            o.lock
                && [PV_LOCK_FEATURES, PV_LOCK_PREEMPTED]
                    .map(u64::from)
                    .contains(&x(1)),
        ),
        PV_LOCK_PREEMPTED if o.lock => Some(Expect::Record(Record::Lock)),
        PV_SCHED_FEATURES => yes_if(
            o.sched
                && (u64::from(PV_SCHED_FEATURES)..=u64::from(PV_SCHED_KICK_CPU)).contains(&x(1)),
        ),
        // Only IPAs whose record misses RAM get here (`raw_call_refusal`),
        // and no such record is valid.
        PV_SCHED_IPA_INIT if o.sched => code(INVALID_PARAMETER),
        PV_SCHED_KICK_CPU if o.sched => code(if x(1) < m.vcpus {
            SUCCESS
        } else {
            INVALID_PARAMETER
        }),
        _ => code(NOT_SUPPORTED),
    }
}

/// A known ID changed a little.
fn near(rng: &mut Rng) -> u32 {
    let base = rng.pick(KNOWN);
    match rng.below(5) {
        0 => base.wrapping_add(1 + rng.below(4) as u32),
        1 => base.wrapping_sub(1 + rng.below(4) as u32),
        2 => base ^ SMC64,
        3 => base & !(1 << 31),
        _ => base ^ 1 << rng.below(16),
    }
}

/// A record IPA no valid record has, whose record misses RAM: below RAM,
/// just past it, above 2^40, or beyond 2^48; aligned or not.
fn bad_ipa(rng: &mut Rng, m: &Machine) -> u64 {
    let low = m.ram.iter().map(|r| r.0).min().unwrap_or(0);
    let high = m.ram.iter().map(|r| r.1).max().unwrap_or(0);
    let aligned = match rng.below(5) {
        // Leaves room for an unaligned record below RAM too.
        0 if low >= 2 * RECORD_ALIGN => rng.below(low / RECORD_ALIGN - 1) * RECORD_ALIGN,
        1 if low >= 2 * RECORD_ALIGN => low - 2 * RECORD_ALIGN,
        2 => high + rng.below(64) * RECORD_ALIGN,
        3 => ((1 << 40) | (rng.next() % IPA_LIMIT)) & !(RECORD_ALIGN - 1),
        _ => (IPA_LIMIT | rng.next()) & !(RECORD_ALIGN - 1),
    };
    if rng.chance(2) {
        aligned
    } else {
        aligned | (1 + rng.below(RECORD_ALIGN - 1))
    }
}

/// Arguments at the edges of a known call.
fn edge_args(function: u32, rng: &mut Rng, m: &Machine) -> [u64; 3] {
    let mut args = [rng.next(), rng.next(), rng.next()];
    // Random upper halves for 32-bit calls, which must not look at them.
    let upper = |rng: &mut Rng| {
        if function & SMC64 == 0 && rng.chance(2) {
            rng.next() << 32
        } else {
            0
        }
    };
    match function {
        PSCI_FEATURES | SMCCC_ARCH_FEATURES | PV_TIME_FEATURES | PV_LOCK_FEATURES
        | PV_SCHED_FEATURES => {
            let asked = if rng.chance(2) {
                rng.pick(KNOWN)
            } else {
                near(rng)
            };
            // On a 64-bit call, upper bits make the ID no function at all.
            let junk = if function & SMC64 != 0 && rng.chance(4) {
                rng.next() << 32
            } else {
                upper(rng)
            };
            args[0] = u64::from(asked) | junk;
        }
        psci::PSCI_AFFINITY_INFO_32 | psci::PSCI_AFFINITY_INFO_64 => {
            args[0] = rng.pick(&m.online_mpidr) | upper(rng);
            args[1] = upper(rng);
        }
        PV_SCHED_IPA_INIT => args[0] = bad_ipa(rng, m),
        PV_SCHED_KICK_CPU => {
            args[0] = match rng.below(4) {
                0 | 1 => rng.below(m.vcpus.max(1)),
                2 => m.vcpus + rng.below(4),
                _ => rng.next() | 1 << 32,
            }
        }
        _ => {}
    }
    args
}

/// The next call to issue, with its kind and answer.
pub fn generate(rng: &mut Rng, m: &Machine) -> (Kind, Call, Expect) {
    loop {
        let kind = match rng.below(3) {
            0 => Kind::Random,
            1 => Kind::Near,
            _ => Kind::Known,
        };
        let call = match kind {
            Kind::Random => Call {
                function: rng.next() as u32,
                args: [rng.next(), rng.next(), rng.next()],
            },
            Kind::Near => Call {
                function: near(rng),
                args: [rng.next(), rng.next(), rng.next()],
            },
            Kind::Known => {
                let function = rng.pick(KNOWN);
                Call {
                    function,
                    args: edge_args(function, rng, m),
                }
            }
        };
        if let Some(expect) = expect(call, m) {
            return (kind, call, expect);
        }
    }
}

/// Each CPU's records as the first answer gave them (0: not seen yet).
static RECORDS: PerCpu<[AtomicU64; 2]> = per_cpu!([AtomicU64::new(0), AtomicU64::new(0)]);

/// Why `answer` is not what `expect` says, or `None` if it is. A record's
/// first answer on `cpu` becomes what later ones must repeat.
fn judge(answer: [u64; 4], expect: Expect, cpu: usize) -> Option<String> {
    match expect {
        Expect::X0(v) => (answer[0] != v).then(|| format!("expected {}", v as i64)),
        Expect::Uid => (answer != KVM_UID.map(u64::from)).then(|| "expected KVM's UID".into()),
        Expect::Record(kind) => {
            let ipa = answer[0];
            if !ipa.is_multiple_of(RECORD_ALIGN) || ipa >= IPA_LIMIT {
                return Some(format!("{expect}: not a 64-byte aligned IPA below 2^48"));
            }
            let first = &RECORDS.of(cpu)[kind as usize];
            match first.compare_exchange(0, ipa, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => None,
                Err(seen) if seen == ipa => None,
                Err(seen) => Some(format!("{expect}: earlier calls said {seen:#x}")),
            }
        }
    }
}

/// The records every CPU saw must all differ.
fn check_records_distinct() -> Vec<String> {
    let mut seen: Vec<(u64, usize, Record)> = Vec::new();
    let mut problems = Vec::new();
    for cpu in smp::online_cpus() {
        for kind in [Record::Time, Record::Lock] {
            let ipa = RECORDS.of(cpu)[kind as usize].load(Ordering::Relaxed);
            if ipa == 0 {
                continue;
            }
            if let Some(&(_, other, other_kind)) = seen.iter().find(|s| s.0 == ipa) {
                problems.push(format!(
                    "{:?} record of CPU {cpu} is the {other_kind:?} record of CPU {other}: {ipa:#x}",
                    kind
                ));
            }
            seen.push((ipa, cpu, kind));
        }
    }
    problems
}

/// What the boot probe found the host to offer.
fn probed_offer() -> Result<Offer, String> {
    let offered = |name: PvFeature| match pv::report().state(name) {
        Some(State::Used) => Ok(true),
        Some(State::NotOffered) => Ok(false),
        other => Err(format!(
            "offer=probe: the boot probe does not say whether the host offers PV {name} \
             ({other:?}); say offer=all or offer=none"
        )),
    };
    Ok(Offer {
        time: offered(PvFeature::Time)?,
        lock: offered(PvFeature::Lock)?,
        sched: offered(PvFeature::Sched)?,
    })
}

/// Whether the SMCCC fuzz can run here: a raw call is answered.
pub fn available() -> bool {
    pv::raw_call([SMCCC_VERSION.into(), 0, 0, 0, 0, 0]).is_ok()
}

/// The offer `offer=` names, by the `pv:` line's names (time, lock, sched).
fn named_offer(names: &[&str]) -> Result<Offer, String> {
    let mut offer = Offer::NONE;
    for &name in names {
        match name {
            "time" => offer.time = true,
            "lock" => offer.lock = true,
            "sched" => offer.sched = true,
            _ => {
                return Err(format!(
                    "offer=: arm64 has no PV {name:?}; its features: time, lock, sched"
                ))
            }
        }
    }
    Ok(offer)
}

/// Runs the fuzz as `config` says; the app's exit status.
pub fn run(config: &Config) -> u8 {
    let offer = match config.offer.resolve(Offer::ALL, probed_offer, named_offer) {
        Ok(offer) => offer,
        Err(status) => return status,
    };
    let info = kernel::bootinfo::boot_info();
    let machine = Machine {
        offer,
        ram: info
            .memory
            .iter()
            .map(|r| (r.start as u64, r.end() as u64))
            .collect(),
        online_mpidr: smp::online_cpus().map(|c| info.cpu_hw_ids[c]).collect(),
        vcpus: info.cpus_in_fdt as u64,
    };
    let on_off = |b: bool| if b { "on" } else { "off" };
    kernel::println!(
        "hvcfuzz: {} calls on {} CPUs, seed {}; the host offers PV time {}, PV lock {}, PV sched {}",
        config.calls,
        smp::online_count(),
        config.seed,
        on_off(offer.time),
        on_off(offer.lock),
        on_off(offer.sched)
    );
    let tally = Tally::new();
    tally.run_on_every_cpu(config, |cpu, rng| {
        let (kind, call, expect) = generate(rng, &machine);
        let [a1, a2, a3] = call.args;
        let why = match pv::raw_call([call.function.into(), a1, a2, a3, 0, 0])
            .map(|r| [r[0], r[1], r[2], r[3]])
        {
            Ok(answer) => judge(answer, expect, cpu).map(|why| {
                let [x0, x1, x2, x3] = answer;
                (format!("[{x0:#x}, {x1:#x}, {x2:#x}, {x3:#x}]"), why)
            }),
            Err(e) => Some(("nothing".into(), format!("not issued: {e:?}"))),
        };
        let [a1, a2, a3] = call.args;
        let shown = format!("{:#x}({a1:#x}, {a2:#x}, {a3:#x})", call.function);
        (kind, why.map(|(answer, why)| (shown, answer, why)))
    });
    tally.finish(check_records_distinct())
}

#[cfg(test)]
mod tests;
