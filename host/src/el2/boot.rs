//! The boot pCPU, from QEMU's DTB to the guest's first instruction:
//! [`boot_main`] reads what pvhost needs from QEMU's DTB and command line,
//! builds the guest's FDT, loads the guest's ELF image (over QEMU's DTB),
//! publishes the [`Facts`] every pCPU reads and enters the guest as vCPU 0.
//! Each step is a function below, in the order `boot_main` calls them,
//! with what holds before and after it.

use core::ops::Range;
use core::sync::atomic::Ordering;

use arch::abi::arm64::MPIDR_AFFINITY_MASK;
use host::args::{Args, Fault, USAGE};
use host::elf;
use host::fdt_patch::{self, Edits};
use host::hvc::Offer;

use super::pcpu::init_pcpu;
use super::records::set_preempted;
use super::trap::{self, Frame};
use super::vcpu::{POWER_ON, VCPUS};
use super::{console, fail, gic, start, sysreg, Facts, FACTS, MAX_PCPUS};

/// Where QEMU `virt` puts the DTB for an ELF image: the start of RAM.
const QEMU_DTB: u64 = 0x4000_0000;
/// The guest's patched FDT is built here first: QEMU's (about 8 KiB of
/// content) plus the guest's command line.
const FDT_BUF_SIZE: usize = 64 * 1024;

/// The guest's FDT, built before QEMU's (at the same address) is replaced.
static FDT_BUF: spin::Mutex<[u8; FDT_BUF_SIZE]> = spin::Mutex::new([0; FDT_BUF_SIZE]);

/// The boot pCPU: read QEMU's DTB, build the guest's, load the guest's ELF
/// image and enter it as vCPU 0.
///
/// Before (`start.rs`): the EL2 MMU is on with its identity map, `.bss` is
/// zeroed, this pCPU (0) has its stack. After: nothing; the guest runs.
pub extern "C" fn boot_main() -> ! {
    let plan = plan_boot();
    load_guest(&plan);
    publish_facts(&plan);
    gic::init_distributor(plan.gicd, 16 + plan.hyp_ppi);
    enter_boot_vcpu(&plan)
}

/// What the boot pCPU learned before it overwrites QEMU's DTB: nothing in
/// it points into that DTB.
struct BootPlan {
    /// What every pCPU reads once the guest runs ([`publish_facts`]);
    /// `guest_ram` runs from the start of RAM (the guest's FDT there) up to
    /// pvhost.
    facts: Facts,
    gicd: u64,
    /// The hypervisor physical timer's PPI (CNTHP; INTID 16 + this).
    hyp_ppi: u32,
    /// The guest's ELF file, staged by QEMU's loader above pvhost.
    file: &'static [u8],
    /// Its checked segments, inside `guest_ram`.
    image: elf::Image,
    /// The guest's FDT in [`FDT_BUF`]: this many bytes.
    fdt_len: usize,
}

impl BootPlan {
    /// Where the guest's FDT goes: the start of guest RAM.
    fn fdt_range(&self) -> Range<u64> {
        self.facts.guest_ram.start..self.facts.guest_ram.start + self.fdt_len as u64
    }
}

/// Everything up to the point where QEMU's DTB is overwritten, step by
/// step; any step that finds the machine unusable fails (prints why and
/// powers off).
///
/// Before: as for [`boot_main`]. After: the guest's FDT is in
/// [`FDT_BUF`], its ELF image is checked, pvhost's two boot lines are
/// printed; QEMU's DTB is no longer needed.
fn plan_boot() -> BootPlan {
    let fdt = open_qemu_dtb();
    let args = parse_command_line(&fdt);
    let (guest_ram, free_ram) = find_ram(&fdt);
    let (mpidr, pcpus) = find_cpus(&fdt);
    let (gicd, gicr) = find_gic(&fdt);
    let hyp_ppi = find_hyp_timer_ppi(&fdt);
    check_psci_method(&fdt);
    let fdt_len = build_guest_fdt(&fdt, guest_ram.clone(), args.guest);
    let (file, image) = check_guest_image(args.elf_pa, free_ram, guest_ram.clone(), fdt_len);
    let plan = BootPlan {
        facts: Facts {
            offer: Offer {
                time: args.time,
                lock: args.lock,
                sched: args.sched,
            },
            steal: args.steal,
            fault: args.fault,
            guest_ram,
            mpidr,
            pcpus,
            gicr,
            counter_hz: sysreg!("cntfrq_el0"),
        },
        gicd,
        hyp_ppi,
        file,
        image,
        fdt_len,
    };
    announce(&plan, &args);
    plan
}

/// Before: QEMU `virt` put its DTB at the start of RAM (pvhost, an ELF
/// image, is linked above it). After: the DTB is checked (magic, sizes)
/// and readable; the console uses the DTB's stdout UART, if it names one.
fn open_qemu_dtb() -> fdt::Fdt<'static> {
    // SAFETY: QEMU `virt` puts its DTB at the start of RAM for an ELF
    // image linked above it (pvhost is); the EL2 map covers RAM. The `fdt`
    // crate checks the magic and sizes.
    let fdt = match unsafe { fdt::Fdt::from_ptr(QEMU_DTB as *const u8) } {
        Ok(fdt) => fdt,
        Err(e) => fail(format_args!("no DTB at {QEMU_DTB:#x}: {e:?}")),
    };
    if let Some(uart) = fdt
        .chosen()
        .stdout()
        .and_then(|n| n.reg())
        .and_then(|mut r| r.next())
    {
        console::init(uart.starting_address as u64);
    }
    fdt
}

/// After: pvhost's settings from `/chosen/bootargs`; `guest` (what follows
/// `--`) still points into QEMU's DTB.
fn parse_command_line(fdt: &fdt::Fdt<'static>) -> Args<'static> {
    match Args::parse(fdt.chosen().bootargs().unwrap_or("")) {
        Ok(args) => args,
        Err(e) => fail(format_args!("{e}; usage: {USAGE}")),
    }
}

/// After: (guest RAM, free host RAM). Guest RAM runs from the start of the
/// `/memory` region pvhost lives in (where QEMU's DTB is) up to pvhost's
/// image; free host RAM from the end of pvhost's image to the end of that
/// region or of the EL2 map, whichever comes first.
fn find_ram(fdt: &fdt::Fdt<'static>) -> (Range<u64>, Range<u64>) {
    let (host_start, host_end) = start::host_extent();
    if fdt.find_node("/memory").is_none() {
        fail(format_args!("the DTB has no /memory"));
    }
    let Some(ram) = fdt
        .memory()
        .regions()
        .map(|r| {
            let start = r.starting_address as u64;
            start..start + r.size.unwrap_or(0) as u64
        })
        .find(|r| r.contains(&host_start))
    else {
        fail(format_args!(
            "pvhost at {host_start:#x} is in no /memory region"
        ));
    };
    let ram_end = ram.end.min(start::MAPPED_RAM_END);
    let guest_ram = ram.start..host_start;
    if guest_ram.start != QEMU_DTB {
        fail(format_args!(
            "RAM starts at {:#x}, not {QEMU_DTB:#x}",
            ram.start
        ));
    }
    (guest_ram, host_end..ram_end)
}

/// After: the MPIDR affinity of each of the DTB's first [`MAX_PCPUS`]
/// CPUs, and how many there are (at least one); this pCPU is the first.
fn find_cpus(fdt: &fdt::Fdt<'static>) -> ([u64; MAX_PCPUS], usize) {
    let mut mpidr = [0; MAX_PCPUS];
    let mut pcpus = 0;
    for cpu in fdt.cpus() {
        if pcpus == MAX_PCPUS {
            console::line(format_args!(
                "pvhost: only the first {MAX_PCPUS} CPUs of the DTB are used"
            ));
            break;
        }
        mpidr[pcpus] = cpu.ids().first() as u64;
        pcpus += 1;
    }
    let boot_mpidr = sysreg!("mpidr_el1") & MPIDR_AFFINITY_MASK;
    if pcpus == 0 || mpidr[0] != boot_mpidr {
        fail(format_args!(
            "the boot CPU {boot_mpidr:#x} is not the DTB's first CPU"
        ));
    }
    (mpidr, pcpus)
}

/// After: the GICv3's (distributor, first redistributor) addresses.
fn find_gic(fdt: &fdt::Fdt<'static>) -> (u64, u64) {
    let Some(gic) = fdt.find_compatible(&["arm,gic-v3"]) else {
        fail(format_args!("the DTB has no arm,gic-v3"));
    };
    let mut regs = gic.reg().into_iter().flatten();
    let (Some(gicd), Some(gicr)) = (regs.next(), regs.next()) else {
        fail(format_args!(
            "the GICv3 node lacks its distributor or redistributors"
        ));
    };
    (gicd.starting_address as u64, gicr.starting_address as u64)
}

/// After: CNTHP's PPI number (below 16), from the timer node.
fn find_hyp_timer_ppi(fdt: &fdt::Fdt<'static>) -> u32 {
    // The timer's interrupts: secure, non-secure physical, virtual,
    // hypervisor physical (then hypervisor virtual), as (type, PPI, flags).
    let hyp_ppi = fdt
        .find_compatible(&["arm,armv8-timer"])
        .and_then(|t| t.property("interrupts"))
        .and_then(|p| p.value.get(3 * 12 + 4..3 * 12 + 8))
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let Some(hyp_ppi) = hyp_ppi.filter(|&p| p < 16) else {
        fail(format_args!("the DTB's timer has no hypervisor timer PPI"));
    };
    hyp_ppi
}

/// After: PSCI is known to be reachable by SMC from EL2, where pvhost
/// forwards the guest's PSCI calls ([`super::power`]).
fn check_psci_method(fdt: &fdt::Fdt<'static>) {
    let method = fdt
        .find_node("/psci")
        .and_then(|n| n.property("method"))
        .and_then(|p| p.as_str());
    if method != Some("smc") {
        fail(format_args!(
            "PSCI method {method:?}: pvhost forwards PSCI to the firmware by smc (QEMU virtualization=on)"
        ));
    }
}

/// Builds the guest's FDT aside, in [`FDT_BUF`] (QEMU's is replaced by it
/// in [`load_guest`]): QEMU's with `/memory` cut to `guest_ram`, PSCI by
/// HVC and `guest_args` as its boot arguments. After: its length.
fn build_guest_fdt(fdt: &fdt::Fdt<'static>, guest_ram: Range<u64>, guest_args: &str) -> usize {
    let mut buf = FDT_BUF.lock();
    let edits = Edits {
        guest_ram,
        psci_method: "hvc",
        bootargs: guest_args,
    };
    // SAFETY: the DTB's bytes, `total_size` of them from its start, in RAM.
    let dtb = unsafe { core::slice::from_raw_parts(QEMU_DTB as *const u8, fdt.total_size()) };
    match fdt_patch::patch(dtb, &edits, &mut buf[..]) {
        Ok(n) => n,
        Err(e) => fail(format_args!("cannot patch the DTB: {e}")),
    }
}

/// Finds and checks the guest's ELF file (`pvhost.elf=ADDR`, in
/// `free_ram`). After: the file (up to the end of `free_ram`) and its
/// image, whose segments lie in `guest_ram` clear of the FDT's first
/// `fdt_len` bytes.
fn check_guest_image(
    elf_pa: Option<u64>,
    free_ram: Range<u64>,
    guest_ram: Range<u64>,
    fdt_len: usize,
) -> (&'static [u8], elf::Image) {
    let (host_end, ram_end) = (free_ram.start, free_ram.end);
    let Some(elf_pa) = elf_pa else {
        fail(format_args!(
            "no pvhost.elf=ADDR: where is the guest's ELF file?"
        ));
    };
    if elf_pa < host_end || elf_pa >= ram_end {
        fail(format_args!(
            "pvhost.elf={elf_pa:#x} is not in free host RAM [{host_end:#x}, {ram_end:#x})"
        ));
    }
    // SAFETY: RAM from the staged file to the end of the mapped RAM: host
    // memory nobody else uses; the ELF parser reads only inside it.
    let file =
        unsafe { core::slice::from_raw_parts(elf_pa as *const u8, (ram_end - elf_pa) as usize) };
    let image = match elf::parse(file, guest_ram.clone()) {
        Ok(image) => image,
        Err(e) => fail(format_args!("guest ELF at {elf_pa:#x}: {e}")),
    };
    let fdt_range = guest_ram.start..guest_ram.start + fdt_len as u64;
    if image
        .segments()
        .any(|s| s.pa < fdt_range.end && fdt_range.start < s.memory().end)
    {
        fail(format_args!(
            "the guest image overlaps its FDT at {:#x}",
            fdt_range.start
        ));
    }
    (file, image)
}

/// Prints pvhost's two boot lines: the machine, then what it offers.
/// Before: `args.guest` still readable (QEMU's DTB intact).
fn announce(plan: &BootPlan, args: &Args<'_>) {
    let on_off = |b: bool| if b { "on" } else { "off" };
    console::line(format_args!(
        "pvhost: EL2 host, {} pCPUs, guest RAM [{:#x}, {:#x}), guest entry {:#x}, FDT at {:#x} ({} bytes)",
        plan.facts.pcpus,
        plan.facts.guest_ram.start,
        plan.facts.guest_ram.end,
        plan.image.entry,
        plan.fdt_range().start,
        plan.fdt_len
    ));
    console::line(format_args!(
        "pvhost: offers PV time {}, PV lock v2 {}, PV sched {}; steal {}; fault {:?}; guest args \"{}\"",
        on_off(args.time),
        on_off(args.lock),
        on_off(args.sched),
        args.steal,
        args.fault,
        args.guest
    ));
}

/// Copies the guest's segments and FDT into guest RAM. Before: the plan
/// is checked. After: QEMU's DTB is overwritten; the guest's image and FDT
/// are in guest RAM, written back to the point of coherency.
fn load_guest(plan: &BootPlan) {
    for s in plan.image.segments() {
        let len = s.file.end - s.file.start;
        // SAFETY: `file[s.file]` is inside the staged file (checked by the
        // parser) and `[s.pa, s.pa + memsz)` inside guest RAM; the two do
        // not overlap (guest RAM ends where pvhost's image starts, the file
        // is above it).
        unsafe {
            core::ptr::copy_nonoverlapping(
                plan.file[s.file.clone()].as_ptr(),
                s.pa as *mut u8,
                len,
            );
            core::ptr::write_bytes((s.pa + len as u64) as *mut u8, 0, s.zeroed as usize);
        }
    }
    let fdt_range = plan.fdt_range();
    let buf = FDT_BUF.lock();
    // SAFETY: the FDT slot at the start of guest RAM, checked against the
    // image by `check_guest_image`; the buffer is pvhost's.
    unsafe {
        core::ptr::copy_nonoverlapping(buf.as_ptr(), fdt_range.start as *mut u8, plan.fdt_len);
    }
    drop(buf);
    clean_to_poc(plan.facts.guest_ram.start..plan.image.extent().end.max(fdt_range.end));
}

/// Writes back the data cache over `range` to the point of coherency and
/// drops stale instructions, so the guest (MMU and caches off at first)
/// sees what pvhost wrote through its cacheable map.
fn clean_to_poc(range: Range<u64>) {
    // CTR_EL0.DminLine: log2 of the smallest data cache line in words.
    let line = 4u64 << ((sysreg!("ctr_el0") >> 16) & 0xf);
    let mut addr = range.start & !(line - 1);
    while addr < range.end {
        // SAFETY: a cache clean by address of mapped RAM changes no data.
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) addr, options(nostack, preserves_flags)) };
        addr += line;
    }
    // SAFETY: barriers and an instruction cache invalidation only.
    unsafe { core::arch::asm!("dsb sy", "ic iallu", "dsb sy", "isb", options(nostack)) };
}

/// After: [`super::facts`] answers on every pCPU; with
/// `pvhost.fault=stuck-preempted` every vCPU's PV lock flag reads
/// preempted from the start.
fn publish_facts(plan: &BootPlan) {
    let facts = FACTS.call_once(|| plan.facts.clone());
    if facts.fault == Fault::StuckPreempted {
        for cpu in 0..facts.pcpus {
            set_preempted(cpu, true);
        }
    }
}

/// Before: the guest is loaded, the facts published, the GIC distributor
/// set up for pvhost's interrupts. After: vCPU 0 runs the guest's entry,
/// x0 = its FDT, on this pCPU (with [`init_pcpu`]'s EL2 state).
fn enter_boot_vcpu(plan: &BootPlan) -> ! {
    VCPUS[0].power.store(POWER_ON, Ordering::Release);
    init_pcpu(0);
    trap::enter_guest(
        0,
        Frame::entry(
            plan.image.entry,
            trap::SPSR_EL1H_MASKED,
            plan.facts.guest_ram.start,
        ),
    )
}
