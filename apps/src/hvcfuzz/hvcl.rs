//! The `hvcl 0x100` fuzz (LoongArch KVM): random service calls, every
//! answer checked against the ABI ([`Offer::answer`], `docs/abi.md`,
//! "LoongArch"), and a1..a5 checked to come back unchanged (the ABI
//! clobbers only a0).
//!
//! | kind | the call |
//! |---|---|
//! | random | any 64-bit a0, random a1..a5 |
//! | near | FUNC_IPI or FUNC_NOTIFY changed a little: ±1..4, an upper bit set (a0 is compared whole), a low bit flipped, negated; or 0, -1, 0x100, 2^63; random a1..a5 |
//! | known | FUNC_IPI with empty, single, full, online and random bitmaps and window bases at the edges (0, an online id, near 2^32, 2^32 + an online id, random); FUNC_NOTIFY with a1 = BIT(STEAL_TIME) and its neighbours, a2 = the CPU's own record again, or with bits 5:1 set |
//!
//! | call | answer |
//! |---|---|
//! | FUNC_IPI (a0 = 1), IPI offered | 0, whatever a1..a3 (ids with no vCPU skipped); every target gets a spurious SWI0 |
//! | FUNC_NOTIFY (a0 = 2), STEAL_TIME offered | -1 unless a1 = 4; -2 for an a2 with bits 5:1 set; else 0 |
//! | anything else, or not offered | -1 |
//!
//! Never issued (drawn again): an accepted FUNC_NOTIFY other than the
//! CPU's own registration again, which would move or drop the kernel's live
//! record and have the host write wherever a2 points
//! ([`arch::pv::loongarch::raw::refusal`]).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use arch::abi::loongarch::*;
use arch::pv::loongarch::raw::refusal;
use arch::pv::{PvFeature, State};
use kernel::{pv, smp};

use super::{Config, Kind, Rng, Tally};

const FUNCTIONS: [u64; 2] = [FUNC_IPI as u64, FUNC_NOTIFY as u64];

/// What the expectations and the edge arguments depend on.
#[derive(Debug, Clone)]
pub struct Machine {
    pub offer: Offer,
    /// The physical ids of the online CPUs.
    pub hw_ids: Vec<u64>,
}

/// One call: a0..a5.
pub type Regs = [u64; 6];

/// The a0 `regs` must get from a CPU whose live FUNC_NOTIFY a2 is
/// `registered`, or `None` if it must not be issued.
pub fn expect(regs: &Regs, m: &Machine, registered: Option<u64>) -> Option<i64> {
    if refusal(regs, registered).is_some() {
        return None;
    }
    Some(m.offer.answer(regs[0], regs[1], regs[2]))
}

/// A known function changed a little.
fn near(rng: &mut Rng) -> u64 {
    let base = rng.pick(&FUNCTIONS);
    match rng.below(6) {
        0 => base.wrapping_add(1 + rng.below(4)),
        1 => base.wrapping_sub(1 + rng.below(4)),
        2 => base | 1 << (32 + rng.below(32)),
        3 => base ^ 1 << rng.below(32),
        4 => base.wrapping_neg(),
        _ => rng.pick(&[0, u64::MAX, u64::from(HVCL_KVM_CODE), 1 << 63]),
    }
}

/// A 64-bit half of a target bitmap.
fn bitmap(rng: &mut Rng, m: &Machine) -> u64 {
    match rng.below(5) {
        0 => 0,
        1 => 1 << rng.below(64),
        2 => u64::MAX,
        3 => m
            .hw_ids
            .iter()
            .filter(|&&id| id < 64)
            .fold(0, |b, id| b | 1 << id),
        _ => rng.next(),
    }
}

/// a1..a5 at the edges of `function`.
fn edge_args(function: u64, rng: &mut Rng, m: &Machine, registered: Option<u64>) -> [u64; 5] {
    let mut a = [rng.next(), rng.next(), rng.next(), rng.next(), rng.next()];
    if function == u64::from(FUNC_IPI) {
        a[0] = bitmap(rng, m);
        a[1] = if rng.chance(2) { 0 } else { bitmap(rng, m) };
        let id = rng.pick(&m.hw_ids);
        a[2] = match rng.below(5) {
            0 => 0,
            1 => id,
            2 => u64::from(u32::MAX) - rng.below(IPI_WINDOW_CPUS),
            // KVM keeps the low 32 bits: the same window as `id`.
            3 => 1 << 32 | id,
            _ => rng.next(),
        };
    } else if function == u64::from(FUNC_NOTIFY) {
        a[0] = match rng.below(4) {
            0 | 1 => NOTIFY_STEAL_TIME,
            2 => rng.pick(&[0, 1, 2, 3, 5, 8, NOTIFY_STEAL_TIME | 1 << 32, u64::MAX]),
            _ => rng.next(),
        };
        // Bits 5:1, never all clear.
        let low = (1 + rng.below(31)) << 1;
        let own = registered.unwrap_or_else(|| rng.next());
        a[1] = match rng.below(4) {
            0 => own,
            1 => own | low,
            2 => rng.next() | low,
            _ => rng.next(),
        };
    }
    a
}

/// The next call to issue from a CPU whose live FUNC_NOTIFY a2 is
/// `registered`, with its kind and answer.
pub fn generate(rng: &mut Rng, m: &Machine, registered: Option<u64>) -> (Kind, Regs, i64) {
    loop {
        let kind = Kind::draw(rng);
        let a0 = match kind {
            Kind::Random => rng.next(),
            Kind::Near => near(rng),
            Kind::Known => rng.pick(&FUNCTIONS),
        };
        let a = match kind {
            Kind::Known => edge_args(a0, rng, m, registered),
            _ => [rng.next(), rng.next(), rng.next(), rng.next(), rng.next()],
        };
        let regs = [a0, a[0], a[1], a[2], a[3], a[4]];
        if let Some(answer) = expect(&regs, m, registered) {
            return (kind, regs, answer);
        }
    }
}

/// Why `after` (a0..a5 after the call) is not what the ABI says for
/// `regs`, or `None` if it is.
pub fn judge(regs: &Regs, after: &Regs, answer: i64) -> Option<String> {
    if after[0] != answer as u64 {
        return Some(format!("expected {answer}"));
    }
    (1..6)
        .find(|&i| after[i] != regs[i])
        .map(|i| format!("a{i} changed from {:#x} (only a0 is clobbered)", regs[i]))
}

/// `[0x1, 0x2, ...]`.
fn hex(regs: &Regs) -> String {
    let [a0, a1, a2, a3, a4, a5] = regs;
    format!("[{a0:#x}, {a1:#x}, {a2:#x}, {a3:#x}, {a4:#x}, {a5:#x}]")
}

/// Whether the hvcl fuzz can run here: the probe found KVM's signature.
pub fn available() -> bool {
    // a0 = 0 is no function: answered -1, changes nothing.
    pv::raw_call([0; 6]).is_ok()
}

fn named_offer(names: &[&str]) -> Result<Offer, String> {
    let mut offer = Offer::NONE;
    for &name in names {
        match name {
            "time" => offer.time = true,
            "ipi" => offer.ipi = true,
            "preempt" => offer.preempt = true,
            _ => {
                return Err(format!(
                    "offer=: LoongArch has no PV {name:?}; its features: time, ipi, preempt"
                ))
            }
        }
    }
    Ok(offer)
}

/// What the boot probe found the host to offer.
fn probed_offer() -> Result<Offer, String> {
    let offered = |name: PvFeature| match pv::report().state(name) {
        Some(State::Used) => Ok(true),
        Some(State::NotOffered) => Ok(false),
        other => Err(format!(
            "offer=probe: the boot probe does not say whether the host offers {name} \
             ({other:?}); say offer=all, none or a list"
        )),
    };
    Ok(Offer {
        time: offered(PvFeature::Time)?,
        ipi: offered(PvFeature::Ipi)?,
        preempt: pv::report().state(PvFeature::Preempt) != Some(State::NotOffered),
    })
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
        hw_ids: smp::online_cpus().map(|c| info.cpu_hw_ids[c]).collect(),
    };
    let on_off = |b: bool| if b { "on" } else { "off" };
    kernel::println!(
        "hvcfuzz: {} hvcl calls on {} CPUs, seed {}; the host offers IPI {}, STEAL_TIME {}",
        config.calls,
        smp::online_count(),
        config.seed,
        on_off(offer.ipi),
        on_off(offer.time),
    );
    let tally = Tally::new();
    tally.run_on_every_cpu(config, |_, rng| {
        // This CPU's, read on it (the job runs on the CPU it is for).
        let registered = pv::raw_hvcl_registration();
        let (kind, regs, answer) = generate(rng, &machine, registered);
        let why = match pv::raw_call(regs) {
            Ok(after) => judge(&regs, &after, answer).map(|why| (hex(&after), why)),
            Err(e) => Some(("nothing".into(), format!("not issued: {e:?}"))),
        };
        let shown = format!("hvcl 0x100 a0..a5 = {}", hex(&regs));
        (kind, why.map(|(after, why)| (shown, after, why)))
    });
    tally.finish(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: u64 = 0x0123_4540 | STEAL_PHYS_VALID;

    fn machine(offer: Offer) -> Machine {
        Machine {
            offer,
            hw_ids: Vec::from([0, 1, 2, 3]),
        }
    }

    #[test]
    fn answers_as_the_abi_says() {
        let m = machine(Offer::ALL);
        let ask = |a0, a1, a2| expect(&[a0, a1, a2, 0, 0, 0], &m, Some(OWN));
        assert_eq!(ask(1, u64::MAX, 7), Some(SUCCESS));
        assert_eq!(ask(2, 4, OWN), Some(SUCCESS));
        assert_eq!(ask(2, 4, OWN | 0x20), Some(INVALID_PARAMETER));
        assert_eq!(ask(2, 5, OWN), Some(NOT_IMPLEMENTED));
        assert_eq!(ask(1 << 32 | 1, 1, 0), Some(NOT_IMPLEMENTED));
        // Would move or drop the record: not issued.
        assert_eq!(ask(2, 4, 0), None);
        assert_eq!(ask(2, 4, OWN + 0x40), None);
        let none = machine(Offer::NONE);
        assert_eq!(
            expect(&[1, 1, 0, 0, 0, 0], &none, None),
            Some(NOT_IMPLEMENTED)
        );
        assert_eq!(
            expect(&[2, 4, 2, 0, 0, 0], &none, None),
            Some(NOT_IMPLEMENTED)
        );
    }

    #[test]
    fn judges_a0_and_the_kept_registers() {
        let regs = [1, 2, 3, 4, 5, 6];
        assert_eq!(judge(&regs, &[0, 2, 3, 4, 5, 6], SUCCESS), None);
        assert!(judge(&regs, &[u64::MAX, 2, 3, 4, 5, 6], SUCCESS)
            .unwrap()
            .contains("expected 0"));
        let why = judge(&regs, &[0, 2, 3, 4, 0, 6], SUCCESS).unwrap();
        assert!(why.contains("a4 changed"), "{why}");
    }

    #[test]
    fn the_generator_mixes_kinds_and_plans_only_safe_calls() {
        for (offer, registered) in [(Offer::ALL, Some(OWN)), (Offer::NONE, None)] {
            let m = machine(offer);
            let mut rng = Rng::new(7);
            let mut kinds = [0; 3];
            let mut answers = [0; 3];
            for _ in 0..100_000 {
                let (kind, regs, answer) = generate(&mut rng, &m, registered);
                kinds[kind as usize] += 1;
                assert!(refusal(&regs, registered).is_none(), "{regs:x?}");
                answers[(-answer) as usize] += 1;
            }
            assert!(kinds.iter().all(|&k| k > 30_000), "{kinds:?}");
            if offer == Offer::ALL {
                // Every answer the ABI has, often.
                assert!(answers.iter().all(|&a| a > 5_000), "{answers:?}");
            } else {
                assert_eq!(answers[1], 100_000);
            }
        }
    }
}
