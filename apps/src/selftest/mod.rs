//! In-guest tests of the kernel, run on every online CPU.
//!
//! Each test returns `Ok(detail)` or `Err(reason)`; the runner prints one line
//! per test and ends with `N passed, M failed` (exit status 0 only if M = 0).
//! A failed test that judges guest time against wall time ([`TIMED`]) says
//! so, `test NAME ... FAILED (timed): why`: a host that keeps the vCPUs
//! from running can fail it without a kernel fault, and the boot tests
//! judge such a failure against the interference they measured.

use alloc::string::String;
use alloc::vec::Vec;
use alloc::{format, vec};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;

use kernel::exit::status;
use kernel::percpu::PerCpu;
use kernel::sync::SpinNoIrq;
use kernel::{per_cpu, smp, time};

mod threads;

type TestResult = Result<String, String>;
type Test = fn() -> TestResult;

/// The tests whose verdict depends on the vCPUs getting the host CPU on
/// time: ticks counted over a spin, sleep overshoot, accounting slack.
const TIMED: &[&str] = &["timer-ticks", "sleep-accuracy", "cpu-accounting"];

const TESTS: &[(&str, Test)] = &[
    ("all-cpus-online", all_cpus_online),
    ("run-on-every-cpu", run_on_every_cpu),
    ("ipi-round-trip", ipi_round_trip),
    ("timer-ticks", timer_ticks),
    ("heap-smp", heap_smp),
    ("heap-covers-ram", heap_covers_ram),
    ("percpu-isolation", percpu_isolation),
    ("atomic-counter", atomic_counter),
    ("lock-counter", lock_counter),
    ("page-map-unmap", page_map_unmap),
    ("threads-create-join", threads::create_join),
    ("thread-preemption", threads::preemption),
    ("sleep-accuracy", threads::sleep_accuracy),
    ("no-lost-wakeups", threads::no_lost_wakeups),
    ("mutex-condvar", threads::mutex_condvar),
    ("mutex-hand-off", threads::mutex_hand_off),
    ("cpu-accounting", threads::accounting),
    ("job-on-busy-cpu", threads::job_on_busy_cpu),
];

pub fn main(args: &[&str]) -> u8 {
    // Each argument selects the tests whose name contains it; none: all.
    let selected = |name: &str| args.is_empty() || args.iter().any(|f| name.contains(f));
    let mut passed = 0;
    let mut failed = 0;
    for (name, test) in TESTS.iter().filter(|(n, _)| selected(n)) {
        match test() {
            Ok(detail) => {
                passed += 1;
                log::info!("test {name} ... ok ({detail})");
            }
            Err(why) => {
                failed += 1;
                let timed = if TIMED.contains(name) { " (timed)" } else { "" };
                log::error!("test {name} ... FAILED{timed}: {why}");
            }
        }
    }
    kernel::println!("{passed} passed, {failed} failed");
    if failed == 0 && passed > 0 {
        status::SUCCESS
    } else {
        status::FAILURE
    }
}

fn all_cpus_online() -> TestResult {
    let expected = kernel::bootinfo::boot_info().cpu_hw_ids.len();
    let online = smp::online_count();
    if online == expected {
        Ok(format!("{online} of {expected}"))
    } else {
        Err(format!("{online} CPUs online, FDT lists {expected}"))
    }
}

/// Every online CPU runs a posted job, and reports its own id.
fn run_on_every_cpu() -> TestResult {
    static SEEN: PerCpu<AtomicUsize> = per_cpu!(AtomicUsize::new(usize::MAX));
    smp::run_on_all(&|cpu| SEEN.of(cpu).store(kernel::cpu_id(), Ordering::Relaxed));
    for cpu in smp::online_cpus() {
        let seen = SEEN.of(cpu).load(Ordering::Relaxed);
        if seen != cpu {
            return Err(format!("job for CPU {cpu} ran on CPU {seen}"));
        }
    }
    Ok(format!("{} CPUs", smp::online_count()))
}

/// CPU 0 sends an IPI to each other CPU, whose handler sends one back.
fn ipi_round_trip() -> TestResult {
    let mut worst = Duration::ZERO;
    let mut rounds = 0;
    for cpu in smp::online_cpus().filter(|&c| c != kernel::cpu_id()) {
        for _ in 0..10 {
            let rtt = smp::ping(cpu, Duration::from_secs(1))
                .ok_or(format!("CPU {cpu} did not answer within 1 s"))?;
            worst = worst.max(rtt);
            rounds += 1;
        }
    }
    Ok(format!(
        "{rounds} round trips, worst {} us",
        worst.as_micros()
    ))
}

/// Every CPU's tick advances while CPU 0 waits.
fn timer_ticks() -> TestResult {
    let wait = Duration::from_millis(100);
    let before: Vec<u64> = smp::online_cpus().map(time::ticks_on).collect();
    time::spin_for(wait);
    let expected_min = 2;
    let mut least = u64::MAX;
    for (cpu, before) in smp::online_cpus().zip(before) {
        let got = time::ticks_on(cpu) - before;
        if got < expected_min {
            return Err(format!(
                "CPU {cpu} took {got} ticks in {} ms (< {expected_min})",
                wait.as_millis()
            ));
        }
        least = least.min(got);
    }
    Ok(format!(
        "at least {least} ticks per CPU in {} ms at {} Hz",
        wait.as_millis(),
        time::TICK_HZ
    ))
}

/// Tests whose total work grows with the CPU count and whose one shared
/// lock serialises it (heap-smp, lock-counter, mutex-condvar) take at most
/// this many CPUs: 16 contenders are already 8 per core on a 2-core
/// machine, and at 64 vCPUs the whole count took minutes under TCG.
pub const CONTENDERS_MAX: usize = 16;

/// The CPUs a contention test runs on: the first [`CONTENDERS_MAX`] online.
pub fn contenders() -> impl Iterator<Item = usize> + Clone {
    smp::online_cpus().take(CONTENDERS_MAX)
}

/// All CPUs (up to [`CONTENDERS_MAX`]) allocate, fill, check and free blocks
/// of many sizes at once.
fn heap_smp() -> TestResult {
    static ERRORS: AtomicUsize = AtomicUsize::new(0);
    ERRORS.store(0, Ordering::Relaxed);
    smp::run_on_cpus(contenders(), &|cpu| {
        let mut live: Vec<Vec<u64>> = Vec::new();
        for i in 0..2000usize {
            let len = (cpu * 131 + i * 17) % 700 + 1;
            let pattern = (cpu as u64) << 48 | i as u64;
            live.push(vec![pattern; len]);
            if live.len() > 16 {
                let old = live.remove(i % live.len());
                if old.iter().any(|&w| w >> 48 != cpu as u64) {
                    ERRORS.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        for block in &live {
            if block.windows(2).any(|w| w[0] != w[1]) {
                ERRORS.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    match ERRORS.load(Ordering::Relaxed) {
        0 => Ok(format!("{} CPUs x 2000 allocations", contenders().count())),
        n => Err(format!("{n} corrupted blocks")),
    }
}

/// The heap spans all RAM but the image and what the loader put below it
/// (every region: LoongArch's high RAM too), and all of it is mapped: the
/// heap is filled with 64 MiB blocks, each written and read back at both
/// ends, until only a reserve is left for everyone else; every range of
/// two blocks or more must have given some (LoongArch with 257 MiB has a
/// high range of 1 MiB: covered, but too small to fill). (Sparse on
/// purpose: QEMU backs guest RAM with 2 MiB host pages, zeroed on first
/// touch, and touching every MiB of 4 GiB took 11 s under TCG.)
fn heap_covers_ram() -> TestResult {
    const BLOCK_WORDS: usize = (64 << 20) / 8;
    /// Left free so that nothing else runs out meanwhile.
    const RESERVE: usize = 16 << 20;
    /// RAM the heap may leave out: the image, the FDT, the loader's data.
    const NOT_HEAP_MAX: usize = 16 << 20;
    let info = kernel::bootinfo::boot_info();
    let ram: usize = info.memory.iter().map(|r| r.size).sum();
    let heap = kernel::heap::stats();
    let ranges = kernel::heap::ranges();
    if ram - heap.size > NOT_HEAP_MAX {
        return Err(format!(
            "heap {} MiB of {} MiB of RAM: {} MiB left out",
            heap.size >> 20,
            ram >> 20,
            (ram - heap.size) >> 20
        ));
    }
    for &(start, end) in &ranges {
        let (pa, pa_end) = (
            kernel::mm::virt_to_phys(start),
            kernel::mm::virt_to_phys(end - 1) + 1,
        );
        if !info
            .memory
            .iter()
            .any(|r| r.start <= pa && pa_end <= r.end())
        {
            return Err(format!("heap range {pa:#x}..{pa_end:#x} is not RAM"));
        }
    }
    let mut blocks: Vec<Vec<u64>> = Vec::new();
    let mut per_range = vec![0usize; ranges.len()];
    let mut highest = 0;
    loop {
        let now = kernel::heap::stats();
        if now.size - now.used < RESERVE + BLOCK_WORDS * 8 {
            break;
        }
        let mut block: Vec<u64> = Vec::new();
        if block.try_reserve_exact(BLOCK_WORDS).is_err() {
            break; // Free space, but no 64 MiB in one piece.
        }
        let at = block.as_ptr() as usize;
        if let Some(i) = ranges.iter().position(|&(s, e)| s <= at && at < e) {
            per_range[i] += 1;
        }
        let words = &mut block.spare_capacity_mut()[..BLOCK_WORDS];
        for w in [0, BLOCK_WORDS - 1] {
            let addr = at + w * 8;
            let pattern = addr as u64 ^ 0x5a5a_5a5a_5a5a_5a5a;
            words[w].write(pattern);
            let seen = kernel::mm::probe_read(addr);
            if seen != pattern {
                return Err(format!(
                    "wrote {pattern:#x} at {addr:#x}, read back {seen:#x}"
                ));
            }
            highest = highest.max(addr);
        }
        blocks.push(block);
    }
    let filled = blocks.len();
    drop(blocks);
    let fillable = |i: usize| ranges[i].1 - ranges[i].0 >= 2 * BLOCK_WORDS * 8;
    if let Some(i) = (0..ranges.len()).find(|&i| per_range[i] == 0 && fillable(i)) {
        return Err(format!(
            "no 64 MiB block came from heap range {i} ({:#x}..{:#x}); blocks per range {per_range:?}",
            ranges[i].0, ranges[i].1
        ));
    }
    Ok(format!(
        "RAM {} MiB in {} region(s), heap {} MiB in {} range(s); {filled} blocks of 64 MiB per range {per_range:?} written and read back up to PA {:#x}",
        ram >> 20,
        info.memory.len(),
        heap.size >> 20,
        ranges.len(),
        kernel::mm::virt_to_phys(highest)
    ))
}

/// Each CPU writes only its own per-CPU slot and always reads back its value.
fn percpu_isolation() -> TestResult {
    static SLOT: PerCpu<AtomicU64> = per_cpu!(AtomicU64::new(0));
    static ERRORS: AtomicUsize = AtomicUsize::new(0);
    const ROUNDS: u64 = 20_000;
    ERRORS.store(0, Ordering::Relaxed);
    smp::run_on_all(&|cpu| {
        for i in 0..ROUNDS {
            let value = (cpu as u64) << 32 | i;
            SLOT.current().store(value, Ordering::Relaxed);
            if SLOT.current().load(Ordering::Relaxed) != value {
                ERRORS.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    for cpu in smp::online_cpus() {
        let last = SLOT.of(cpu).load(Ordering::Relaxed);
        if last != (cpu as u64) << 32 | (ROUNDS - 1) {
            return Err(format!("CPU {cpu}'s slot holds {last:#x}"));
        }
    }
    match ERRORS.load(Ordering::Relaxed) {
        0 => Ok(format!("{ROUNDS} writes per CPU")),
        n => Err(format!("{n} reads saw another CPU's value")),
    }
}

/// All CPUs increment one shared atomic counter.
fn atomic_counter() -> TestResult {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const PER_CPU: u64 = 200_000;
    COUNTER.store(0, Ordering::Relaxed);
    smp::run_on_all(&|_| {
        for _ in 0..PER_CPU {
            COUNTER.fetch_add(1, Ordering::Relaxed);
        }
    });
    let expected = PER_CPU * smp::online_count() as u64;
    match COUNTER.load(Ordering::Relaxed) {
        n if n == expected => Ok(format!("{n} increments")),
        n => Err(format!("{n} increments counted, {expected} made")),
    }
}

/// All CPUs (up to [`CONTENDERS_MAX`]) increment a plain counter under the
/// IRQ-safe spinlock.
fn lock_counter() -> TestResult {
    static COUNTER: SpinNoIrq<u64> = SpinNoIrq::new(0);
    const PER_CPU: u64 = 50_000;
    *COUNTER.lock() = 0;
    smp::run_on_cpus(contenders(), &|_| {
        for _ in 0..PER_CPU {
            *COUNTER.lock() += 1;
        }
    });
    let expected = PER_CPU * contenders().count() as u64;
    match *COUNTER.lock() {
        n if n == expected => Ok(format!("{n} increments")),
        n => Err(format!(
            "{n} increments counted, {expected} made: lost updates"
        )),
    }
}

/// Maps a heap page at a second address, checks both views agree, unmaps it.
fn page_map_unmap() -> TestResult {
    const ALIAS: usize = 0x10_0000_0000; // 64 GiB: unused by RAM or devices.
    let page = kernel::mm::page_size();
    let mut buf: Vec<u64> = vec![0; 2 * page / 8];
    let start = buf.as_ptr() as usize;
    let aligned = start.next_multiple_of(page);
    let index = (aligned - start) / 8;
    buf[index] = 0x1234_5678_9abc_def0;
    kernel::mm::map(
        ALIAS,
        kernel::mm::virt_to_phys(aligned),
        page,
        arch::MemAttr::Normal,
    )
    .map_err(|e| format!("map: {e:?}"))?;
    let seen = kernel::mm::probe_read(ALIAS);
    // Every CPU must see the new translation too.
    let agree = AtomicUsize::new(0);
    smp::run_on_all(&|_| {
        if kernel::mm::probe_read(ALIAS) == 0x1234_5678_9abc_def0 {
            agree.fetch_add(1, Ordering::Relaxed);
        }
    });
    kernel::mm::unmap(ALIAS, page).map_err(|e| format!("unmap: {e:?}"))?;
    if seen != buf[index] {
        return Err(format!(
            "alias read {seen:#x}, original holds {:#x}",
            buf[index]
        ));
    }
    let agree = agree.load(Ordering::Relaxed);
    if agree != smp::online_count() {
        return Err(format!("only {agree} CPUs saw the new mapping"));
    }
    Ok(format!(
        "alias at {ALIAS:#x} seen by {agree} CPUs, then unmapped"
    ))
}
