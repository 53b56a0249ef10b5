//! Lock contention on every CPU, per lock kind.
//!
//! ```text
//! app=lockstorm -- [kinds=tas,ticket,mcs,qspinlock] [ms=300 | acq=N]
//!                  [cs=50] [out=100] [cpus=N] [slowpath=boot|halt|spin|both]
//! ```
//!
//! The first `cpus` online CPUs (default: all; `cpus=1` measures the
//! uncontended cost) loop: take the lock, do `cs` units of work and bump a
//! plain (non-atomic) counter inside, release, do `out` units outside. Timed
//! (`ms=`) or a fixed total of acquisitions (`acq=`, split across CPUs: the
//! stress test). For each kind (and qspinlock slow path) one line:
//!
//! ```text
//! lockstorm: kind=qspinlock slowpath=halt cpus=4 cs=50 out=100 acquisitions=N
//!   elapsed_ns=T per_sec=R fair_min=F fair_max=G p50_ns=A p99_ns=B max_ns=C lost=0
//! ```
//! (on one line). `fair_min`/`fair_max` are the smallest and largest per-CPU
//! share of acquisitions divided by the fair share (1.0 = perfectly fair);
//! latencies are from the lock call to holding the lock, in guest time,
//! from a log-linear histogram (within 12.5%). Any lost update fails the run.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use core::time::Duration;

use kernel::exit::status;
use kernel::sync::{LockKind, RawLock, SpinLock};
use kernel::{pv, smp, time, with_lock_kind};

/// Log-linear latency histogram: exact below 16 ns, then 8 buckets per
/// power of two.
const SUB_BUCKETS: u64 = 8;
const BUCKETS: usize = 16 + 60 * SUB_BUCKETS as usize;

fn bucket(ns: u64) -> usize {
    if ns < 16 {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros() as u64; // >= 4
    let mantissa = (ns >> (exp - 3)) & (SUB_BUCKETS - 1);
    (16 + (exp - 4) * SUB_BUCKETS + mantissa) as usize
}

/// Lower bound of a bucket in ns.
fn bucket_floor(index: usize) -> u64 {
    if index < 16 {
        return index as u64;
    }
    let i = index as u64 - 16;
    let exp = i / SUB_BUCKETS + 4;
    let mantissa = i % SUB_BUCKETS;
    (1 << exp) | (mantissa << (exp - 3))
}

struct Histogram {
    counts: Vec<AtomicU32>,
    max_ns: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            max_ns: AtomicU64::new(0),
        }
    }

    fn record(&self, ns: u64) {
        self.counts[bucket(ns).min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// The latency at or below which `permille`/1000 of the samples fall.
    fn percentile(&self, permille: u64) -> u64 {
        let total: u64 = self
            .counts
            .iter()
            .map(|c| u64::from(c.load(Ordering::Relaxed)))
            .sum();
        let target = (total * permille).div_ceil(1000).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += u64::from(c.load(Ordering::Relaxed));
            if seen >= target {
                return bucket_floor(i);
            }
        }
        0
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SlowPath {
    /// As chosen at boot.
    Boot,
    Halt,
    Spin,
}

impl SlowPath {
    fn name(self) -> &'static str {
        match self {
            SlowPath::Boot if pv::lock_slow_path_is_pv() => "halt",
            SlowPath::Boot => "spin",
            SlowPath::Halt => "halt",
            SlowPath::Spin => "spin",
        }
    }
}

#[derive(Clone, Copy)]
enum Amount {
    For(Duration),
    Total(u64),
}

struct Config {
    kinds: Vec<LockKind>,
    amount: Amount,
    cs: u32,
    out: u32,
    slow_paths: Vec<SlowPath>,
    cpus: usize,
}

fn parse(args: &[&str]) -> Result<Config, String> {
    let mut config = Config {
        kinds: LockKind::ALL.to_vec(),
        amount: Amount::For(Duration::from_millis(300)),
        cs: 50,
        out: 100,
        slow_paths: Vec::from([SlowPath::Boot]),
        cpus: smp::online_count(),
    };
    let number = |arg: &str, v: &str, min: u64, max: u64| -> Result<u64, String> {
        v.parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or(format!("bad `{arg}`: expected a number in {min}..={max}"))
    };
    for &arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(format!("malformed `{arg}`: expected key=value"));
        };
        match key {
            "kinds" => {
                config.kinds = value
                    .split(',')
                    .map(|name| {
                        LockKind::from_name(name).ok_or(format!(
                            "unknown lock kind `{name}`; valid: {}",
                            LockKind::ALL.map(LockKind::name).join(",")
                        ))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "ms" => config.amount = Amount::For(Duration::from_millis(number(arg, value, 1, 600_000)?)),
            "acq" => config.amount = Amount::Total(number(arg, value, 1, 100_000_000)?),
            "cpus" => config.cpus = number(arg, value, 1, smp::online_count() as u64)? as usize,
            "cs" => config.cs = number(arg, value, 0, 1_000_000)? as u32,
            "out" => config.out = number(arg, value, 0, 1_000_000)? as u32,
            "slowpath" => {
                config.slow_paths = match value {
                    "boot" => Vec::from([SlowPath::Boot]),
                    "halt" => Vec::from([SlowPath::Halt]),
                    "spin" => Vec::from([SlowPath::Spin]),
                    "both" => Vec::from([SlowPath::Halt, SlowPath::Spin]),
                    _ => return Err(format!("bad `{arg}`: expected boot|halt|spin|both")),
                }
            }
            _ => {
                return Err(format!(
                    "unknown argument `{arg}`; valid: kinds=LIST, ms=N, acq=N, cs=N, out=N, cpus=N, slowpath=boot|halt|spin|both"
                ))
            }
        }
    }
    Ok(config)
}

/// `n` units of work the compiler cannot remove.
fn work(n: u32) {
    let mut x = 0u32;
    for i in 0..n {
        x = core::hint::black_box(x.wrapping_add(i));
    }
}

struct Outcome {
    acquisitions: u64,
    counted: u64,
    elapsed: Duration,
    per_cpu: Vec<u64>,
    latency: Histogram,
}

fn storm<R: RawLock + Send + Sync>(config: &Config) -> Outcome {
    let lock: SpinLock<u64, R> = SpinLock::new(0);
    let latency = Histogram::new();
    let counts: Vec<AtomicU64> = (0..kernel::MAX_CPUS).map(|_| AtomicU64::new(0)).collect();
    let cpus = config.cpus as u64;
    let participants = || smp::online_cpus().take(config.cpus);
    let start = time::now_ns();
    smp::run_on_cpus(participants(), &|cpu| {
        let mut mine = 0u64;
        let deadline = match config.amount {
            Amount::For(d) => Some(time::now_ns() + d.as_nanos() as u64),
            Amount::Total(_) => None,
        };
        let quota = match config.amount {
            Amount::Total(total) => {
                let rank = participants().position(|c| c == cpu).unwrap_or(0) as u64;
                total / cpus + u64::from(rank < total % cpus)
            }
            Amount::For(_) => u64::MAX,
        };
        while mine < quota {
            let before = time::now_ns();
            let mut guard = lock.lock();
            let held = time::now_ns();
            *guard += 1;
            work(config.cs);
            drop(guard);
            latency.record(held - before);
            mine += 1;
            work(config.out);
            if deadline.is_some_and(|d| held >= d) {
                break;
            }
        }
        counts[cpu].store(mine, Ordering::Relaxed);
    });
    let elapsed = Duration::from_nanos(time::now_ns() - start);
    let per_cpu: Vec<u64> = participants()
        .map(|c| counts[c].load(Ordering::Relaxed))
        .collect();
    let counted = *lock.lock();
    Outcome {
        acquisitions: per_cpu.iter().sum(),
        counted,
        elapsed,
        per_cpu,
        latency,
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
    let boot_choice = pv::lock_slow_path_is_pv();
    let mut lost_any = false;
    for &kind in &config.kinds {
        // The slow path only matters for the qspinlock.
        let slow_paths: &[SlowPath] = if kind == LockKind::QSpin {
            &config.slow_paths
        } else {
            &[SlowPath::Boot]
        };
        for &slow_path in slow_paths {
            match slow_path {
                SlowPath::Boot => pv::set_lock_slow_path_pv(boot_choice),
                SlowPath::Halt => pv::set_lock_slow_path_pv(true),
                SlowPath::Spin => pv::set_lock_slow_path_pv(false),
            }
            let outcome = with_lock_kind!(kind, R => storm::<R>(&config));
            pv::set_lock_slow_path_pv(boot_choice);
            let fair = outcome.acquisitions as f64 / outcome.per_cpu.len() as f64;
            let min = outcome.per_cpu.iter().copied().min().unwrap_or(0) as f64 / fair;
            let max = outcome.per_cpu.iter().copied().max().unwrap_or(0) as f64 / fair;
            let secs = outcome.elapsed.as_secs_f64().max(1e-9);
            let lost = outcome.acquisitions.abs_diff(outcome.counted);
            lost_any |= lost != 0;
            let slow_name = if kind == LockKind::QSpin {
                slow_path.name()
            } else {
                "-"
            };
            kernel::println!(
                "lockstorm: kind={} slowpath={} cpus={} cs={} out={} acquisitions={} elapsed_ns={} per_sec={:.0} fair_min={:.3} fair_max={:.3} p50_ns={} p99_ns={} max_ns={} lost={}",
                kind.name(),
                slow_name,
                outcome.per_cpu.len(),
                config.cs,
                config.out,
                outcome.acquisitions,
                outcome.elapsed.as_nanos(),
                outcome.acquisitions as f64 / secs,
                min,
                max,
                outcome.latency.percentile(500),
                outcome.latency.percentile(990),
                outcome.latency.max_ns.load(Ordering::Relaxed),
                lost
            );
        }
    }
    if lost_any {
        log::error!("lost updates: a lock let two CPUs in at once");
        status::FAILURE
    } else {
        status::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for ns in [0u64, 1, 15, 16, 17, 31, 32, 100, 1000, 12_345, 1 << 40] {
            let b = bucket(ns);
            assert!(b >= last, "{ns}");
            last = b;
            let floor = bucket_floor(b);
            assert!(
                floor <= ns && ns - floor <= ns / 8 + 1,
                "{ns}: floor {floor}"
            );
        }
    }
}
