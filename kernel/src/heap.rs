//! The kernel heap: `linked_list_allocator` behind an IRQ-safe lock, so an
//! interrupt handler that allocates cannot deadlock against the code it
//! interrupted on the same CPU.
//!
//! RAM may come in several regions (QEMU's LoongArch `virt` beyond 256 MiB:
//! low RAM at 0, the rest at 2 GiB), so the heap is up to [`MAX_RANGES`]
//! ranges, one allocator each: an allocation takes the first range that
//! fits it (lowest address first), a free goes back to the range holding it.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use heapless::Vec;

use crate::sync::SpinNoIrq;

/// The most ranges a heap takes.
pub const MAX_RANGES: usize = 8;

/// The global allocator type; the `boot` crate owns the one instance.
pub struct Heap {
    inner: SpinNoIrq<Vec<linked_list_allocator::Heap, MAX_RANGES>>,
}

/// Heap usage in bytes.
#[derive(Debug, Clone, Copy)]
pub struct HeapStats {
    pub size: usize,
    pub used: usize,
    /// Ranges the heap spans.
    pub ranges: usize,
}

static THE_HEAP: spin::Once<&'static Heap> = spin::Once::new();

impl Heap {
    pub const fn empty() -> Self {
        Self {
            inner: SpinNoIrq::new(Vec::new()),
        }
    }

    /// Hands `[start, start + size)` to the allocator, as one more range;
    /// false (and nothing taken) if it has [`MAX_RANGES`] already.
    ///
    /// # Safety
    /// The range must be mapped RAM used by nothing else, for ever, and
    /// overlap no range added before.
    pub unsafe fn add_range(&self, start: usize, size: usize) -> bool {
        let mut ranges = self.inner.lock();
        if ranges.is_full() {
            return false;
        }
        let mut range = linked_list_allocator::Heap::empty();
        // SAFETY: forwarded to the caller.
        unsafe { range.init(start as *mut u8, size) };
        ranges.push(range).is_ok()
    }

    /// Makes this the heap [`ranges`] and [`stats`] report (the kernel
    /// calls it at boot).
    pub(crate) fn publish(&'static self) {
        THE_HEAP.call_once(|| self);
    }

    pub fn stats(&self) -> HeapStats {
        let ranges = self.inner.lock();
        HeapStats {
            size: ranges.iter().map(|r| r.size()).sum(),
            used: ranges.iter().map(|r| r.used()).sum(),
            ranges: ranges.len(),
        }
    }

    /// `[start, end)` of each range, in the order allocations try them.
    pub fn ranges(&self) -> Vec<(usize, usize), MAX_RANGES> {
        let ranges = self.inner.lock();
        ranges
            .iter()
            .map(|r| (r.bottom() as usize, r.top() as usize))
            .collect()
    }
}

/// The kernel's heap, once boot has set it up.
fn the_heap() -> &'static Heap {
    THE_HEAP.get().expect("the heap is set up in early boot")
}

/// The kernel heap's usage.
pub fn stats() -> HeapStats {
    the_heap().stats()
}

/// The kernel heap's ranges (virtual addresses).
pub fn ranges() -> Vec<(usize, usize), MAX_RANGES> {
    the_heap().ranges()
}

// SAFETY: `allocate_first_fit` returns blocks that fit `layout` and are not
// handed out twice; `deallocate` receives only blocks `alloc` returned, and
// gives each to the range it came from (ranges do not overlap).
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.inner
            .lock()
            .iter_mut()
            .find_map(|r| r.allocate_first_fit(layout).ok())
            .map_or(ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(p) = NonNull::new(ptr) else {
            return;
        };
        let mut ranges = self.inner.lock();
        let range = ranges
            .iter_mut()
            .find(|r| r.bottom() <= ptr && ptr < r.top())
            .expect("dealloc of a block from no heap range");
        // SAFETY: the GlobalAlloc contract: `ptr` came from `alloc` with
        // `layout`, hence from this range.
        unsafe { range.deallocate(p, layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(align(4096))]
    struct Arena([u8; 64 * 1024]);

    fn arena() -> &'static mut Arena {
        Box::leak(Box::new(Arena([0; 64 * 1024])))
    }

    #[test]
    fn allocates_and_frees_from_its_region() {
        let arena = arena();
        let heap = Heap::empty();
        // SAFETY: the leaked arena is used by nothing else.
        assert!(unsafe { heap.add_range(arena.0.as_mut_ptr() as usize, arena.0.len()) });
        let layout = Layout::from_size_align(1000, 64).unwrap();
        // SAFETY: layout has non-zero size.
        let p = unsafe { heap.alloc(layout) };
        assert!(!p.is_null() && (p as usize).is_multiple_of(64));
        assert!(heap.stats().used >= 1000);
        // SAFETY: p came from this heap with this layout.
        unsafe { heap.dealloc(p, layout) };
        assert_eq!(heap.stats().used, 0);
        let too_big = Layout::from_size_align(1 << 20, 8).unwrap();
        // SAFETY: non-zero size; a null result is the expected answer.
        assert!(unsafe { heap.alloc(too_big) }.is_null());
    }

    #[test]
    fn spans_ranges_and_frees_into_the_right_one() {
        let (low, high) = (arena(), arena());
        let heap = Heap::empty();
        for a in [&mut *low, &mut *high] {
            // SAFETY: each leaked arena is used by nothing else.
            assert!(unsafe { heap.add_range(a.0.as_mut_ptr() as usize, a.0.len()) });
        }
        let stats = heap.stats();
        assert_eq!((stats.size, stats.ranges), (128 * 1024, 2));
        assert_eq!(heap.ranges().len(), 2);
        // 40 KiB fits once per range: the second comes from the other one.
        let layout = Layout::from_size_align(40 * 1024, 8).unwrap();
        // SAFETY: non-zero size.
        let (a, b) = unsafe { (heap.alloc(layout), heap.alloc(layout)) };
        let inside = |p: *mut u8, arena: &Arena| arena.0.as_ptr_range().contains(&(p as *const u8));
        assert!(inside(a, low) && inside(b, high));
        // SAFETY: the third does not fit anywhere; null is the answer.
        assert!(unsafe { heap.alloc(layout) }.is_null());
        // SAFETY: each came from this heap with this layout.
        unsafe { heap.dealloc(b, layout) };
        assert_eq!(heap.stats().used, 40 * 1024);
        // The freed space is the high range's again.
        // SAFETY: non-zero size.
        let c = unsafe { heap.alloc(layout) };
        assert!(inside(c, high));
        // SAFETY: as above.
        unsafe {
            heap.dealloc(a, layout);
            heap.dealloc(c, layout);
        }
        assert_eq!(heap.stats().used, 0);
    }

    #[test]
    fn takes_at_most_max_ranges() {
        let heap = Heap::empty();
        let arenas: std::vec::Vec<_> = (0..=MAX_RANGES).map(|_| arena()).collect();
        for (i, a) in arenas.into_iter().enumerate() {
            // SAFETY: each leaked arena is used by nothing else.
            let added = unsafe { heap.add_range(a.0.as_mut_ptr() as usize, a.0.len()) };
            assert_eq!(added, i < MAX_RANGES);
        }
    }
}
