//! 95% confidence intervals for the report's ratios, by bootstrap over the
//! paired rounds, and the verdicts read from them.
//!
//! A ratio's figure is the median of its per-round values (each the ratio
//! of the two runs of one round). Its interval is the percentile
//! bootstrap: draw as many rounds as there are, with replacement, take the
//! median of the draw, [`RESAMPLES`] times; the 2.5% and 97.5% quantiles
//! of those medians bound the interval (Efron & Tibshirani, *An
//! Introduction to the Bootstrap*, ch. 13). With 5 rounds the interval is
//! coarse (a median of 5 draws takes one of 5 values) but honest: it says
//! how far the figure could move if the run were repeated.
//!
//! The draws come from a SplitMix64 generator (Steele, Lea & Flood 2014)
//! seeded from a constant, so the same rounds give the same interval in
//! every report: sixteen lines of arithmetic, not worth a dependency.

use serde::Serialize;

use super::stats::{quantile, sorted};

/// Bootstrap resamples per interval.
pub const RESAMPLES: usize = 10_000;
/// The interval's coverage.
pub const LEVEL: f64 = 0.95;
/// The generator's seed: any constant does; this one spells "lodger"
/// and 0x11.
const SEED: u64 = 0x6c6f_6467_6572_0011;

/// SplitMix64: a 64-bit counter through a mixing function.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform index below `n` (> 0), by multiply-shift (Lemire 2019);
    /// the bias, under 2^-50 for the few rounds here, does not matter.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

/// A median and its 95% bootstrap interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Ci {
    pub median: f64,
    pub low: f64,
    pub high: f64,
}

/// What a ratio's interval says about a bar: at least it, below it, or
/// cannot tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Met,
    NotMet,
    Inconclusive,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::NotMet => "not met",
            Verdict::Inconclusive => "inconclusive",
        }
    }

    /// Met only if every part is, not met if any part is not.
    pub fn all(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        verdicts
            .into_iter()
            .fold(Verdict::Met, |all, v| match (all, v) {
                (Verdict::NotMet, _) | (_, Verdict::NotMet) => Verdict::NotMet,
                (Verdict::Inconclusive, _) | (_, Verdict::Inconclusive) => Verdict::Inconclusive,
                (Verdict::Met, Verdict::Met) => Verdict::Met,
            })
    }
}

/// The widest interval adaptive rounds settle for: ±25% of the median.
pub const SETTLED_HALF_WIDTH: f64 = 0.25;

impl Ci {
    /// The median of `values` and its interval; `None` for no values (or
    /// a NaN among them).
    pub fn of(values: &[f64]) -> Option<Ci> {
        let sorted = sorted(values)?;
        let mut rng = SplitMix64(SEED);
        let mut draw = vec![0.0; sorted.len()];
        let mut medians: Vec<f64> = (0..RESAMPLES)
            .map(|_| {
                for d in draw.iter_mut() {
                    *d = sorted[rng.below(sorted.len())];
                }
                draw.sort_by(f64::total_cmp);
                quantile(&draw, 0.5)
            })
            .collect();
        medians.sort_by(f64::total_cmp);
        let tail = (1.0 - LEVEL) / 2.0;
        Some(Ci {
            median: quantile(&sorted, 0.5),
            low: quantile(&medians, tail),
            high: quantile(&medians, 1.0 - tail),
        })
    }

    /// Whether `x` lies within the interval (its bounds included: an
    /// interval that ends on 1x does not say "ahead").
    pub fn straddles(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }

    /// Whether the figure is at least `bar`: met when the whole interval
    /// is, not met when the whole interval is below it.
    pub fn at_least(&self, bar: f64) -> Verdict {
        if self.low >= bar {
            Verdict::Met
        } else if self.high < bar {
            Verdict::NotMet
        } else {
            Verdict::Inconclusive
        }
    }

    /// A ratio against 1x, in words: `ahead`, `behind` or `inconclusive`.
    pub fn against_one(&self) -> &'static str {
        if self.low > 1.0 {
            "ahead: the CI is above 1x"
        } else if self.high < 1.0 {
            "behind: the CI is below 1x"
        } else {
            "inconclusive: the CI straddles 1x"
        }
    }

    /// Wider than ±[`SETTLED_HALF_WIDTH`] of the median on either side.
    pub fn too_wide(&self) -> bool {
        let limit = SETTLED_HALF_WIDTH * self.median.abs();
        self.high - self.median > limit || self.median - self.low > limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_sample_gives_an_interval_around_its_median() {
        let values = [1.10, 1.31, 1.22, 1.45, 1.18, 1.27, 1.39];
        let ci = Ci::of(&values).unwrap();
        assert_eq!(ci.median, 1.27);
        assert!(ci.low < ci.median && ci.median < ci.high, "{ci:?}");
        // Within the sample's range, narrower than it.
        assert!(ci.low >= 1.10 && ci.high <= 1.45, "{ci:?}");
        assert!(ci.high - ci.low < 1.45 - 1.10, "{ci:?}");
        assert_eq!(ci.at_least(1.0), Verdict::Met);
        assert_eq!(ci.at_least(2.0), Verdict::NotMet);
        assert_eq!(ci.at_least(1.27), Verdict::Inconclusive);
        assert!(ci.against_one().starts_with("ahead"));
        // Reproducible: the same rounds, the same interval.
        assert_eq!(Ci::of(&values), Some(ci));
        // Order does not matter (the draws index the sorted rounds).
        let mut shuffled = values;
        shuffled.reverse();
        assert_eq!(Ci::of(&shuffled), Some(ci));
    }

    #[test]
    fn identical_ratios_give_a_zero_width_interval() {
        let ci = Ci::of(&[0.97; 6]).unwrap();
        assert_eq!((ci.low, ci.median, ci.high), (0.97, 0.97, 0.97));
        assert!(!ci.too_wide());
        assert_eq!(ci.at_least(0.98), Verdict::NotMet);
        assert!(ci.against_one().starts_with("behind"));
        let one = Ci::of(&[2.0]).unwrap();
        assert_eq!((one.low, one.high), (2.0, 2.0));
        assert_eq!(Ci::of(&[]), None);
        assert_eq!(Ci::of(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn a_sample_straddling_one_is_inconclusive() {
        let ci = Ci::of(&[0.8, 0.95, 1.02, 1.1, 1.25]).unwrap();
        assert!(ci.straddles(1.0), "{ci:?}");
        assert!(ci.against_one().starts_with("inconclusive"));
        assert_eq!(ci.at_least(1.0), Verdict::Inconclusive);
        // The overhead goal: PV-on throughput at least 98% of PV-off's.
        assert_eq!(ci.at_least(0.98), Verdict::Inconclusive);
        let tight = Ci::of(&[0.99, 1.0, 1.01, 0.995, 1.005]).unwrap();
        assert_eq!(tight.at_least(0.98), Verdict::Met);
        assert!(!tight.too_wide());
        assert!(Ci::of(&[0.5, 1.0, 2.0, 0.6, 1.7]).unwrap().too_wide());
    }

    #[test]
    fn verdicts_combine() {
        use Verdict::*;
        assert_eq!(Verdict::all([Met, Met]), Met);
        assert_eq!(Verdict::all([Met, Inconclusive]), Inconclusive);
        assert_eq!(Verdict::all([Inconclusive, NotMet, Met]), NotMet);
        assert_eq!(Verdict::all([]), Met);
    }

    #[test]
    fn indices_stay_in_range_and_cover_it() {
        let mut rng = SplitMix64(SEED);
        let mut seen = [0usize; 5];
        for _ in 0..10_000 {
            seen[rng.below(5)] += 1;
        }
        assert!(seen.iter().all(|&n| (1800..2200).contains(&n)), "{seen:?}");
    }
}
