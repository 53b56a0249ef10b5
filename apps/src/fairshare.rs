//! CPU-bound threads pinned across the CPUs: does the scheduler's accounted
//! run time of each thread match the work it really did?
//!
//! ```text
//! app=fairshare -- [ms=2000] [per_cpu=2] [expect=accurate|steal-match|any]
//! ```
//!
//! Each thread runs fixed chunks of arithmetic (microseconds each) and times
//! every chunk. A chunk during which the host preempted the vCPU (steal) or
//! the scheduler switched the thread out takes at least a time slice,
//! milliseconds ([`PREEMPTED_NS`]); the sum of the other chunks, with each
//! preempted one counted as a median one, is the thread's real progress in
//! CPU time ([`progress_ns`]). Shorter interruptions (the guest's and the
//! host's interrupt handling) stay in it, as they stay in any accounted run
//! time: no guest can tell them from its own work. With PV time the
//! accounted run time excludes steal and matches progress; without it the
//! stolen time counts as run time and the ratio shows the skew.
//!
//! Machine-readable lines:
//! `fairshare: thread=I cpu=C run_ms=R progress_ms=P ratio=X steal_ms=S`,
//! `fairshare: cpu=C sched_steal_us=A pv_steal_us=B` (the scheduler's steal
//! accounting against the PV steal clock over the same window), and
//! `fairshare: steal_clock=yes|no steal_accounted=yes|no worst_ratio_error=E%`
//! (`steal_accounted=no`: no steal clock, or `no-steal-acc`, which keeps
//! the clock but leaves steal in run time, so the ratios skew and the
//! scheduler's steal stays 0).
//! `expect=steal-match` fails the run (status 1) if any CPU's steal
//! accounting is off by more than 1% (+1 ms); `expect=accurate` also if any
//! ratio is off by more than 5%; `expect=skewed` if no ratio is off by more
//! than 20% (PV time off under steal: the skew must show). Under nested KVM
//! the host's own overhead around each preemption, which it cannot report
//! as steal, stays in the ratio: see docs/ARCHITECTURE.md.

use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;

use kernel::exit::status;
use kernel::sched::{self, Builder};
use kernel::sync::Mutex;
use kernel::{pv, smp, time};

/// Arithmetic steps per timed chunk (tens of microseconds on TCG).
const CHUNK_STEPS: u32 = 4000;
/// An interval this long had the thread off the CPU: a host or guest time
/// slice lasts milliseconds. Interrupt handling lasts microseconds on
/// hardware, and up to about 0.8 ms with the exits of nested KVM under TCG.
const PREEMPTED_NS: u64 = 1_000_000;
/// Allowed |accounted / progress - 1| with `expect=accurate`.
const RATIO_TOLERANCE: f64 = 0.05;
/// The least worst |accounted / progress - 1| `expect=skewed` accepts.
const SKEW_MIN: f64 = 0.2;

struct Options {
    run: Duration,
    per_cpu: usize,
    /// Check the ratios (5%).
    expect_accurate: bool,
    /// Check that some ratio is off (20%).
    expect_skewed: bool,
    /// Check the steal accounting against the PV clock (1%).
    expect_steal_match: bool,
}

fn parse(args: &[&str]) -> Result<Options, u8> {
    let mut o = Options {
        run: Duration::from_millis(2000),
        per_cpu: 2,
        expect_accurate: false,
        expect_skewed: false,
        expect_steal_match: false,
    };
    for arg in args {
        match arg.split_once('=') {
            Some(("ms", n)) => match n.parse::<u64>() {
                Ok(ms) if (100..=600_000).contains(&ms) => o.run = Duration::from_millis(ms),
                _ => return usage(arg, "ms=N with 100 <= N <= 600000"),
            },
            Some(("per_cpu", n)) => match n.parse::<usize>() {
                Ok(k) if (1..=8).contains(&k) => o.per_cpu = k,
                _ => return usage(arg, "per_cpu=K with 1 <= K <= 8"),
            },
            Some(("expect", "accurate")) => {
                o.expect_accurate = true;
                o.expect_steal_match = true;
            }
            Some(("expect", "steal-match")) => o.expect_steal_match = true,
            Some(("expect", "skewed")) => o.expect_skewed = true,
            Some(("expect", "any")) => {}
            _ => {
                return usage(
                    arg,
                    "ms=N, per_cpu=K, expect=accurate|steal-match|skewed|any",
                )
            }
        }
    }
    Ok(o)
}

fn usage<T>(arg: &str, valid: &str) -> Result<T, u8> {
    log::error!("bad argument `{arg}`; valid: {valid}");
    Err(status::USAGE)
}

/// Each CPU's steal as the scheduler accounted it and as the PV clock
/// says, both read on that CPU itself right after bringing its accounting
/// up to now. (Read from one CPU after all had accounted, a host
/// preemption of another in between showed as a window's worth of steal
/// the scheduler "missed".)
fn steal_views(cpus: &[usize]) -> Vec<(u64, u64)> {
    let views: Vec<(AtomicU64, AtomicU64)> = cpus
        .iter()
        .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
        .collect();
    smp::run_on_all(&|cpu| {
        sched::account_now();
        if let Some(i) = cpus.iter().position(|&c| c == cpu) {
            views[i]
                .0
                .store(sched::cpu_times(cpu).steal_ns, Ordering::Relaxed);
            views[i].1.store(pv::steal_ns(cpu), Ordering::Relaxed);
        }
    });
    views
        .iter()
        .map(|(s, p)| (s.load(Ordering::Relaxed), p.load(Ordering::Relaxed)))
        .collect()
}

/// One chunk of work the compiler cannot skip.
fn chunk(mut x: u64) -> u64 {
    for _ in 0..CHUNK_STEPS {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x ^= x >> 29;
    }
    core::hint::black_box(x)
}

/// CPU time the chunks really took: an interval of [`PREEMPTED_NS`] or more
/// had the thread off the CPU (stolen by the host or switched out) and
/// counts as one median chunk; the rest count as measured.
fn progress_ns(chunk_ns: &[u32]) -> u64 {
    let mut sorted = chunk_ns.to_vec();
    sorted.sort_unstable();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0) as u64;
    chunk_ns
        .iter()
        .map(|&dt| match dt as u64 {
            dt if dt >= PREEMPTED_NS => median,
            dt => dt,
        })
        .sum()
}

struct Outcome {
    cpu: usize,
    run_ns: u64,
    steal_ns: u64,
    progress_ns: u64,
}

pub fn main(args: &[&str]) -> u8 {
    let opts = match parse(args) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let cpus: Vec<usize> = smp::online_cpus().collect();
    let start_flag = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));

    let steal_before = steal_views(&cpus);

    // The window starts once every thread exists (spawning can take a while
    // on a host that steals most of the time).
    let end_at = Arc::new(AtomicU64::new(u64::MAX));
    let mut handles = Vec::new();
    for &cpu in &cpus {
        for k in 0..opts.per_cpu {
            let (start_flag, outcomes, end_at) =
                (start_flag.clone(), outcomes.clone(), end_at.clone());
            let spawned = Builder::new()
                .name(format!("fair-{cpu}.{k}"))
                .pin(cpu)
                .spawn(move || {
                    while !start_flag.load(Ordering::Acquire) {
                        sched::yield_now();
                    }
                    let end_at = end_at.load(Ordering::Relaxed);
                    let before = sched::current().times();
                    let mut chunk_ns: Vec<u32> = Vec::with_capacity(1 << 16);
                    let mut x = cpu as u64;
                    // Back-to-back intervals: every nanosecond of the run
                    // (the loop's own overhead included) is in one of them.
                    let mut last = time::now_ns();
                    while last < end_at {
                        x = chunk(x);
                        let now = time::now_ns();
                        chunk_ns.push((now - last).min(u32::MAX as u64) as u32);
                        last = now;
                    }
                    let after = sched::current().times();
                    outcomes.lock().push(Outcome {
                        cpu,
                        run_ns: after.run_ns - before.run_ns,
                        steal_ns: after.steal_ns - before.steal_ns,
                        progress_ns: progress_ns(&chunk_ns),
                    });
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    log::error!("fairshare: cannot start a thread on CPU {cpu}: {e}");
                    return status::FAILURE;
                }
            }
        }
    }
    end_at.store(
        time::now_ns() + opts.run.as_nanos() as u64,
        Ordering::Relaxed,
    );
    start_flag.store(true, Ordering::Release);
    for h in handles {
        h.join();
    }
    let steal_after = steal_views(&cpus);

    let mut ok = true;
    let mut worst = 0.0f64;
    for (i, o) in outcomes.lock().iter().enumerate() {
        let ratio = o.run_ns as f64 / o.progress_ns.max(1) as f64;
        worst = worst.max((ratio - 1.0).abs());
        kernel::println!(
            "fairshare: thread={i} cpu={} run_ms={} progress_ms={} ratio={ratio:.3} steal_ms={}",
            o.cpu,
            o.run_ns / 1_000_000,
            o.progress_ns / 1_000_000,
            o.steal_ns / 1_000_000
        );
        if opts.expect_accurate && (ratio - 1.0).abs() > RATIO_TOLERANCE {
            log::error!(
                "fairshare: thread {i} on CPU {}: accounted {} ms for {} ms of progress",
                o.cpu,
                o.run_ns / 1_000_000,
                o.progress_ns / 1_000_000
            );
            ok = false;
        }
    }
    for ((&cpu, (sched_before, pv_before)), (sched_after, pv_after)) in
        cpus.iter().zip(steal_before).zip(steal_after)
    {
        let sched_steal = sched_after - sched_before;
        let pv_steal = pv_after - pv_before;
        kernel::println!(
            "fairshare: cpu={cpu} sched_steal_us={} pv_steal_us={}",
            sched_steal / 1000,
            pv_steal / 1000
        );
        let slack = pv_steal / 100 + 1_000_000;
        if opts.expect_steal_match && sched_steal.abs_diff(pv_steal) > slack {
            log::error!(
                "fairshare: CPU {cpu}: the scheduler accounted {sched_steal} ns of steal, the PV clock advanced {pv_steal} ns"
            );
            ok = false;
        }
    }
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    kernel::println!(
        "fairshare: steal_clock={} steal_accounted={} worst_ratio_error={:.1}%",
        yes_no(pv::has_steal_clock()),
        yes_no(pv::steal_accounted()),
        worst * 100.0
    );
    if opts.expect_skewed && worst <= SKEW_MIN {
        log::error!(
            "fairshare: every ratio is within {:.0}% of 1: no skew to report",
            SKEW_MIN * 100.0
        );
        ok = false;
    }
    if ok {
        status::SUCCESS
    } else {
        status::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_keeps_interrupts_and_drops_preemptions() {
        // 100 chunks of 10 us; two interrupted for 300 us (interrupt
        // handling, nested exits); one preempted for 5 ms.
        let mut chunks = vec![10_000u32; 100];
        chunks[10] = 310_000;
        chunks[20] = 310_000;
        chunks[30] = 5_010_000;
        let expected = 97 * 10_000 + 2 * 310_000 + 10_000;
        assert_eq!(progress_ns(&chunks), expected);
    }

    #[test]
    fn progress_of_nothing_is_nothing() {
        assert_eq!(progress_ns(&[]), 0);
    }

    #[test]
    fn options() {
        let o = parse(&["ms=500", "per_cpu=3", "expect=skewed"])
            .ok()
            .unwrap();
        assert_eq!(o.run, Duration::from_millis(500));
        assert_eq!(o.per_cpu, 3);
        assert!(o.expect_skewed && !o.expect_accurate && !o.expect_steal_match);
        let o = parse(&["expect=accurate"]).ok().unwrap();
        assert!(o.expect_accurate && o.expect_steal_match);
        for bad in ["ms=50", "per_cpu=0", "expect=exact", "speed=1"] {
            assert_eq!(parse(&[bad]).err(), Some(status::USAGE), "{bad}");
        }
    }
}
