//! The boot sequence, as contracts between phases.
//!
//! | phase | runs on | requires | provides |
//! |---|---|---|---|
//! | early | boot CPU | MMU on (boot map), stack, `.bss` zeroed, IRQs masked | [`BootInfo`](crate::bootinfo::BootInfo), console, trap hooks, RAM mapped, heap, log, PV probed |
//! | late | boot CPU | early | own CPU's interrupts and tick, secondaries online, banner, boot args checked |
//! | secondary | each other CPU | early done; MMU on, own stack | its interrupts and tick; then idle, running posted jobs |
//! | app | boot CPU | late | runs `app=NAME`; its status ends the run |

use core::fmt::Write as _;

use arch::{BootHandoff, Cpu, Devices, Interrupts, Irq, Power, Timer, TrapHooks};

use crate::app::{self, App};
use crate::bootargs;
use crate::bootinfo::{self, BootInfo};
use crate::exit::{exit, status};
use crate::heap::Heap;
use crate::{console, mm, percpu, pv, sched, smp, sync, time, A};

/// Version printed in the banner.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn on_irq(irq: Irq) {
    let fired_ns = matches!(irq, Irq::Timer).then(time::timer_fired_ns);
    sched::on_irq_entry(fired_ns);
    match irq {
        Irq::Ipi => smp::on_ipi(),
        Irq::Timer => time::on_timer(),
        Irq::Other(n) => log::warn!("unexpected interrupt {n}"),
    }
}

const TRAP_HOOKS: TrapHooks = TrapHooks {
    irq: on_irq,
    irq_exit: sched::on_irq_exit,
    fatal: crate::exit::fatal,
};

/// Ends the run without a console to say why: nothing else can be done.
fn die_silently() -> ! {
    A::power_off()
}

/// The boot CPU's path from the arch entry to the app.
pub fn primary(handoff: &BootHandoff, heap: &'static Heap, apps: &'static [App]) -> ! {
    let mut phases = Phases::new(handoff.entry_ticks);
    phases.end("entry");
    // --- early ---
    // SAFETY: the arch entry checked the FDT magic or uses the board's fixed
    // DTB address; the blob stays mapped and unmodified for ever.
    let Ok(fdt) = (unsafe { fdt::Fdt::from_ptr(handoff.fdt as *const u8) }) else {
        die_silently();
    };
    let parsed = bootinfo::parse(&fdt, *handoff, A::hw_id());
    phases.end("fdt");
    let cpu_ids: &[u64] = match &parsed {
        Ok(info) => &info.cpu_hw_ids,
        Err(_) => &[],
    };
    if let Err(e) = A::init_platform(&fdt, cpu_ids, TRAP_HOOKS) {
        console::print_line(format_args!("lodger: platform setup failed: {e}"));
        exit(status::BAD_PLATFORM);
    }
    phases.end("platform");
    let info = match parsed {
        Ok(info) => bootinfo::set(info),
        Err(e) => {
            console::print_line(format_args!("lodger: bad FDT: {e}"));
            exit(status::BAD_PLATFORM);
        }
    };
    if let Err(e) = mm::map_ram(info) {
        console::print_line(format_args!("lodger: cannot map RAM: {e:?}"));
        exit(status::BAD_PLATFORM);
    }
    phases.end("ram");
    let heap_ranges = mm::heap_ranges(info);
    if heap_ranges.is_empty() {
        console::print_line(format_args!(
            "lodger: no RAM left for the heap after the image"
        ));
        exit(status::BAD_PLATFORM);
    }
    for (start, end) in heap_ranges {
        // SAFETY: each range is mapped RAM outside the image, the loader's
        // data and the FDT, used by nothing else; the ranges are disjoint,
        // and there are no more of them than the heap takes.
        unsafe { heap.add_range(start, end - start) };
    }
    heap.publish();
    percpu::init(info.cpu_hw_ids.len());
    let args = bootargs::parse(info.bootargs);
    console::init_log(
        args.as_ref()
            .map_or(log::LevelFilter::Info, |a| a.log_level),
    );
    // With bad boot arguments nothing is probed: the run ends after the banner.
    let switches = match &args {
        Ok(args) => args.pv,
        Err(_) => arch::pv::PvSwitches {
            enabled: false,
            ..Default::default()
        },
    };
    phases.end("heap");
    pv::set_steal_accounting(args.as_ref().map_or(true, |a| a.steal_acc));
    pv::init(&switches);
    phases.end("pv");

    // --- late ---
    A::init_cpu(0);
    sched::init_cpu(0);
    time::start_tick();
    smp::mark_online(0);
    A::irq_enable();
    phases.end("cpu0");
    let failed = smp::start_secondaries(info.cpu_hw_ids.len());
    phases.end("secondaries");
    for (cpu, why) in &failed {
        log::error!(
            "CPU {cpu} (hw id {:#x}) not started: {why}",
            info.cpu_hw_ids[*cpu]
        );
    }
    let spin = sync::set_spin_limit(args.as_ref().ok().and_then(|a| a.spin_limit));
    let unqueued = sync::set_unqueued_spins(args.as_ref().ok().and_then(|a| a.unqueued_spins));
    let steals = sync::set_steal_budget(args.as_ref().ok().and_then(|a| a.steal_budget));
    banner(info, heap, spin, unqueued, steals);
    phases.end("banner");

    let args = match args {
        Ok(args) => args,
        Err(e) => {
            log::error!("{e}");
            exit(status::USAGE);
        }
    };
    let Some(app) = app::find(apps, args.app) else {
        log::error!(
            "unknown app `{}`; valid apps: {}",
            args.app,
            app::Names(apps)
        );
        exit(status::USAGE);
    };

    // --- app ---
    let boot_time = time::ticks_between(info.handoff.entry_ticks, A::ticks());
    log::info!(
        "boot time {}.{:03} ms (entry to app start, guest time): {phases}",
        boot_time.as_micros() / 1000,
        boot_time.as_micros() % 1000
    );
    log::info!("app: {} {}", app.name, args.app_args.join(" "));
    let code = (app.main)(&args.app_args);
    exit(code)
}

/// How long each boot phase took, for the boot time line (and the boot
/// benchmark, which reads it).
struct Phases {
    last: u64,
    took: heapless::Vec<(&'static str, u64), 10>,
}

impl Phases {
    fn new(entry_ticks: u64) -> Self {
        Self {
            last: entry_ticks,
            took: heapless::Vec::new(),
        }
    }

    /// The phase `name` ends now.
    fn end(&mut self, name: &'static str) {
        let now = A::ticks();
        let _ = self.took.push((name, now.saturating_sub(self.last)));
        self.last = now;
    }
}

impl core::fmt::Display for Phases {
    /// `fdt 4.6 platform 3.6 ... ms`: each phase in ms, in order.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (name, ticks) in &self.took {
            let us = time::ticks_between(0, *ticks).as_micros();
            write!(f, "{name} {}.{} ", us / 1000, us % 1000 / 100)?;
        }
        f.write_str("ms")
    }
}

/// A secondary CPU's path from the arch entry.
pub fn secondary(cpu: usize) -> ! {
    smp::secondary_main(cpu)
}

fn banner(
    info: &BootInfo,
    heap: &Heap,
    spin: sync::SpinLimit,
    unqueued: sync::Unqueued,
    steals: sync::StealBudget,
) {
    log::info!(
        "lodger {VERSION} ({}), entered at {}",
        A::NAME,
        info.handoff.entered_at
    );
    let mut platform = heapless::String::<192>::new();
    let _ = A::platform_summary(&mut platform);
    log::info!("platform: {platform}");
    let ram: usize = info.memory.iter().map(|r| r.size).sum();
    let heap = heap.stats();
    log::info!(
        "memory: {} MiB in {} region(s) from {:#x}; heap {} MiB in {} range(s)",
        ram >> 20,
        info.memory.len(),
        info.memory[0].start,
        heap.size >> 20,
        heap.ranges
    );
    let mut cpus = heapless::String::<64>::new();
    if info.cpus_in_fdt > info.cpu_hw_ids.len() {
        let _ = write!(
            cpus,
            " ({} in FDT; lodger brings up at most {})",
            info.cpus_in_fdt,
            crate::MAX_CPUS
        );
    }
    log::info!(
        "CPUs online: {} of {}{cpus}; each secondary: {} KiB stack, {} B per-CPU data so far",
        smp::online_count(),
        info.cpu_hw_ids.len(),
        smp::SECONDARY_STACK_SIZE >> 10,
        percpu::percpu_bytes()
    );
    let report = pv::report();
    log::info!("pv: {report}");
    log::info!("pv: probe calls: {}", arch::pv::CallList(&report.calls));
    if let Some(note) = pv::steal_accounting_note() {
        log::info!("pv: steal accounting {note}");
    }
    log::info!(
        "locks: {}; {spin}; {unqueued}; {steals}",
        pv::lock_slow_path_summary()
    );
}
