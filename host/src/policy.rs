//! The preemption injector's schedules: when each vCPU loses its pCPU.
//!
//! Time is the host counter in nanoseconds (CNTPCT_EL0 scaled), the same on
//! every pCPU, so phases between CPUs mean something. A schedule yields
//! *windows* `[start_ns, end_ns)` during which the vCPU may not run.
//!
//! | policy | windows of vCPU `c` |
//! |---|---|
//! | `none` | never |
//! | `periodic:P,S[,F]` | every `P` µs, the last `S` % of each period; CPU `c`'s periods start `c * F` µs later (mod `P`) |
//! | `random:SEED,R,T` | run `~Exp(R)` µs, then stolen `~Exp(T)` µs, and again; one generator per CPU, seeded from `SEED` and `c` |
//!
//! Any policy may end at a set time: `POLICY@STOP_MS` preempts no vCPU at or
//! after `STOP_MS` milliseconds of host time (a window under way then is cut
//! short). A guest that reads its steal clock after that time reads all the
//! steal there will be, so a test can compare it with the ground truth
//! exactly (pvhost cannot see a guest begin to exit: no ABI call says so,
//! and its console writes go straight to the UART).

use core::fmt;

const NS_PER_US: u64 = 1_000;
const NS_PER_MS: u64 = 1_000_000;

/// `pvhost.steal=`: how the injector preempts each vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    None,
    Periodic {
        period_us: u64,
        /// Per cent of each period stolen (1..=99).
        share_pct: u64,
        /// Offset of CPU `c`'s periods: `c * phase_us` (mod the period).
        phase_us: u64,
    },
    Random {
        seed: u64,
        mean_run_us: u64,
        mean_steal_us: u64,
    },
}

/// Why a policy string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyError(pub &'static str);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The usage text of the policy syntax.
pub const POLICY_SYNTAX: &str =
    "(none | periodic:PERIOD_US,SHARE_PCT[,PHASE_US] | random:SEED,MEAN_RUN_US,MEAN_STEAL_US)[@STOP_MS]";

/// Parses a decimal number.
pub fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Up to `N` comma-separated numbers; `None` if any is malformed or there
/// are more than `N`.
fn numbers<const N: usize>(s: &str) -> Option<([u64; N], usize)> {
    let mut out = [0; N];
    let mut n = 0;
    for part in s.split(',') {
        if n == N {
            return None;
        }
        out[n] = parse_u64(part)?;
        n += 1;
    }
    Some((out, n))
}

impl Policy {
    pub fn parse(s: &str) -> Result<Policy, PolicyError> {
        if s == "none" {
            return Ok(Policy::None);
        }
        if let Some(rest) = s.strip_prefix("periodic:") {
            let (v, n) = numbers::<3>(rest)
                .filter(|&(_, n)| n >= 2)
                .ok_or(PolicyError(
                    "periodic wants PERIOD_US,SHARE_PCT[,PHASE_US] (decimal)",
                ))?;
            if v[0] == 0 {
                return Err(PolicyError("periodic: PERIOD_US must be at least 1"));
            }
            if !(1..=99).contains(&v[1]) {
                return Err(PolicyError("periodic: SHARE_PCT must be 1..=99"));
            }
            return Ok(Policy::Periodic {
                period_us: v[0],
                share_pct: v[1],
                phase_us: if n == 3 { v[2] } else { 0 },
            });
        }
        if let Some(rest) = s.strip_prefix("random:") {
            let (v, _) = numbers::<3>(rest)
                .filter(|&(_, n)| n == 3)
                .ok_or(PolicyError(
                    "random wants SEED,MEAN_RUN_US,MEAN_STEAL_US (decimal)",
                ))?;
            if v[1] == 0 || v[2] == 0 {
                return Err(PolicyError("random: the means must be at least 1 us"));
            }
            return Ok(Policy::Random {
                seed: v[0],
                mean_run_us: v[1],
                mean_steal_us: v[2],
            });
        }
        Err(PolicyError("unknown steal policy"))
    }

    pub fn is_none(self) -> bool {
        self == Policy::None
    }
}

/// `pvhost.steal=POLICY[@STOP_MS]`: a policy, and when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steal {
    pub policy: Policy,
    /// Host time (ms since the counter started) from which no vCPU is
    /// preempted; `None`: never stops.
    pub stop_ms: Option<u64>,
}

impl Steal {
    /// No preemption at all.
    pub const NONE: Steal = Steal {
        policy: Policy::None,
        stop_ms: None,
    };

    pub fn parse(s: &str) -> Result<Steal, PolicyError> {
        let (policy, stop_ms) = match s.split_once('@') {
            None => (s, None),
            Some((policy, stop)) => {
                let stop = parse_u64(stop)
                    .filter(|&ms| ms <= u64::MAX / NS_PER_MS)
                    .ok_or(PolicyError("@STOP_MS wants a decimal number of ms"))?;
                (policy, Some(stop))
            }
        };
        Ok(Steal {
            policy: Policy::parse(policy)?,
            stop_ms,
        })
    }

    fn stop_ns(self) -> Option<u64> {
        self.stop_ms.map(|ms| ms * NS_PER_MS)
    }
}

impl fmt::Display for Steal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.policy)?;
        match self.stop_ms {
            Some(ms) => write!(f, "@{ms}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Policy::None => f.write_str("none"),
            Policy::Periodic {
                period_us,
                share_pct,
                phase_us,
            } => write!(f, "periodic:{period_us},{share_pct},{phase_us}"),
            Policy::Random {
                seed,
                mean_run_us,
                mean_steal_us,
            } => write!(f, "random:{seed},{mean_run_us},{mean_steal_us}"),
        }
    }
}

/// SplitMix64: a small, well-mixed generator; one per vCPU.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Exponentially distributed with mean `mean` (inverse transform).
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * ln(self.unit())
    }
}

/// Natural logarithm of `x > 0` without `std`: `x = m * 2^e` with `m` in
/// [1, 2), `ln m = 2 atanh((m-1)/(m+1))` by its series (|z| <= 1/3, so 20
/// terms are far below f64 precision).
pub fn ln(x: f64) -> f64 {
    debug_assert!(x > 0.0);
    const LN_2: f64 = core::f64::consts::LN_2;
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | (1023u64 << 52));
    let z = (m - 1.0) / (m + 1.0);
    let z2 = z * z;
    let mut term = z;
    let mut sum = 0.0;
    let mut k = 1.0;
    for _ in 0..20 {
        sum += term / k;
        term *= z2;
        k += 2.0;
    }
    exponent as f64 * LN_2 + 2.0 * sum
}

/// One vCPU's schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    policy: Policy,
    stop_ns: Option<u64>,
    cpu: u64,
    /// Random: where the next run period starts.
    cursor_ns: u64,
    rng: SplitMix64,
}

impl Schedule {
    /// The schedule of vCPU `cpu`, starting at `start_ns`.
    pub fn new(steal: Steal, cpu: usize, start_ns: u64) -> Self {
        let policy = steal.policy;
        let seed = match policy {
            Policy::Random { seed, .. } => {
                seed ^ (cpu as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F)
            }
            _ => 0,
        };
        Self {
            policy,
            stop_ns: steal.stop_ns(),
            cpu: cpu as u64,
            cursor_ns: start_ns,
            rng: SplitMix64::new(seed),
        }
    }

    /// The next window that ends after `now_ns`, its start clipped to
    /// `now_ns` (a window already under way is shortened, never moved) and
    /// its end to the stop time. `None`: never preempted again.
    pub fn next_window(&mut self, now_ns: u64) -> Option<(u64, u64)> {
        let (start, end) = self.policy_window(now_ns)?;
        match self.stop_ns {
            Some(stop) if start >= stop => None,
            Some(stop) => Some((start, end.min(stop))),
            None => Some((start, end)),
        }
    }

    /// [`Schedule::next_window`] as the policy alone has it.
    fn policy_window(&mut self, now_ns: u64) -> Option<(u64, u64)> {
        match self.policy {
            Policy::None => None,
            Policy::Periodic {
                period_us,
                share_pct,
                phase_us,
            } => {
                let period = period_us * NS_PER_US;
                let steal = period * share_pct / 100;
                let offset = (self.cpu * phase_us * NS_PER_US) % period;
                // Period k spans [offset + k P, offset + (k+1) P); its window
                // is the last `steal` ns of it.
                let k = now_ns.saturating_sub(offset) / period;
                let mut end = offset + (k + 1) * period;
                if end <= now_ns {
                    end += period;
                }
                let start = end - steal;
                Some((start.max(now_ns), end))
            }
            Policy::Random {
                mean_run_us,
                mean_steal_us,
                ..
            } => loop {
                let run = self.rng.exponential((mean_run_us * NS_PER_US) as f64) as u64;
                let steal = self.rng.exponential((mean_steal_us * NS_PER_US) as f64) as u64;
                let start = self.cursor_ns.saturating_add(run);
                let end = start.saturating_add(steal.max(1));
                self.cursor_ns = end;
                if end > now_ns {
                    return Some((start.max(now_ns), end));
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_policy() {
        assert_eq!(Policy::parse("none"), Ok(Policy::None));
        assert_eq!(
            Policy::parse("periodic:1000,50"),
            Ok(Policy::Periodic {
                period_us: 1000,
                share_pct: 50,
                phase_us: 0
            })
        );
        assert_eq!(
            Policy::parse("periodic:1000,25,100"),
            Ok(Policy::Periodic {
                period_us: 1000,
                share_pct: 25,
                phase_us: 100
            })
        );
        assert_eq!(
            Policy::parse("random:7,500,100"),
            Ok(Policy::Random {
                seed: 7,
                mean_run_us: 500,
                mean_steal_us: 100
            })
        );
        for p in ["none", "periodic:1000,25,100", "random:7,500,100"] {
            assert_eq!(Policy::parse(p).unwrap().to_string(), p);
            assert_eq!(Steal::parse(p).unwrap().to_string(), p);
            let stopping = format!("{p}@2500");
            assert_eq!(Steal::parse(&stopping).unwrap().to_string(), stopping);
        }
        assert_eq!(
            Steal::parse("periodic:1000,50@3"),
            Ok(Steal {
                policy: Policy::Periodic {
                    period_us: 1000,
                    share_pct: 50,
                    phase_us: 0
                },
                stop_ms: Some(3)
            })
        );
    }

    #[test]
    fn refuses_bad_policies() {
        for bad in [
            "",
            "periodic",
            "periodic:",
            "periodic:1000",
            "periodic:1000,0",
            "periodic:1000,100",
            "periodic:0,50",
            "periodic:1000,50,1,2",
            "periodic:1000,-5",
            "periodic:1e3,50",
            "periodic:1000,,50",
            "random:1,2",
            "random:1,0,5",
            "random:1,5,0",
            "random:x,1,1",
            "sometimes",
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad:?}");
            assert!(Steal::parse(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "none@",
            "@5",
            "periodic:1000,50@x",
            "periodic:1000,50@1@2",
            "periodic:1000,50@-1",
            "none@99999999999999999999",
        ] {
            assert!(Steal::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ln_matches_std() {
        for x in [1e-12, 1e-6, 0.001, 0.1, 0.5, 0.75, 1.0, 1.5, 2.0, 10.0, 1e9] {
            let err = (ln(x) - x.ln()).abs();
            assert!(err < 1e-12 * x.ln().abs().max(1.0), "ln({x}): {err}");
        }
    }

    #[test]
    fn periodic_windows_take_the_share_at_the_end_of_each_period() {
        let p = Policy::parse("periodic:1000,25").unwrap();
        let mut s = Schedule::new(steal(p), 0, 0);
        assert_eq!(s.next_window(0), Some((750_000, 1_000_000)));
        assert_eq!(s.next_window(1_000_000), Some((1_750_000, 2_000_000)));
        // Inside a window: the rest of it.
        assert_eq!(s.next_window(1_800_000), Some((1_800_000, 2_000_000)));
        // Stolen share over many periods.
        let (mut now, mut stolen) = (0, 0);
        while now < 100_000_000 {
            let (start, end) = s.next_window(now).unwrap();
            stolen += end - start;
            now = end;
        }
        assert_eq!(stolen, 25_000_000);
    }

    #[test]
    fn periodic_phase_shifts_each_cpu() {
        let p = Policy::parse("periodic:1000,50,300").unwrap();
        let w = |cpu| {
            Schedule::new(steal(p), cpu, 0)
                .next_window(10_000_000)
                .unwrap()
        };
        assert_eq!(w(0), (10_500_000, 11_000_000));
        // CPU 1's periods end at 0.3 ms past each ms: its window
        // [9.8 ms, 10.3 ms) is under way, so only its rest is returned.
        assert_eq!(w(1), (10_000_000, 10_300_000));
        // 4 * 300 us = 1200 us = one period and 200 us.
        assert_eq!(w(4), (10_000_000, 10_200_000));
        assert_eq!(w(2), (10_100_000, 10_600_000));
    }

    #[test]
    fn random_is_reproducible_per_seed_and_cpu_with_the_right_means() {
        let p = Policy::parse("random:42,500,100").unwrap();
        let windows = |cpu, n| {
            let mut s = Schedule::new(steal(p), cpu, 0);
            let mut now = 0;
            let mut out = Vec::new();
            for _ in 0..n {
                let w = s.next_window(now).unwrap();
                now = w.1;
                out.push(w);
            }
            out
        };
        assert_eq!(windows(0, 50), windows(0, 50));
        assert_ne!(windows(0, 50), windows(1, 50));
        let many = windows(0, 20_000);
        let stolen: u64 = many.iter().map(|(s, e)| e - s).sum();
        let mean_steal_us = stolen as f64 / many.len() as f64 / 1e3;
        let mean_cycle_us = many.last().unwrap().1 as f64 / many.len() as f64 / 1e3;
        assert!((mean_steal_us - 100.0).abs() < 5.0, "{mean_steal_us}");
        assert!((mean_cycle_us - 600.0).abs() < 20.0, "{mean_cycle_us}");
        // Windows never overlap and never go back in time.
        assert!(many.windows(2).all(|w| w[0].1 <= w[1].0 && w[0].0 < w[0].1));
    }

    #[test]
    fn none_never_preempts() {
        assert_eq!(Schedule::new(Steal::NONE, 3, 5).next_window(7), None);
    }

    #[test]
    fn a_stop_time_cuts_the_window_under_way_and_ends_the_rest() {
        // Windows [0.75, 1), [1.75, 2), ... ms; stop at 2 ms, then at 1.8 ms.
        let mut s = Schedule::new(Steal::parse("periodic:1000,25@2").unwrap(), 0, 0);
        assert_eq!(s.next_window(1_000_000), Some((1_750_000, 2_000_000)));
        assert_eq!(s.next_window(2_000_000), None);
        let mut s = Schedule::new(Steal::parse("random:1,500,100@5").unwrap(), 0, 0);
        let mut now = 0;
        while let Some((start, end)) = s.next_window(now) {
            assert!(start < end && end <= 5_000_000, "{start}..{end}");
            now = end;
        }
        assert!(now > 4_000_000, "windows stopped early, at {now}");
    }

    fn steal(policy: Policy) -> Steal {
        Steal {
            policy,
            stop_ms: None,
        }
    }
}
