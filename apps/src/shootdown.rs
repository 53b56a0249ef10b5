//! TLB shootdowns under load, checked for stale entries.
//!
//! ```text
//! app=shootdown -- [ms=1000 | rounds=N] [cpus=N] [nap=N] [mode=remap|protect-fault]
//! ```
//!
//! # `mode=remap` (the default): cost, and a check no stale entry is used
//! A writer thread on CPU 0 remaps two virtual pages, `SLOT[0]` and
//! `SLOT[1]`, while one reader thread on each other CPU (of the first
//! `cpus`) keeps reading them. Generation `g` maps `SLOT[g % 2]` to a page
//! holding `g`; readers read the slot of the newest generation they saw:
//!
//! ```text
//!   writer (CPU 0), round g -> g+1             reader r
//!   [L] wait SEEN[r] >= g for every r          [L] g = GEN (Acquire)
//!   fill page (g+1) % 4 with g+1               [S] SEEN[r] = g (Release)
//!   unmap SLOT[(g+1) % 2]        (shootdown)   [L] v = *SLOT[g % 2]
//!   map it to that page          (shootdown)       v != g: a stale entry
//!   protect RO, then RW          (2 shootdowns)
//!   [S] GEN = g+1 (Release)
//! ```
//! Once every reader has moved to generation `g` none reads `SLOT[(g+1) %
//! 2]` again until `GEN` says `g+1`, so no reader ever touches an unmapped
//! page; but each read that slot in generation `g-1` and may still cache
//! its translation to the page of `g-1`. A reader that, after the calls
//! returned, reads `g-1` there used a stale TLB entry: a missed shootdown.
//! Such a read fails the run (`stale=N`).
//!
//! `nap=N`: each reader sleeps 200 µs every N reads, so its CPU halts and
//! the shootdowns meanwhile only flag it (`lazy_per`); on waking it must
//! flush before it reads again, or it reads a stale page. CPUs beyond
//! `cpus` idle, and count as lazy too.
//!
//! One line per run, every latency one call (`unmap`, `map` or `protect`,
//! each a shootdown) in guest time, the costs as the guest counted them
//! ([`kernel::mm::shootdown_stats`]), per shootdown:
//!
//! ```text
//! shootdown: arch=loongarch64 cpus=4 readers=3 rounds=R shootdowns=S elapsed_ns=T
//!   per_sec=X p50_ns=A p99_ns=B max_ns=C targets_per=3.000 lazy_per=0.000
//!   ipis_per=0.000 hypercalls_per=1.000 broadcasts_per=0.000 ipis=I
//!   hypercalls=H preempted_waits=W reads=N stale=0
//! ```
//! (on one line).
//!
//! # `mode=protect-fault`: a store after `protect` returned must fault
//! A thread on CPU 1 stores to a page (caching a writable translation),
//! CPU 0 makes it read-only, then CPU 1 stores again: the run must end in a
//! fault report. If the store goes through, CPU 1 used a stale entry and
//! the app says so and fails.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;

use kernel::exit::status;
use kernel::mm::{self, Access, ShootdownStats};
use kernel::sched::{self, Builder};
use kernel::{smp, time};

use crate::histogram::Histogram;

/// The two slots: far above RAM and devices on both arches, inside the
/// translatable range (aarch64: 39 bits; LoongArch: 47).
const SLOT_BASE: usize = 0x20_0000_0000;
/// Pages the generations cycle through: a page is refilled only after
/// every reader left the generation that used it two rounds earlier.
const POOL_PAGES: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Remap,
    ProtectFault,
}

#[derive(Debug)]
struct Config {
    duration: Duration,
    rounds: Option<u64>,
    cpus: usize,
    /// Reads between a reader's naps (`None`: it never sleeps).
    nap: Option<u64>,
    mode: Mode,
}

fn parse(args: &[&str], online: usize) -> Result<Config, String> {
    let mut config = Config {
        duration: Duration::from_millis(1000),
        rounds: None,
        cpus: online,
        nap: None,
        mode: Mode::Remap,
    };
    for arg in args {
        let bad = || format!("bad `{arg}`");
        match arg.split_once('=') {
            Some(("ms", n)) => {
                let ms: u64 = n.parse().map_err(|_| bad())?;
                config.duration = Duration::from_millis(ms);
            }
            Some(("rounds", n)) => config.rounds = Some(n.parse().map_err(|_| bad())?),
            Some(("cpus", n)) => match n.parse::<usize>() {
                Ok(n) if (2..=online).contains(&n) => config.cpus = n,
                _ => return Err(format!("{}: expected a number in 2..={online}", bad())),
            },
            Some(("nap", n)) => match n.parse::<u64>() {
                Ok(n) if n > 0 => config.nap = Some(n),
                _ => return Err(format!("{}: expected a number of reads, at least 1", bad())),
            },
            Some(("mode", "remap")) => config.mode = Mode::Remap,
            Some(("mode", "protect-fault")) => config.mode = Mode::ProtectFault,
            _ => {
                return Err(format!(
                    "unknown argument `{arg}`; valid: ms=N rounds=N cpus=N nap=N mode=remap|protect-fault"
                ))
            }
        }
    }
    if online < 2 {
        return Err("shootdown needs at least 2 CPUs".into());
    }
    Ok(config)
}

/// A page-aligned page of the heap, and its physical address.
struct Page {
    words: Vec<AtomicU64>,
    offset: usize,
}

impl Page {
    fn new() -> Self {
        let size = mm::page_size();
        let words: Vec<AtomicU64> = (0..2 * size / 8).map(|_| AtomicU64::new(0)).collect();
        let start = words.as_ptr() as usize;
        let offset = (start.next_multiple_of(size) - start) / 8;
        Self { words, offset }
    }

    fn fill(&self, value: u64) {
        let n = mm::page_size() / 8;
        for w in &self.words[self.offset..self.offset + n] {
            w.store(value, Ordering::Relaxed);
        }
    }

    fn phys(&self) -> usize {
        mm::virt_to_phys(&self.words[self.offset] as *const AtomicU64 as usize)
    }
}

fn slot(generation: u64) -> usize {
    SLOT_BASE + (generation % 2) as usize * mm::page_size()
}

struct Shared {
    generation: AtomicU64,
    /// The newest generation each reader has moved to.
    seen: Vec<AtomicU64>,
    stop: AtomicBool,
    /// Readers that left their loop: the slots may go once all did.
    finished: AtomicUsize,
    reads: AtomicU64,
    stale: AtomicU64,
    /// The first stale read: (generation, value seen).
    first_stale: (AtomicU64, AtomicU64),
}

fn reader(shared: &Shared, rank: usize, nap: Option<u64>) {
    let mut reads = 0;
    while !shared.stop.load(Ordering::Acquire) {
        if nap.is_some_and(|n| reads % n == n - 1) {
            // The CPU halts (nothing else to run): a lazy target.
            sched::sleep(Duration::from_micros(200));
        }
        // Acquire: pairs with the writer's Release store after its calls.
        let g = shared.generation.load(Ordering::Acquire);
        // Release: this reader's earlier reads of the other slot are done
        // before the writer, seeing it, unmaps that slot.
        shared.seen[rank].store(g, Ordering::Release);
        let v = mm::probe_read(slot(g));
        if v != g && shared.stale.fetch_add(1, Ordering::Relaxed) == 0 {
            shared.first_stale.0.store(g, Ordering::Relaxed);
            shared.first_stale.1.store(v, Ordering::Relaxed);
        }
        reads += 1;
    }
    shared.reads.fetch_add(reads, Ordering::Relaxed);
    // Release: this reader's last read is done before the slots go.
    shared.finished.fetch_add(1, Ordering::Release);
}

/// One timed call: its latency into `hist`.
fn timed(hist: &Histogram, f: impl FnOnce() -> Result<(), arch::MapError>) -> Result<(), String> {
    let start = time::now_ns();
    f().map_err(|e| format!("{e:?}"))?;
    hist.record(time::now_ns() - start);
    Ok(())
}

struct Outcome {
    rounds: u64,
    shootdowns: u64,
    elapsed: Duration,
    cost: ShootdownStats,
}

fn writer(config: &Config, shared: &Shared, hist: &Histogram) -> Result<Outcome, String> {
    let page = mm::page_size();
    let pool: Vec<Page> = (0..POOL_PAGES).map(|_| Page::new()).collect();
    // Generation 0 and 1 mapped before the readers start (the first round
    // maps generation 2 over 0's slot).
    for g in 0..2u64 {
        pool[g as usize].fill(g);
        mm::map(
            slot(g),
            pool[g as usize].phys(),
            page,
            arch::MemAttr::Normal,
        )
        .map_err(|e| format!("map: {e:?}"))?;
    }
    shared.generation.store(1, Ordering::Release);
    let before = mm::shootdown_stats();
    let start = time::now_ns();
    let deadline = start + config.duration.as_nanos() as u64;
    let mut rounds = 0;
    let mut g = 1;
    loop {
        let done = match config.rounds {
            Some(n) => rounds >= n,
            None => time::now_ns() >= deadline,
        };
        if done {
            break;
        }
        // Acquire: pairs with each reader's Release of SEEN.
        while shared.seen.iter().any(|s| s.load(Ordering::Acquire) < g) {
            core::hint::spin_loop();
        }
        let next = g + 1;
        let target = &pool[next as usize % POOL_PAGES];
        target.fill(next);
        let va = slot(next);
        timed(hist, || mm::unmap(va, page))?;
        timed(hist, || {
            mm::map(va, target.phys(), page, arch::MemAttr::Normal)
        })?;
        timed(hist, || mm::protect(va, page, Access::ReadOnly))?;
        timed(hist, || mm::protect(va, page, Access::ReadWrite))?;
        // Release: the calls returned before readers use the new slot.
        shared.generation.store(next, Ordering::Release);
        g = next;
        rounds += 1;
    }
    let elapsed = Duration::from_nanos(time::now_ns() - start);
    let after = mm::shootdown_stats();
    shared.stop.store(true, Ordering::Release);
    // Acquire: pairs with each reader's Release as it leaves.
    while shared.finished.load(Ordering::Acquire) < shared.seen.len() {
        core::hint::spin_loop();
    }
    for generation in 0..2 {
        let _ = mm::unmap(slot(generation), page);
    }
    Ok(Outcome {
        rounds,
        shootdowns: rounds * 4,
        elapsed,
        cost: difference(after, before),
    })
}

fn difference(a: ShootdownStats, b: ShootdownStats) -> ShootdownStats {
    ShootdownStats {
        shootdowns: a.shootdowns - b.shootdowns,
        targets: a.targets - b.targets,
        lazy: a.lazy - b.lazy,
        ipis: a.ipis - b.ipis,
        hypercalls: a.hypercalls - b.hypercalls,
        preempted_waits: a.preempted_waits - b.preempted_waits,
        broadcasts: a.broadcasts - b.broadcasts,
    }
}

fn remap(config: Config) -> u8 {
    let readers: Vec<usize> = smp::online_cpus()
        .take(config.cpus)
        .filter(|&c| c != 0)
        .collect();
    let shared = Arc::new(Shared {
        // No reader reads before the writer published generation 1.
        generation: AtomicU64::new(0),
        seen: readers.iter().map(|_| AtomicU64::new(0)).collect(),
        stop: AtomicBool::new(false),
        finished: AtomicUsize::new(0),
        reads: AtomicU64::new(0),
        stale: AtomicU64::new(0),
        first_stale: (AtomicU64::new(0), AtomicU64::new(0)),
    });
    let hist = Arc::new(Histogram::new());
    let config = Arc::new(config);
    let result = Arc::new(spin::Mutex::new(None));
    let mut handles = Vec::new();
    {
        let (shared, hist, config, result) =
            (shared.clone(), hist.clone(), config.clone(), result.clone());
        let spawned = Builder::new()
            .name("shootdown-writer")
            .pin(0)
            .spawn(move || {
                let outcome = writer(&config, &shared, &hist);
                shared.stop.store(true, Ordering::Release);
                *result.lock() = Some(outcome);
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                log::error!("shootdown: cannot start the writer: {e:?}");
                return status::FAILURE;
            }
        }
    }
    for (rank, &cpu) in readers.iter().enumerate() {
        let mine = shared.clone();
        let nap = config.nap;
        let spawned = Builder::new()
            .name(format!("shootdown-reader-{cpu}"))
            .pin(cpu)
            .spawn(move || {
                // Only once generation 1 is mapped.
                while mine.generation.load(Ordering::Acquire) == 0 {
                    core::hint::spin_loop();
                }
                reader(&mine, rank, nap);
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                shared.stop.store(true, Ordering::Release);
                log::error!("shootdown: cannot start a reader: {e:?}");
                return status::FAILURE;
            }
        }
    }
    for h in handles {
        h.join();
    }
    let outcome = match result.lock().take() {
        Some(Ok(outcome)) => outcome,
        Some(Err(why)) => {
            log::error!("shootdown: {why}");
            return status::FAILURE;
        }
        None => {
            log::error!("shootdown: the writer ended without a result");
            return status::FAILURE;
        }
    };
    report(&config, readers.len(), &outcome, &shared, &hist)
}

fn report(config: &Config, readers: usize, o: &Outcome, shared: &Shared, hist: &Histogram) -> u8 {
    let per = |n: u64| n as f64 / o.shootdowns.max(1) as f64;
    let [p50, p99, max] = hist.summary();
    let secs = o.elapsed.as_secs_f64().max(1e-9);
    let stale = shared.stale.load(Ordering::Relaxed);
    kernel::println!(
        "shootdown: arch={} cpus={} readers={readers} rounds={} shootdowns={} elapsed_ns={} \
         per_sec={:.0} p50_ns={p50} p99_ns={p99} max_ns={max} targets_per={:.3} lazy_per={:.3} \
         ipis_per={:.3} hypercalls_per={:.3} broadcasts_per={:.3} ipis={} hypercalls={} \
         preempted_waits={} reads={} stale={stale}",
        kernel::arch_name(),
        config.cpus,
        o.rounds,
        o.shootdowns,
        o.elapsed.as_nanos(),
        o.shootdowns as f64 / secs,
        per(o.cost.targets),
        per(o.cost.lazy),
        per(o.cost.ipis),
        per(o.cost.hypercalls),
        per(o.cost.broadcasts),
        o.cost.ipis,
        o.cost.hypercalls,
        o.cost.preempted_waits,
        shared.reads.load(Ordering::Relaxed),
    );
    if o.cost.shootdowns != o.shootdowns {
        log::error!(
            "shootdown: the kernel counted {} shootdowns for {} calls",
            o.cost.shootdowns,
            o.shootdowns
        );
        return status::FAILURE;
    }
    if stale > 0 {
        log::error!(
            "shootdown: {stale} stale reads: a reader in generation {} read {} (a TLB entry the shootdown missed)",
            shared.first_stale.0.load(Ordering::Relaxed),
            shared.first_stale.1.load(Ordering::Relaxed)
        );
        return status::FAILURE;
    }
    status::SUCCESS
}

/// `mode=protect-fault`: see the module docs.
fn protect_fault() -> u8 {
    let page = mm::page_size();
    let target = Page::new();
    let va = SLOT_BASE;
    if let Err(e) = mm::map(va, target.phys(), page, arch::MemAttr::Normal) {
        log::error!("shootdown: map: {e:?}");
        return status::FAILURE;
    }
    let step = Arc::new(AtomicUsize::new(0));
    let thread = {
        let step = step.clone();
        Builder::new()
            .name("shootdown-store")
            .pin(1)
            .spawn(move || {
                mm::probe_write(va, 1); // Caches a writable translation.
                step.store(1, Ordering::Release);
                while step.load(Ordering::Acquire) < 2 {
                    core::hint::spin_loop();
                }
                kernel::println!("shootdown: CPU 1 stores after protect returned");
                mm::probe_write(va, 2); // Must fault.
                log::error!("shootdown: the store went through: CPU 1 used a stale writable entry");
                step.store(3, Ordering::Release);
            })
    };
    let Ok(thread) = thread else {
        log::error!("shootdown: cannot start the storing thread");
        return status::FAILURE;
    };
    while step.load(Ordering::Acquire) < 1 {
        sched::yield_now();
    }
    if let Err(e) = mm::protect(va, page, Access::ReadOnly) {
        log::error!("shootdown: protect: {e:?}");
        return status::FAILURE;
    }
    step.store(2, Ordering::Release);
    thread.join();
    status::FAILURE
}

pub fn main(args: &[&str]) -> u8 {
    let config = match parse(args, smp::online_count()) {
        Ok(config) => config,
        Err(why) => {
            log::error!("{why}");
            return status::USAGE;
        }
    };
    match config.mode {
        Mode::Remap => remap(config),
        Mode::ProtectFault => protect_fault(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let c = parse(&["ms=50", "cpus=3"], 4).unwrap();
        assert_eq!(
            (c.duration, c.cpus, c.mode),
            (Duration::from_millis(50), 3, Mode::Remap)
        );
        assert_eq!(parse(&["rounds=7"], 2).unwrap().rounds, Some(7));
        assert_eq!(
            parse(&["mode=protect-fault"], 2).unwrap().mode,
            Mode::ProtectFault
        );
        assert!(parse(&["cpus=1"], 4).unwrap_err().contains("2..=4"));
        assert!(parse(&[], 1).unwrap_err().contains("at least 2"));
        assert!(parse(&["x=1"], 4).unwrap_err().contains("valid:"));
        assert_eq!(parse(&["nap=5"], 2).unwrap().nap, Some(5));
        assert!(parse(&["nap=0"], 2).is_err());
    }

    #[test]
    fn generations_alternate_slots() {
        assert_ne!(slot(4), slot(5));
        assert_eq!(slot(4), slot(6));
    }
}
