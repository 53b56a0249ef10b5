//! The kernel heap: `linked_list_allocator` behind an IRQ-safe lock, so an
//! interrupt handler that allocates cannot deadlock against the code it
//! interrupted on the same CPU.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use crate::sync::SpinNoIrq;

/// The global allocator type; the `boot` crate owns the one instance.
pub struct Heap {
    inner: SpinNoIrq<linked_list_allocator::Heap>,
}

/// Heap usage in bytes.
#[derive(Debug, Clone, Copy)]
pub struct HeapStats {
    pub size: usize,
    pub used: usize,
}

impl Heap {
    pub const fn empty() -> Self {
        Self {
            inner: SpinNoIrq::new(linked_list_allocator::Heap::empty()),
        }
    }

    /// Hands `[start, start + size)` to the allocator.
    ///
    /// # Safety
    /// The range must be mapped RAM used by nothing else, for ever; call once.
    pub unsafe fn init(&self, start: usize, size: usize) {
        // SAFETY: forwarded to the caller.
        unsafe { self.inner.lock().init(start as *mut u8, size) };
    }

    pub fn stats(&self) -> HeapStats {
        let heap = self.inner.lock();
        HeapStats {
            size: heap.size(),
            used: heap.used(),
        }
    }
}

// SAFETY: `allocate_first_fit` returns blocks that fit `layout` and are not
// handed out twice; `deallocate` receives only blocks `alloc` returned.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.inner
            .lock()
            .allocate_first_fit(layout)
            .map_or(ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: the GlobalAlloc contract: `ptr` came from `alloc` with `layout`.
            unsafe { self.inner.lock().deallocate(p, layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_and_frees_from_its_region() {
        #[repr(align(4096))]
        struct Arena([u8; 64 * 1024]);
        let arena = Box::leak(Box::new(Arena([0; 64 * 1024])));
        let heap = Heap::empty();
        // SAFETY: the leaked arena is used by nothing else.
        unsafe { heap.init(arena.0.as_mut_ptr() as usize, arena.0.len()) };
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
}
