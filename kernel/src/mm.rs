//! Physical memory at boot: make the kernel's map match the RAM the FDT
//! reports, and choose the heap; and the address-space service: [`map`],
//! [`unmap`] and [`protect`], each of which returns only once no CPU can use
//! the old translation any more (the TLB shootdown, docs/shootdown.md).

pub use arch::{Access, ShootdownStats};
use arch::{MapError, MemAttr, Mmu};
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

/// Unmaps `[va, va + size)` on every CPU: when it returns, no CPU reaches
/// the old pages through it.
pub fn unmap(va: usize, size: usize) -> Result<(), MapError> {
    A::unmap(va, size)
}

/// Changes what the mapped pages of `[va, va + size)` allow on every CPU
/// (e.g. [`Access::ReadOnly`]: when it returns, a store there faults on
/// every CPU). Unmapped parts are skipped.
pub fn protect(va: usize, size: usize, access: Access) -> Result<(), MapError> {
    A::protect(va, size, access)
}

/// What the shootdowns of [`map`], [`unmap`] and [`protect`] cost since
/// boot, as the guest counts them (IPIs, hypercalls, targets).
pub fn shootdown_stats() -> ShootdownStats {
    A::shootdown_stats()
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

/// Writes `value` to the u64 at `addr` with a volatile store, for
/// fault-path tests: if `addr` is unmapped or read-only the CPU faults and
/// the run ends with a fault report.
pub fn probe_write(addr: usize, value: u64) {
    let ptr = addr as *mut u64;
    // SAFETY: the callers (tests of the shootdown) store only to pages they
    // mapped for the purpose at addresses nothing else uses; a store the
    // mapping forbids raises a synchronous exception, which ends the run.
    unsafe { ptr.write_volatile(value) }
}

/// Ranges of the heap (virtual addresses): all RAM but the image, what lies
/// below it in its region (the loader's: the FDT, boot data, a LoongArch
/// command line at 0) and the FDT, page-aligned inwards, by address.
pub fn heap_ranges(info: &BootInfo) -> HeapRanges {
    let (image_start, image_end) = info.handoff.image;
    let (fdt_start, fdt_end) = info.fdt_range;
    heap_ranges_phys(
        &info.memory,
        (A::virt_to_phys(image_start), A::virt_to_phys(image_end)),
        (A::virt_to_phys(fdt_start), A::virt_to_phys(fdt_end)),
        A::PAGE_SIZE,
    )
    .into_iter()
    .map(|(start, end)| (A::phys_to_virt(start), A::phys_to_virt(end)))
    .collect()
}

/// What [`heap_ranges`] returns: at most two pieces per RAM region (a
/// reserved range in the middle splits it), and no more than the heap takes.
pub type HeapRanges = Vec<(usize, usize), { crate::heap::MAX_RANGES }>;

fn heap_ranges_phys(
    memory: &[MemRegion],
    image: (usize, usize),
    fdt: (usize, usize),
    page: usize,
) -> HeapRanges {
    let mut out = HeapRanges::new();
    for r in memory {
        // In the image's region everything below the image end is reserved.
        let below_image = if r.start <= image.0 && image.0 < r.end() {
            (r.start, image.1)
        } else {
            (0, 0)
        };
        let mut pieces: Vec<(usize, usize), 3> = Vec::new();
        let _ = pieces.push((r.start, r.end()));
        for reserved in [below_image, fdt] {
            pieces = pieces
                .iter()
                .flat_map(|&piece| subtract(piece, reserved))
                .collect();
        }
        for (start, end) in pieces {
            let (start, end) = (align_up(start, page), align_down(end, page));
            if start < end && out.push((start, end)).is_err() {
                return out; // The heap takes no more ranges.
            }
        }
    }
    out
}

/// `range` without `cut`: up to two pieces (empty ones left out).
fn subtract(range: (usize, usize), cut: (usize, usize)) -> impl Iterator<Item = (usize, usize)> {
    let below = (range.0, range.1.min(cut.0));
    let above = (range.0.max(cut.1), range.1);
    let disjoint = cut.0 >= cut.1 || cut.1 <= range.0 || cut.0 >= range.1;
    let pieces = if disjoint {
        [Some(range), None]
    } else {
        [Some(below), Some(above)]
    };
    pieces.into_iter().flatten().filter(|(s, e)| s < e)
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
        let image = (0x4020_0000, 0x4030_0800);
        let fdt_below = (0x4000_0000, 0x4010_0000);
        assert_eq!(
            heap_ranges_phys(&ram, image, fdt_below, 0x1000).as_slice(),
            [(0x4030_1000, 0x5000_0000)]
        );
        let fdt_above = (0x4040_0000, 0x4041_0000);
        assert_eq!(
            heap_ranges_phys(&ram, (0x4020_0000, 0x4030_0000), fdt_above, 0x1000).as_slice(),
            [(0x4030_0000, 0x4040_0000), (0x4041_0000, 0x5000_0000)]
        );
    }

    #[test]
    fn heap_covers_every_region() {
        // QEMU LoongArch `virt` with 1 GiB: low RAM holds the FDT and the
        // image, the rest is high.
        let ram = [r(0, 0x1000_0000), r(0x8000_0000, 0x3000_0000)];
        let image = (0x20_0000, 0x34_5678);
        let fdt = (0x10_0000, 0x10_2000);
        assert_eq!(
            heap_ranges_phys(&ram, image, fdt, 0x1000).as_slice(),
            [(0x34_6000, 0x1000_0000), (0x8000_0000, 0xb000_0000)]
        );
        // Unaligned region ends are rounded inwards; a region with no
        // whole page is left out.
        let ram = [
            r(0, 0x100_0000),
            r(0x8000_0800, 0x1000),
            r(0x9000_0000, 0x2800),
        ];
        assert_eq!(
            heap_ranges_phys(&ram, image, fdt, 0x1000).as_slice(),
            [(0x34_6000, 0x100_0000), (0x9000_0000, 0x9000_2000)]
        );
    }

    #[test]
    fn heap_takes_at_most_its_ranges() {
        let ram: std::vec::Vec<_> = (0..MAX_MEMORY_REGIONS)
            .map(|i| r(0x1000_0000 * (i + 1), 0x10_0000))
            .collect();
        // An FDT in the middle of the last region splits it: one piece more
        // than the heap takes, and the last one is left out.
        let fdt = (0x8008_0000, 0x8009_0000);
        let out = heap_ranges_phys(&ram, (0, 0x1000), fdt, 0x1000);
        assert_eq!(out.len(), crate::heap::MAX_RANGES);
        assert_eq!(out.last(), Some(&(0x8000_0000, 0x8008_0000)));
    }

    #[test]
    fn ram_outside_the_window_is_ignored() {
        let g = gaps((0x1000, 0x2000), &[r(0x8000, 0x1000)], 0x1000);
        assert_eq!(g.as_slice(), [(0x1000, 0x2000)]);
    }
}
