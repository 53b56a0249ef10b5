//! Boot facts, read once from the FDT and kept for everyone else
//! ([`boot_info`]). The platform devices the arch layer needs are read by
//! [`arch::Devices::init_platform`] from the same FDT.

use fdt::Fdt;
use heapless::Vec;

use crate::MAX_CPUS;

/// The most RAM regions lodger tracks.
pub const MAX_MEMORY_REGIONS: usize = 8;

/// A range of physical RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemRegion {
    pub start: usize,
    pub size: usize,
}

impl MemRegion {
    pub fn end(&self) -> usize {
        self.start + self.size
    }
}

/// What the kernel learned at boot.
#[derive(Debug)]
pub struct BootInfo {
    pub handoff: arch::BootHandoff,
    /// RAM from every `/memory` node, by address.
    pub memory: Vec<MemRegion, MAX_MEMORY_REGIONS>,
    /// Hardware id (aarch64: MPIDR; LoongArch: physical id) of each logical
    /// CPU, boot CPU first.
    pub cpu_hw_ids: Vec<u64, MAX_CPUS>,
    /// CPUs the FDT lists (may exceed `cpu_hw_ids.len()`).
    pub cpus_in_fdt: usize,
    /// `/chosen/bootargs`, else the loader's command line from the handoff,
    /// else empty.
    pub bootargs: &'static str,
    /// The FDT blob's extent (virtual), so nothing allocates over it.
    pub fdt_range: (usize, usize),
}

static BOOT_INFO: spin::Once<BootInfo> = spin::Once::new();

/// The boot facts; available from early boot on.
pub fn boot_info() -> &'static BootInfo {
    BOOT_INFO
        .get()
        .expect("boot_info() before the FDT was parsed")
}

pub(crate) fn set(info: BootInfo) -> &'static BootInfo {
    BOOT_INFO.call_once(|| info)
}

/// RAM from every `/memory@...` node, sorted by address. QEMU's LoongArch
/// `virt` has two beyond 256 MiB (low RAM at 0, the rest high), listed
/// high first; `Fdt::memory()` would read only that first node.
fn memory(fdt: &Fdt<'_>) -> Result<Vec<MemRegion, MAX_MEMORY_REGIONS>, &'static str> {
    let mut memory: Vec<MemRegion, MAX_MEMORY_REGIONS> = Vec::new();
    let mut nodes = 0;
    for node in fdt.find_all_nodes("/memory") {
        nodes += 1;
        for region in node.reg().into_iter().flatten() {
            let Some(size) = region.size.filter(|&s| s > 0) else {
                continue;
            };
            memory
                .push(MemRegion {
                    start: region.starting_address as usize,
                    size,
                })
                .map_err(|_| "FDT lists more RAM regions than lodger tracks")?;
        }
    }
    if nodes == 0 {
        return Err("FDT has no /memory node");
    }
    if memory.is_empty() {
        return Err("FDT /memory lists no RAM");
    }
    memory.sort_unstable_by_key(|r| r.start);
    Ok(memory)
}

/// Reads memory, CPUs and boot arguments from `fdt`.
///
/// `boot_cpu_hw_id` is the hardware id of the CPU running this code; it
/// becomes logical CPU 0 wherever the FDT lists it.
pub fn parse(
    fdt: &Fdt<'static>,
    handoff: arch::BootHandoff,
    boot_cpu_hw_id: u64,
) -> Result<BootInfo, &'static str> {
    // `Fdt::cpus()` panics without the node: check first.
    if fdt.find_node("/cpus").is_none() {
        return Err("FDT has no /cpus node");
    }
    let memory = memory(fdt)?;

    // The boot CPU is logical CPU 0; the others follow in FDT order, as many
    // as fit (the rest are reported in the banner and left off).
    let mut cpu_hw_ids: Vec<u64, MAX_CPUS> = Vec::new();
    let _ = cpu_hw_ids.push(boot_cpu_hw_id);
    let mut cpus_in_fdt = 0;
    let mut boot_cpu_listed = false;
    for cpu in fdt.cpus() {
        let enabled = cpu
            .property("status")
            .and_then(|p| p.as_str())
            .is_none_or(|s| s == "okay" || s == "ok");
        if !enabled {
            continue;
        }
        cpus_in_fdt += 1;
        let id = cpu.ids().first() as u64;
        if id == boot_cpu_hw_id {
            boot_cpu_listed = true;
        } else {
            let _ = cpu_hw_ids.push(id);
        }
    }
    if !boot_cpu_listed {
        return Err("the boot CPU is not among the FDT's CPUs");
    }

    let fdt_start = handoff.fdt;
    Ok(BootInfo {
        handoff,
        memory,
        cpu_hw_ids,
        cpus_in_fdt,
        bootargs: fdt.chosen().bootargs().or(handoff.cmdline).unwrap_or(""),
        fdt_range: (fdt_start, fdt_start + fdt.total_size()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU 10.0's `virt` device trees (`-M virt,dumpdtb=FILE`, the zero
    /// padding after the strings block cut off): aarch64 `-m 4G`,
    /// loongarch64 `-m 128M` and `-m 1G`.
    const AARCH64_4G: &[u8] = include_bytes!("testdata/aarch64-virt-4g.dtb");
    const LOONGARCH64_128M: &[u8] = include_bytes!("testdata/loongarch64-virt-128m.dtb");
    const LOONGARCH64_1G: &[u8] = include_bytes!("testdata/loongarch64-virt-1g.dtb");

    fn ram(blob: &[u8]) -> Vec<MemRegion, MAX_MEMORY_REGIONS> {
        memory(&Fdt::new(blob).expect("a valid FDT")).expect("RAM in the FDT")
    }

    fn r(start: usize, size: usize) -> MemRegion {
        MemRegion { start, size }
    }

    #[test]
    fn one_region_on_aarch64() {
        assert_eq!(ram(AARCH64_4G).as_slice(), [r(0x4000_0000, 4 << 30)]);
    }

    #[test]
    fn loongarch_low_ram_only_up_to_256m() {
        assert_eq!(ram(LOONGARCH64_128M).as_slice(), [r(0, 128 << 20)]);
    }

    #[test]
    fn loongarch_low_and_high_ram_by_address() {
        assert_eq!(
            ram(LOONGARCH64_1G).as_slice(),
            [r(0, 256 << 20), r(0x8000_0000, 768 << 20)]
        );
    }
}
