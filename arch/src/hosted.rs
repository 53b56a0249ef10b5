//! A stand-in [`Arch`] on `std` so the kernel's logic runs under `cargo test`.
//!
//! Each test thread plays one CPU ([`set_cpu_id`]); time is the host's
//! monotonic clock in nanoseconds; the console is stdout. Operations a host
//! process cannot perform (starting CPUs, page tables, IPIs) report failure
//! instead of pretending.

use std::cell::Cell;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::Instant;

use crate::{
    Access, Console, Context, Cpu, Devices, Interrupts, IrqState, MapError, MemAttr, Mmu, Power,
    Pv, ShootdownStats, Smp, Timer, TrapHooks,
};

/// The hosted implementation of [`Arch`].
#[derive(Debug)]
pub struct Hosted;

thread_local! {
    static CPU_ID: Cell<usize> = const { Cell::new(0) };
    static TIMER_ARM: Cell<Option<u64>> = const { Cell::new(None) };
}

/// The delay the calling thread last armed its timer with, taken (tests).
pub fn take_timer_arm() -> Option<u64> {
    TIMER_ARM.with(Cell::take)
}

/// Makes the calling thread act as logical CPU `cpu`.
pub fn set_cpu_id(cpu: usize) {
    assert!(cpu < crate::MAX_CPUS);
    CPU_ID.with(|c| c.set(cpu));
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Cpu for Hosted {
    const NAME: &'static str = "hosted";

    fn cpu_id() -> usize {
        CPU_ID.with(Cell::get)
    }

    fn hw_id() -> u64 {
        Self::cpu_id() as u64
    }

    fn wait_for_interrupt() {
        std::thread::yield_now();
    }

    fn spin_hint() {
        std::hint::spin_loop();
    }
}

impl Interrupts for Hosted {
    fn irq_save() -> IrqState {
        IrqState(0)
    }

    fn irq_restore(_: IrqState) {}

    fn irq_enable() {}
}

impl Timer for Hosted {
    fn ticks() -> u64 {
        epoch().elapsed().as_nanos() as u64
    }

    fn ticks_per_sec() -> u64 {
        1_000_000_000
    }

    fn timer_arm(ticks: u64) {
        TIMER_ARM.with(|t| t.set(Some(ticks)));
    }
}

impl Console for Hosted {
    fn console_write(bytes: &[u8]) {
        let _ = std::io::stdout().write_all(bytes);
    }
}

impl Devices for Hosted {
    fn init_platform(_: &fdt::Fdt, _: &[u64], _: TrapHooks) -> Result<(), &'static str> {
        Ok(())
    }

    fn init_cpu(cpu: usize) {
        set_cpu_id(cpu);
    }

    fn platform_summary(out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        out.write_str("hosted test platform")
    }
}

impl Smp for Hosted {
    fn start_cpu(_: usize, _: usize) -> Result<(), &'static str> {
        Err("a hosted test cannot start CPUs")
    }

    fn send_ipi(_: usize) {}
}

impl Context for Hosted {
    fn init_context(_: usize, _: extern "C" fn(usize) -> !, _: usize) -> usize {
        panic!("a hosted test cannot switch threads")
    }

    unsafe fn switch_context(_: *mut usize, _: usize) {
        panic!("a hosted test cannot switch threads")
    }
}

impl Mmu for Hosted {
    const PAGE_SIZE: usize = 4096;

    const BOOT_RAM_WINDOW: (usize, usize) = (0, 0);

    fn phys_to_virt(pa: usize) -> usize {
        pa
    }

    fn virt_to_phys(va: usize) -> usize {
        va
    }

    fn map_ram(_: usize, _: usize) -> Result<(), MapError> {
        Err(MapError::BadRange)
    }

    fn map(_: usize, _: usize, _: usize, _: MemAttr) -> Result<(), MapError> {
        Err(MapError::BadRange)
    }

    fn unmap(_: usize, _: usize) -> Result<(), MapError> {
        Err(MapError::BadRange)
    }

    fn protect(_: usize, _: usize, _: Access) -> Result<(), MapError> {
        Err(MapError::BadRange)
    }

    fn shootdown_stats() -> ShootdownStats {
        ShootdownStats::default()
    }
}

impl Power for Hosted {
    fn power_off() -> ! {
        panic!("power_off called in a hosted test")
    }
}

impl Pv for Hosted {
    fn pv_probe(_: &crate::pv::PvSwitches) -> crate::pv::PvReport {
        crate::pv::PvReport::new(
            crate::pv::Hypervisor::None,
            crate::pv::note(format_args!("hosted test")),
        )
    }

    fn pv_init_cpu(_: usize) -> Option<crate::pv::FallbackLine> {
        None
    }

    fn pv_steal_ns(_: usize) -> Option<u64> {
        None
    }

    fn pv_vcpu_preempted(_: usize) -> Option<bool> {
        None
    }

    fn pv_check_own_preempted(_: usize) {}

    fn pv_send_ipi_mask(_: crate::pv::CpuMask) -> bool {
        false
    }

    fn pv_kick(_: usize) -> bool {
        false
    }

    fn pv_cpu_off() {}

    // No hypervisor to call: every raw call is unavailable.
    const RAW_CONVENTION: crate::pv::RawConvention = crate::pv::RawConvention::Smccc;

    fn pv_raw_call(_: crate::pv::RawRegs) -> Result<crate::pv::RawRegs, crate::pv::RawCallError> {
        Err(crate::pv::RawCallError::Unavailable)
    }
}
