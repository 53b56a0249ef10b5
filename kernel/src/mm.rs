//! Physical memory at boot: make the kernel's map match the RAM the FDT
//! reports, and choose the heap.

use arch::{Arch, MapError, MemAttr};
use heapless::Vec;

use crate::bootinfo::{BootInfo, MemRegion, MAX_MEMORY_REGIONS};
use crate::A;

const fn align_up(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

const fn align_down(x: usize, a: usize) -> usize {
    x / a * a
}

/// The parts of `window` (start, end) not covered by any of `ram`,
/// page-aligned outwards to `page` so no RAM page is lost.
pub fn gaps(
    window: (usize, usize),
    ram: &[MemRegion],
    page: usize,
) -> Vec<(usize, usize), { MAX_MEMORY_REGIONS + 1 }> {
    let mut sorted: Vec<MemRegion, MAX_MEMORY_REGIONS> = ram.iter().copied().collect();
    sorted.sort_unstable_by_key(|r| r.start);
    let mut out = Vec::new();
    let mut cursor = window.0;
    for r in &sorted {
        let (start, end) = (align_down(r.start, page), align_up(r.end(), page));
        if end <= cursor || start >= window.1 {
            continue;
        }
        if start > cursor {
            let _ = out.push((cursor, start));
        }
        cursor = cursor.max(end);
    }
    if cursor < window.1 {
        let _ = out.push((cursor, window.1));
    }
    out
}

/// Maps all RAM the FDT reports and unmaps whatever the boot map assumed to
/// be RAM but is not.
pub fn map_ram(info: &BootInfo) -> Result<(), MapError> {
    let page = A::PAGE_SIZE;
    for r in &info.memory {
        let start = align_down(r.start, page);
        A::map_ram(start, align_up(r.end(), page) - start)?;
    }
    for (start, end) in gaps(A::BOOT_RAM_WINDOW, &info.memory, page) {
        A::unmap(start, end - start)?;
    }
    Ok(())
}

/// Physical address of a kernel (linear-map) address.
pub fn virt_to_phys(va: usize) -> usize {
    A::virt_to_phys(va)
}

/// Maps `[va, va + size)` to `[pa, pa + size)` on every CPU.
pub fn map(va: usize, pa: usize, size: usize, attr: MemAttr) -> Result<(), MapError> {
    A::map(va, pa, size, attr)
}

/// Unmaps `[va, va + size)` on every CPU.
pub fn unmap(va: usize, size: usize) -> Result<(), MapError> {
    A::unmap(va, size)
}

/// The translation granule.
pub fn page_size() -> usize {
    A::PAGE_SIZE
}

/// Reads the u64 at `addr` with a volatile load, for fault-path tests: if
/// `addr` is unmapped the CPU faults and the run ends with a fault report.
/// On mapped memory it is an ordinary (racy but atomic-sized) read.
pub fn probe_read(addr: usize) -> u64 {
    let ptr = addr as *const u64;
    // SAFETY: volatile reads of aligned u64s have no effect beyond the read;
    // an unmapped address raises a synchronous exception, which the kernel
    // reports and turns into the end of the run, never into undefined state.
    unsafe { ptr.read_volatile() }
}

/// The heap, as a virtual range: from the end of the image (and of the FDT,
/// if it lies above the image) to the end of the RAM region holding the image.
pub fn heap_range(info: &BootInfo) -> Option<(usize, usize)> {
    let image_end = A::virt_to_phys(info.handoff.image.1);
    let (fdt_start, fdt_end) = info.fdt_range;
    heap_range_phys(
        &info.memory,
        image_end,
        (A::virt_to_phys(fdt_start), A::virt_to_phys(fdt_end)),
        A::PAGE_SIZE,
    )
    .map(|(start, end)| (A::phys_to_virt(start), A::phys_to_virt(end)))
}

fn heap_range_phys(
    memory: &[MemRegion],
    image_end: usize,
    fdt: (usize, usize),
    page: usize,
) -> Option<(usize, usize)> {
    let region = memory
        .iter()
        .find(|r| r.start <= image_end && image_end < r.end())?;
    let mut start = image_end;
    if fdt.0 >= image_end && fdt.0 < region.end() {
        start = start.max(fdt.1);
    }
    let start = align_up(start, page);
    (start < region.end()).then_some((start, region.end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: usize, size: usize) -> MemRegion {
        MemRegion { start, size }
    }

    #[test]
    fn gaps_around_ram() {
        let g = gaps(
            (0x1000, 0x10000),
            &[r(0x3000, 0x1000), r(0x1000, 0x1000)],
            0x1000,
        );
        assert_eq!(g.as_slice(), [(0x2000, 0x3000), (0x4000, 0x10000)]);
    }

    #[test]
    fn ram_covering_the_window_leaves_no_gap() {
        assert!(gaps((0x1000, 0x2000), &[r(0, 0x10000)], 0x1000).is_empty());
    }

    #[test]
    fn unaligned_ram_is_rounded_outwards() {
        let g = gaps((0, 0x10000), &[r(0x1800, 0x1000)], 0x1000);
        assert_eq!(g.as_slice(), [(0, 0x1000), (0x3000, 0x10000)]);
    }

    #[test]
    fn heap_starts_after_image_and_any_fdt_above_it() {
        let ram = [r(0x4000_0000, 0x1000_0000)];
        let fdt_below = (0x4000_0000, 0x4010_0000);
        assert_eq!(
            heap_range_phys(&ram, 0x4030_0800, fdt_below, 0x1000),
            Some((0x4030_1000, 0x5000_0000))
        );
        let fdt_above = (0x4040_0000, 0x4041_0000);
        assert_eq!(
            heap_range_phys(&ram, 0x4030_0000, fdt_above, 0x1000),
            Some((0x4041_0000, 0x5000_0000))
        );
        assert_eq!(heap_range_phys(&ram, 0x6000_0000, fdt_below, 0x1000), None);
    }

    #[test]
    fn ram_outside_the_window_is_ignored() {
        let g = gaps((0x1000, 0x2000), &[r(0x8000, 0x1000)], 0x1000);
        assert_eq!(g.as_slice(), [(0x1000, 0x2000)]);
    }
}
