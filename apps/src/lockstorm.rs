//! Lock contention on every CPU, per lock kind.
//!
//! ```text
//! app=lockstorm -- [kinds=tas,ticket,mcs,qspinlock] [ms=300 | acq=N]
//!                  [cs=50] [out=100] [cpus=N] [slowpath=boot|halt|spin|both]
//!                  [mutex=sleep|spin-owner|spin-owner-pv|all] [threads=1]
//!                  [shares=off|on]
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
//!   gap_p50_ns=D gap_p99_ns=E halts=H kicks=K kicks_unhalted=U
//!   handover_halted=V handover_preempted=W steals=S steals_head_halted=X
//! ```
//! (on one line). Timed storms start together (the CPUs meet first) and
//! stop at one deadline, `elapsed_ns` counted from that start.
//! `fair_min`/`fair_max` are the smallest and largest per-CPU
//! share of acquisitions divided by the fair share (1.0 = perfectly fair);
//! latencies are from the lock call to holding the lock, in guest time,
//! from a log-linear histogram (within 12.5%). `gap_*` is the time from an
//! unlock to the next owner holding the lock, counted when that owner was
//! already waiting (the hand-over's cost). The qspinlock's lines add its
//! slow-path counters over the storm ([`kernel::sync::QSpinStats`]; all
//! qspinlocks of the kernel count, the storm's lock nearly all of it).
//! `shares=on` ends each line with ` shares=A/B/...`, every participant's
//! acquisitions in CPU (or thread) order, to see who starved.
//! Any lost update fails the run.
//!
//! The spinlocks run as jobs of each CPU's idle thread ([`smp::run_on_cpus`]).
//! Kind `mutex` (not in the default `kinds`: name it) is the sleeping
//! [`Mutex`], which needs threads that may block: `threads` per CPU, each
//! pinned, started together once all exist. It runs once per spin policy of
//! `mutex=` (default `all`: `sleep`, `spin-owner`, `spin-owner-pv`; see
//! [`MutexSpin`]), the policy in the `slowpath` column; fairness is per
//! thread, latency includes any sleep, and the line adds the thread count
//! and the mutex's own counters:
//!
//! ```text
//! lockstorm: kind=mutex slowpath=spin-owner-pv cpus=4 ... lost=0 threads=4
//!   spun=S slept=P preempted_owner=O handed_off=H gap_p50_ns=D gap_p99_ns=E
//! ```
//! (`spun`: acquisitions that spun and got it without sleeping; `slept`:
//! times a contender slept; `preempted_owner`: spins the owner's preempted
//! vCPU ended, only with `spin-owner-pv` and a host that reports it;
//! `handed_off`: unlocks that gave it straight to a starving waiter.)

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::DerefMut;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;

use crate::histogram::Histogram;
use kernel::exit::status;
use kernel::sched::{self, Builder, SpawnError};
use kernel::sync::{
    qspin_stats, LockKind, Mutex, MutexSpin, QSpinStats, QSpinWith, RawLock, SpinLock,
};
use kernel::{pv, smp, time, with_lock_kind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlowPath {
    /// As chosen at boot.
    Boot,
    Halt,
    Spin,
}

impl SlowPath {
    fn name(self) -> &'static str {
        match self {
            SlowPath::Boot => match pv::lock_slow_path() {
                kernel::sync::SlowPath::Halt => "halt",
                kernel::sync::SlowPath::Spin => "spin",
            },
            SlowPath::Halt => "halt",
            SlowPath::Spin => "spin",
        }
    }
}

/// What a storm takes: a spinlock algorithm, or the sleeping mutex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Spin(LockKind),
    Mutex,
}

impl Kind {
    const MUTEX: &'static str = "mutex";

    fn name(self) -> &'static str {
        match self {
            Kind::Spin(kind) => kind.name(),
            Kind::Mutex => Self::MUTEX,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        if name == Self::MUTEX {
            return Some(Kind::Mutex);
        }
        LockKind::from_name(name).map(Kind::Spin)
    }

    /// Every kind's name, comma-separated.
    fn all_names() -> String {
        let mut names: Vec<&str> = LockKind::ALL.iter().map(|k| k.name()).collect();
        names.push(Self::MUTEX);
        names.join(",")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Amount {
    For(Duration),
    Total(u64),
}

impl Amount {
    /// The acquisitions participant `rank` of `n` takes: its part of a
    /// total, or no bound for a timed run.
    fn quota(self, rank: usize, n: usize) -> u64 {
        match self {
            Amount::Total(total) => {
                let n = n as u64;
                total / n + u64::from((rank as u64) < total % n)
            }
            Amount::For(_) => u64::MAX,
        }
    }

    /// When participants that start at `start_ns` stop (the first
    /// acquisition at or past it is each one's last).
    fn deadline(self, start_ns: u64) -> Option<u64> {
        match self {
            Amount::For(d) => Some(start_ns + d.as_nanos() as u64),
            Amount::Total(_) => None,
        }
    }
}

#[derive(Debug)]
struct Config {
    kinds: Vec<Kind>,
    amount: Amount,
    cs: u32,
    out: u32,
    slow_paths: Vec<SlowPath>,
    cpus: usize,
    mutex_spins: Vec<MutexSpin>,
    /// Mutex threads per CPU.
    threads: usize,
    /// Print every participant's acquisitions (`shares=on`).
    shares: bool,
}

const VALID: &str = "kinds=LIST, ms=N, acq=N, cs=N, out=N, cpus=N, slowpath=boot|halt|spin|both, mutex=sleep|spin-owner|spin-owner-pv|all, threads=N, shares=off|on";

/// The arguments, with `online` CPUs online.
fn parse(args: &[&str], online: usize) -> Result<Config, String> {
    let mut config = Config {
        kinds: LockKind::ALL.map(Kind::Spin).to_vec(),
        amount: Amount::For(Duration::from_millis(300)),
        cs: 50,
        out: 100,
        slow_paths: Vec::from([SlowPath::Boot]),
        cpus: online,
        mutex_spins: MutexSpin::ALL.to_vec(),
        threads: 1,
        shares: false,
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
                        Kind::from_name(name).ok_or(format!(
                            "unknown lock kind `{name}`; valid: {}",
                            Kind::all_names()
                        ))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "ms" => {
                config.amount = Amount::For(Duration::from_millis(number(arg, value, 1, 600_000)?))
            }
            "acq" => config.amount = Amount::Total(number(arg, value, 1, 100_000_000)?),
            "cpus" => config.cpus = number(arg, value, 1, online as u64)? as usize,
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
            "mutex" => {
                config.mutex_spins = match value {
                    "all" => MutexSpin::ALL.to_vec(),
                    name => Vec::from([MutexSpin::from_name(name).ok_or(format!(
                        "bad `{arg}`: expected sleep|spin-owner|spin-owner-pv|all"
                    ))?]),
                }
            }
            "threads" => config.threads = number(arg, value, 1, 8)? as usize,
            "shares" => {
                config.shares = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(format!("bad `{arg}`: expected off|on")),
                }
            }
            _ => return Err(format!("unknown argument `{arg}`; valid: {VALID}")),
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

/// What the lock protects: the plain counter, and when its last holder
/// let go (for the hand-over gap).
#[derive(Default)]
struct Protected {
    count: u64,
    released_at: u64,
}

/// Latencies: from the lock call to holding it, and from an unlock to the
/// next (already waiting) owner holding it.
struct Latencies {
    wait: Histogram,
    gap: Histogram,
}

impl Latencies {
    fn new() -> Self {
        Self {
            wait: Histogram::new(),
            gap: Histogram::new(),
        }
    }
}

/// One participant's loop: `lock()` takes the lock and returns the guard
/// of the counter. Returns the acquisitions taken.
fn participate<G: DerefMut<Target = Protected>>(
    quota: u64,
    deadline: Option<u64>,
    config: &Config,
    latency: &Latencies,
    lock: impl Fn() -> G,
) -> u64 {
    let mut mine = 0u64;
    while mine < quota {
        let before = time::now_ns();
        let mut guard = lock();
        let held = time::now_ns();
        if before <= guard.released_at {
            latency.gap.record(held.saturating_sub(guard.released_at));
        }
        guard.count += 1;
        work(config.cs);
        guard.released_at = time::now_ns();
        drop(guard);
        latency.wait.record(held - before);
        mine += 1;
        work(config.out);
        if deadline.is_some_and(|d| held >= d) {
            break;
        }
    }
    mine
}

/// Where a spinlock storm's participants meet before they start, so a CPU
/// whose job the host ran late does not run on alone after the others'
/// deadline (its extra acquisitions, uncontended, read as unfairness).
#[derive(Default)]
struct StartLine {
    arrived: AtomicUsize,
    /// When the last participant arrived (0: not yet).
    at_ns: AtomicU64,
}

impl StartLine {
    /// Waits for all `n` participants; returns the common start time.
    fn wait(&self, n: usize) -> u64 {
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == n {
            self.at_ns.store(time::now_ns().max(1), Ordering::Release);
        }
        loop {
            match self.at_ns.load(Ordering::Acquire) {
                0 => core::hint::spin_loop(),
                at => return at,
            }
        }
    }

    fn ns(&self) -> Option<u64> {
        Some(self.at_ns.load(Ordering::Acquire)).filter(|&at| at != 0)
    }
}

struct Outcome {
    acquisitions: u64,
    counted: u64,
    elapsed: Duration,
    /// Acquisitions per participant (CPU, or mutex thread).
    shares: Vec<u64>,
    /// p50, p99 and max latency in ns.
    latency: [u64; 3],
    /// p50 and p99 of the hand-over gap in ns.
    gap: [u64; 2],
    /// The qspinlock's slow-path counters over the storm.
    qspin: Option<QSpinStats>,
    /// The mutex's counters: spun, slept, preempted_owner, handed_off.
    mutex: Option<[u64; 4]>,
}

fn storm<R: RawLock + Send + Sync>(config: &Config) -> Outcome {
    let lock: SpinLock<Protected, R> = SpinLock::new(Protected {
        count: 0,
        released_at: 0,
    });
    let latency = Latencies::new();
    let stats_before = qspin_stats();
    let counts: Vec<AtomicU64> = (0..kernel::MAX_CPUS).map(|_| AtomicU64::new(0)).collect();
    let participants = || smp::online_cpus().take(config.cpus);
    let start = StartLine::default();
    let n = participants().count();
    let started = time::now_ns();
    smp::run_on_cpus(participants(), &|cpu| {
        let rank = participants().position(|c| c == cpu).unwrap_or(0);
        let quota = config.amount.quota(rank, config.cpus);
        let deadline = config.amount.deadline(start.wait(n));
        let mine = participate(quota, deadline, config, &latency, || lock.lock());
        counts[cpu].store(mine, Ordering::Relaxed);
    });
    // From the common start: the time all contended, and the stragglers.
    let elapsed = Duration::from_nanos(time::now_ns() - start.ns().unwrap_or(started));
    let shares: Vec<u64> = participants()
        .map(|c| counts[c].load(Ordering::Relaxed))
        .collect();
    let qspin = (R::NAME == LockKind::QSpin.name()).then(|| qspin_stats().since(stats_before));
    let counted = lock.lock().count;
    Outcome {
        acquisitions: shares.iter().sum(),
        counted,
        elapsed,
        shares,
        latency: latency.wait.summary(),
        gap: latency.gap.summary2(),
        qspin,
        mutex: None,
    }
}

/// What the mutex threads share.
struct MutexStorm {
    mutex: Mutex<Protected>,
    latency: Latencies,
    /// Acquisitions per thread, by rank.
    counts: Vec<AtomicU64>,
    ready: AtomicUsize,
    go: AtomicBool,
}

/// The mutex under `spin`: `threads` pinned threads on each of the first
/// `cpus` CPUs (thread `rank` on CPU `rank % cpus`), released together once
/// all have started; the caller (`main`) joins them.
fn mutex_storm(config: &Arc<Config>, spin: MutexSpin) -> Result<Outcome, SpawnError> {
    let cpus: Vec<usize> = smp::online_cpus().take(config.cpus).collect();
    let n = cpus.len() * config.threads;
    let shared = Arc::new(MutexStorm {
        mutex: Mutex::with_spin(Protected::default(), spin),
        latency: Latencies::new(),
        counts: (0..n).map(|_| AtomicU64::new(0)).collect(),
        ready: AtomicUsize::new(0),
        go: AtomicBool::new(false),
    });
    let mut handles = Vec::with_capacity(n);
    let mut failed = None;
    for rank in 0..n {
        let cpu = cpus[rank % cpus.len()];
        let (shared, config) = (shared.clone(), config.clone());
        let spawned = Builder::new()
            .name(format!("lockstorm-{cpu}.{}", rank / cpus.len()))
            .pin(cpu)
            .spawn(move || {
                shared.ready.fetch_add(1, Ordering::Release);
                while !shared.go.load(Ordering::Acquire) {
                    sched::yield_now();
                }
                let quota = config.amount.quota(rank, n);
                let deadline = config.amount.deadline(time::now_ns());
                let mine = participate(quota, deadline, &config, &shared.latency, || {
                    shared.mutex.lock()
                });
                shared.counts[rank].store(mine, Ordering::Relaxed);
            });
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    while failed.is_none() && shared.ready.load(Ordering::Acquire) < n {
        sched::yield_now();
    }
    let start = time::now_ns();
    shared.go.store(true, Ordering::Release);
    for handle in handles {
        handle.join();
    }
    let elapsed = Duration::from_nanos(time::now_ns() - start);
    if let Some(e) = failed {
        return Err(e);
    }
    let shares: Vec<u64> = shared
        .counts
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    let counted = shared.mutex.lock().count;
    let stats = shared.mutex.stats();
    let mutex = [
        &stats.spun,
        &stats.slept,
        &stats.preempted_owner,
        &stats.handed_off,
    ]
    .map(|c| c.load(Ordering::Relaxed));
    Ok(Outcome {
        acquisitions: shares.iter().sum(),
        counted,
        elapsed,
        shares,
        latency: shared.latency.wait.summary(),
        gap: shared.latency.gap.summary2(),
        qspin: None,
        mutex: Some(mutex),
    })
}

/// Prints the result line of one storm; true if it lost no update.
fn report(kind: Kind, slow_name: &str, config: &Config, outcome: &Outcome) -> bool {
    let fair = outcome.acquisitions as f64 / outcome.shares.len() as f64;
    let min = outcome.shares.iter().copied().min().unwrap_or(0) as f64 / fair;
    let max = outcome.shares.iter().copied().max().unwrap_or(0) as f64 / fair;
    let secs = outcome.elapsed.as_secs_f64().max(1e-9);
    let lost = outcome.acquisitions.abs_diff(outcome.counted);
    let mutex = match outcome.mutex {
        Some([spun, slept, preempted_owner, handed_off]) => format!(
            " threads={} spun={spun} slept={slept} preempted_owner={preempted_owner} handed_off={handed_off}",
            outcome.shares.len()
        ),
        None => String::new(),
    };
    let mut tail = match outcome.qspin {
        Some(stats) => format!(" {stats}"),
        None => String::new(),
    };
    if config.shares {
        let shares: Vec<String> = outcome.shares.iter().map(|n| format!("{n}")).collect();
        tail += &format!(" shares={}", shares.join("/"));
    }
    kernel::println!(
        "lockstorm: kind={} slowpath={} cpus={} cs={} out={} acquisitions={} elapsed_ns={} per_sec={:.0} fair_min={:.3} fair_max={:.3} p50_ns={} p99_ns={} max_ns={} lost={}{} gap_p50_ns={} gap_p99_ns={}{}",
        kind.name(),
        slow_name,
        config.cpus,
        config.cs,
        config.out,
        outcome.acquisitions,
        outcome.elapsed.as_nanos(),
        outcome.acquisitions as f64 / secs,
        min,
        max,
        outcome.latency[0],
        outcome.latency[1],
        outcome.latency[2],
        lost,
        mutex,
        outcome.gap[0],
        outcome.gap[1],
        tail
    );
    lost == 0
}

pub fn main(args: &[&str]) -> u8 {
    let config = match parse(args, smp::online_count()) {
        Ok(config) => Arc::new(config),
        Err(why) => {
            log::error!("{why}");
            return status::USAGE;
        }
    };
    let mut lost_any = false;
    for &kind in &config.kinds {
        match kind {
            Kind::Spin(lock_kind) => {
                // The slow path only matters for the qspinlock.
                let slow_paths: &[SlowPath] = if lock_kind == LockKind::QSpin {
                    &config.slow_paths
                } else {
                    &[SlowPath::Boot]
                };
                for &slow_path in slow_paths {
                    // A lock of its own per slow path: the kernel's follow
                    // the boot choice, which never changes.
                    let outcome = match (lock_kind, slow_path) {
                        (LockKind::QSpin, SlowPath::Halt) => storm::<QSpinWith<true>>(&config),
                        (LockKind::QSpin, SlowPath::Spin) => storm::<QSpinWith<false>>(&config),
                        _ => with_lock_kind!(lock_kind, R => storm::<R>(&config)),
                    };
                    let slow_name = if lock_kind == LockKind::QSpin {
                        slow_path.name()
                    } else {
                        "-"
                    };
                    lost_any |= !report(kind, slow_name, &config, &outcome);
                }
            }
            Kind::Mutex => {
                for &spin in &config.mutex_spins {
                    match mutex_storm(&config, spin) {
                        Ok(outcome) => {
                            lost_any |= !report(kind, spin.name(), &config, &outcome);
                        }
                        Err(e) => {
                            log::error!("lockstorm: cannot start a mutex thread: {e}");
                            return status::FAILURE;
                        }
                    }
                }
            }
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
mod tests;
