//! Hypercall fuzzing: random hypercalls from every CPU, every answer checked
//! against what the host must answer.
//!
//! ```text
//! app=hvcfuzz -- [calls=20000] [seed=1] [offer=probe|all|none|FEATURE,...]
//! ```
//!
//! Every online CPU issues its share of `calls`, from a generator of its own
//! (seeded from `seed` and the CPU), through the kernel's raw call of the
//! architecture's convention:
//!
//! | arch | calls | the ABI it checks | module |
//! |---|---|---|---|
//! | arm64 | SMCCC on the FDT's conduit ([`kernel::pv::raw_call`]) | PSCI, SMCCC, KVM's vendor calls, PV time, PV lock v2, PV sched | [`smccc`] |
//! | LoongArch | `hvcl 0x100` ([`kernel::pv::raw_call`]) | FUNC_IPI, FUNC_NOTIFY, -1 for the rest; a1..a5 kept | [`hvcl`] |
//!
//! Each call is random, near a known one, or a known one with arguments
//! at its edges ([`Kind`]), a third of the time each; calls that could take
//! a CPU, the machine or the kernel's memory away from it are never issued
//! (each module says which).
//!
//! `offer=`: which features the host offers, since the answers differ:
//! `probe` (default) takes what the boot probe found; `all`, `none` or a list
//! by the `pv:` line's names (arm64 `time,lock,sched`, LoongArch
//! `time,ipi,preempt`: xtask's `--offer`) say it, so that a host lying to the
//! probe and to the fuzz alike is still caught (the boot tests say it).
//!
//! Output: the first mismatches (`hvcfuzz: mismatch ...`), then
//! `hvcfuzz: calls=N ok=N mismatches=M` and the mix of kinds. Status 0 only
//! with no mismatch; 1 as well where no raw call can be issued (arm64
//! without SMCCC >= 1.1, `pv=off`, LoongArch without KVM's signature).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use kernel::exit::status;
use kernel::pv::{self, RawConvention};
use kernel::smp;

pub mod hvcl;
pub mod smccc;

/// SplitMix64: small, well mixed, reproducible per seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the bias is far below what matters here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }

    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// How a call was made up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Random = 0,
    Near = 1,
    Known = 2,
}

impl Kind {
    pub fn draw(rng: &mut Rng) -> Kind {
        match rng.below(3) {
            0 => Kind::Random,
            1 => Kind::Near,
            _ => Kind::Known,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Random => "random",
            Kind::Near => "near",
            Kind::Known => "known",
        }
    }
}

/// `offer=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferArg<'a> {
    Probe,
    All,
    /// These features only (`none`: empty), by the `pv:` line's names.
    List(Vec<&'a str>),
}

impl OfferArg<'_> {
    /// The offer this argument names, for an ABI whose offer with every
    /// feature is `all`, as the boot probe saw it (`probed`) or from a list
    /// of feature names (`named`); a bad one is logged and is the app's
    /// usage status.
    pub fn resolve<O>(
        &self,
        all: O,
        probed: impl FnOnce() -> Result<O, String>,
        named: impl FnOnce(&[&str]) -> Result<O, String>,
    ) -> Result<O, u8> {
        let offer = match self {
            OfferArg::Probe => probed(),
            OfferArg::All => Ok(all),
            OfferArg::List(names) => named(names),
        };
        offer.map_err(|why| {
            log::error!("{why}");
            status::USAGE
        })
    }
}

pub struct Config<'a> {
    pub calls: u64,
    pub seed: u64,
    pub offer: OfferArg<'a>,
}

fn parse<'a>(args: &[&'a str]) -> Result<Config<'a>, String> {
    let mut config = Config {
        calls: 20_000,
        seed: 1,
        offer: OfferArg::Probe,
    };
    for &arg in args {
        match arg.split_once('=') {
            Some(("calls", n)) => {
                config.calls = n
                    .parse()
                    .ok()
                    .filter(|n| (1..=100_000_000).contains(n))
                    .ok_or(format!("bad `{arg}`: expected calls=N, 1 <= N <= 10^8"))?;
            }
            Some(("seed", n)) => {
                config.seed = n
                    .parse()
                    .map_err(|_| format!("bad `{arg}`: expected seed=N"))?;
            }
            Some(("offer", "probe")) => config.offer = OfferArg::Probe,
            Some(("offer", "all")) => config.offer = OfferArg::All,
            Some(("offer", "none")) => config.offer = OfferArg::List(Vec::new()),
            Some(("offer", list)) if !list.is_empty() => {
                config.offer = OfferArg::List(list.split(',').collect())
            }
            _ => {
                return Err(format!(
                    "unknown argument `{arg}`; valid: calls=N, seed=N, \
                     offer=probe|all|none|FEATURE[,FEATURE...]"
                ))
            }
        }
    }
    Ok(config)
}

/// How many mismatches are printed in full.
const SHOWN_MISMATCHES: usize = 10;

/// A mismatch: the call as issued, the answer, why it is wrong.
pub type Mismatch = (String, String, String);

/// The counts of a run, shared by every CPU.
pub struct Tally {
    ok: AtomicU64,
    mismatches: AtomicU64,
    kinds: [AtomicU64; 3],
    shown: AtomicUsize,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            ok: AtomicU64::new(0),
            mismatches: AtomicU64::new(0),
            kinds: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            shown: AtomicUsize::new(0),
        }
    }

    /// Every online CPU makes its share of `config.calls` calls with `one`
    /// (given the CPU and its generator: the kind and any mismatch).
    pub fn run_on_every_cpu(
        &self,
        config: &Config,
        one: impl Fn(usize, &mut Rng) -> (Kind, Option<Mismatch>) + Sync,
    ) {
        let cpus = smp::online_count() as u64;
        smp::run_on_all(&|cpu| {
            let rank = smp::online_cpus().position(|c| c == cpu).unwrap_or(0) as u64;
            let share = config.calls / cpus + u64::from(rank < config.calls % cpus);
            let mut rng =
                Rng::new(config.seed ^ (cpu as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F));
            for _ in 0..share {
                let (kind, mismatch) = one(cpu, &mut rng);
                self.kinds[kind as usize].fetch_add(1, Ordering::Relaxed);
                let Some((call, answer, why)) = mismatch else {
                    self.ok.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                self.mismatches.fetch_add(1, Ordering::Relaxed);
                if self.shown.fetch_add(1, Ordering::Relaxed) < SHOWN_MISMATCHES {
                    kernel::println!(
                        "hvcfuzz: mismatch cpu={cpu} kind={} call={call} got {answer}: {why}",
                        kind.name(),
                    );
                }
            }
        });
    }

    /// Prints the result, with `more` mismatches found after the calls;
    /// the exit status.
    pub fn finish(&self, more: Vec<String>) -> u8 {
        for problem in &more {
            kernel::println!("hvcfuzz: mismatch: {problem}");
        }
        let mismatches = self.mismatches.load(Ordering::Relaxed) + more.len() as u64;
        let calls: u64 = self.kinds.iter().map(|k| k.load(Ordering::Relaxed)).sum();
        kernel::println!(
            "hvcfuzz: calls={calls} ok={} mismatches={mismatches}",
            self.ok.load(Ordering::Relaxed)
        );
        kernel::println!(
            "hvcfuzz: mix random={} near={} known={}",
            self.kinds[0].load(Ordering::Relaxed),
            self.kinds[1].load(Ordering::Relaxed),
            self.kinds[2].load(Ordering::Relaxed)
        );
        if mismatches == 0 {
            status::SUCCESS
        } else {
            status::FAILURE
        }
    }
}

pub fn main(args: &[&str]) -> u8 {
    let config = match parse(args) {
        Ok(config) => config,
        Err(why) => {
            log::error!("{why}");
            return status::USAGE;
        }
    };
    match pv::raw_convention() {
        RawConvention::Smccc if smccc::available() => smccc::run(&config),
        RawConvention::Hvcl if hvcl::available() => hvcl::run(&config),
        _ => {
            log::error!(
                "hvcfuzz: no raw hypercalls here (arm64: no SMCCC >= 1.1 found; LoongArch: \
                 no KVM signature; or pv=off)"
            );
            status::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_by_name() {
        assert_eq!(parse(&[]).unwrap().offer, OfferArg::Probe);
        assert_eq!(parse(&["offer=all"]).unwrap().offer, OfferArg::All);
        assert_eq!(
            parse(&["offer=none"]).unwrap().offer,
            OfferArg::List(Vec::new())
        );
        assert_eq!(
            parse(&["offer=time,ipi"]).unwrap().offer,
            OfferArg::List(Vec::from(["time", "ipi"]))
        );
        assert!(parse(&["offer="]).is_err());
        assert!(parse(&["calls=0"]).is_err());
    }
}
