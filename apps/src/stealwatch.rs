//! Keeps every CPU busy for a while, sampling its steal clock.
//!
//! ```text
//! app=stealwatch -- [ms=2000] [expect=steal|zero]
//! ```
//!
//! Prints one machine-readable line per CPU:
//! `stealwatch: cpu=N steal_ns=S total_ns=T samples=K monotonic=yes|no`
//! (`steal_ns` is what was stolen during the run, `total_ns` the clock at its
//! end). The run fails if any CPU's clock went backwards; `expect=steal`
//! also fails it unless every CPU saw steal, `expect=zero` unless none did.
//!
//! Then, as its very last act, it reads every CPU's steal clock once more
//! and prints one line per CPU for comparison with the host's ground truth
//! (pvhost's `pvhost: cpu=N ... stolen_ns=S ...` at SYSTEM_OFF):
//! `stealwatch: final cpu=N hw_id=H stolen_ns=S at_ns=T` — `stolen_ns` the clock's
//! value (stolen since boot, as the host counts it), `at_ns` the guest time
//! just before the readings. Steal keeps accruing until the machine is off
//! (the idle CPUs wake for their ticks, the exiting CPU runs the exit
//! path), so the two agree only if the host stopped stealing before `at_ns`
//! (pvhost: `pvhost.steal=POLICY@STOP_MS`; `xtask/src/steal.rs` checks it).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;

use kernel::exit::status;
use kernel::percpu::PerCpu;
use kernel::{per_cpu, pv, smp, time};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Anything,
    Steal,
    Zero,
}

struct Sample {
    first: AtomicU64,
    last: AtomicU64,
    samples: AtomicU64,
    monotonic: AtomicBool,
}

static SAMPLES: PerCpu<Sample> = per_cpu!(Sample {
    first: AtomicU64::new(0),
    last: AtomicU64::new(0),
    samples: AtomicU64::new(0),
    monotonic: AtomicBool::new(true),
});

/// Pause between samples, so a run of a few seconds stays a few thousand samples.
const SAMPLE_EVERY: Duration = Duration::from_micros(500);

fn parse(args: &[&str]) -> Result<(Duration, Expect), u8> {
    let mut run = Duration::from_millis(2000);
    let mut expect = Expect::Anything;
    for arg in args {
        match arg.split_once('=') {
            Some(("ms", n)) => match n.parse::<u64>() {
                Ok(ms) if (1..=600_000).contains(&ms) => run = Duration::from_millis(ms),
                _ => {
                    log::error!("bad `{arg}`: expected ms=N with 1 <= N <= 600000");
                    return Err(status::USAGE);
                }
            },
            Some(("expect", "steal")) => expect = Expect::Steal,
            Some(("expect", "zero")) => expect = Expect::Zero,
            _ => {
                log::error!("unknown argument `{arg}`; valid: ms=N, expect=steal|zero");
                return Err(status::USAGE);
            }
        }
    }
    Ok((run, expect))
}

pub fn main(args: &[&str]) -> u8 {
    let (run, expect) = match parse(args) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let clock = if pv::has_steal_clock() {
        "used"
    } else {
        "absent"
    };
    kernel::println!(
        "stealwatch: steal clock {clock}, {} CPUs busy for {} ms",
        smp::online_count(),
        run.as_millis()
    );

    smp::run_on_all(&|cpu| {
        let s = SAMPLES.of(cpu);
        let first = pv::steal_ns(cpu);
        s.first.store(first, Ordering::Relaxed);
        let mut last = first;
        let mut samples = 0;
        let mut monotonic = true;
        let mut busy = 0u64;
        time::spin_until(run, || {
            time::spin_for(SAMPLE_EVERY);
            let now = pv::steal_ns(cpu);
            monotonic &= now >= last;
            last = now;
            samples += 1;
            busy = busy.wrapping_add(samples);
            false
        });
        core::hint::black_box(busy);
        s.last.store(last, Ordering::Relaxed);
        s.samples.store(samples, Ordering::Relaxed);
        s.monotonic.store(monotonic, Ordering::Relaxed);
    });

    let mut ok = true;
    for cpu in smp::online_cpus() {
        let s = SAMPLES.of(cpu);
        let (first, last) = (
            s.first.load(Ordering::Relaxed),
            s.last.load(Ordering::Relaxed),
        );
        let monotonic = s.monotonic.load(Ordering::Relaxed);
        let steal = last.saturating_sub(first);
        kernel::println!(
            "stealwatch: cpu={cpu} steal_ns={steal} total_ns={last} samples={} monotonic={}",
            s.samples.load(Ordering::Relaxed),
            if monotonic { "yes" } else { "no" }
        );
        ok &= monotonic;
        match expect {
            Expect::Steal if steal == 0 => {
                log::error!("CPU {cpu} saw no steal (expect=steal)");
                ok = false;
            }
            Expect::Zero if last != 0 => {
                log::error!("CPU {cpu} saw {last} ns of steal (expect=zero)");
                ok = false;
            }
            _ => {}
        }
    }
    print_final_readings();
    if ok {
        status::SUCCESS
    } else {
        status::FAILURE
    }
}

/// Reads every CPU's steal clock (from this CPU: the clocks are readable
/// from anywhere) and prints the `stealwatch: final` lines. The time is
/// taken before the readings, so it is never later than any of them.
fn print_final_readings() {
    let mut readings = [0u64; kernel::MAX_CPUS];
    let at_ns = time::now_ns();
    for cpu in smp::online_cpus() {
        readings[cpu] = pv::steal_ns(cpu);
    }
    let hw_ids = &kernel::bootinfo::boot_info().cpu_hw_ids;
    for cpu in smp::online_cpus() {
        // The hardware id lets a host's ground truth, keyed by its own vCPU
        // numbering, be matched to this CPU.
        kernel::println!(
            "stealwatch: final cpu={cpu} hw_id={} stolen_ns={} at_ns={at_ns}",
            hw_ids[cpu],
            readings[cpu]
        );
    }
}
