//! Per-CPU data: one cache-line-aligned slot per logical CPU, indexed by
//! [`arch::Cpu::cpu_id`], so CPUs updating their own slot never share a line.
//!
//! Memory grows with the CPUs present, not with [`MAX_CPUS`]: the boot CPU's
//! slot is in the static itself (usable from the first instruction, before
//! the heap), and the slots of CPUs `1..cpus()` are one block taken at the
//! first use of any of them from an arena that [`init`] sizes for the CPUs
//! the FDT lists. The arena is a lock-free bump allocator, so a first use
//! may come from anywhere (an interrupt handler, a lock's slow path: the
//! heap's own lock uses per-CPU queue nodes) without recursing into a lock.

use core::alloc::Layout;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use arch::{Cpu, Interrupts};

use crate::{A, MAX_CPUS};

/// One slot, padded to a cache line. Public only for [`per_cpu!`].
#[doc(hidden)]
#[repr(align(64))]
pub struct CacheLine<T>(pub T);

/// The arena's budget per secondary CPU. `percpu_bytes()` says what is
/// used (about 2.5 KiB per CPU today); a block that does not fit is a
/// panic naming this constant.
const ARENA_BYTES_PER_CPU: usize = 8 << 10;

/// `PerCpu::others` while one CPU allocates the block (slots are 64-byte
/// aligned: no block is at 64).
const ALLOCATING: *mut CacheLine<()> = core::ptr::dangling_mut();

/// CPUs with slots: 1 until [`init`] on the target; [`MAX_CPUS`] for host
/// unit tests, whose "CPUs" are threads.
static CPUS: AtomicUsize = AtomicUsize::new(if cfg!(target_os = "none") {
    1
} else {
    MAX_CPUS
});
static ARENA_NEXT: AtomicUsize = AtomicUsize::new(0);
static ARENA_END: AtomicUsize = AtomicUsize::new(0);
static ARENA_START: AtomicUsize = AtomicUsize::new(0);

/// Makes room for the slots of `cpus` CPUs (the boot CPU and the ones it
/// will bring up). Boot CPU, once, once the heap is up and before any
/// other CPU's slot is used.
pub fn init(cpus: usize) {
    assert!((1..=MAX_CPUS).contains(&cpus), "percpu: {cpus} CPUs");
    let bytes = (cpus - 1) * ARENA_BYTES_PER_CPU;
    if bytes > 0 {
        let layout = Layout::from_size_align(bytes, 64).expect("arena layout");
        // SAFETY: a non-zero size; the block is never freed.
        let start = unsafe { alloc::alloc::alloc_zeroed(layout) } as usize;
        assert!(start != 0, "percpu: no heap for {cpus} CPUs' per-CPU data");
        ARENA_START.store(start, Ordering::Relaxed);
        ARENA_NEXT.store(start, Ordering::Relaxed);
        ARENA_END.store(start + bytes, Ordering::Relaxed);
    }
    CPUS.store(cpus, Ordering::Release);
}

/// The number of CPUs with slots.
pub fn cpus() -> usize {
    CPUS.load(Ordering::Acquire)
}

/// Per-CPU bytes taken from the arena so far, per secondary CPU (the boot
/// CPU's slots are in the image).
pub fn percpu_bytes() -> usize {
    let used = ARENA_NEXT.load(Ordering::Relaxed) - ARENA_START.load(Ordering::Relaxed);
    used / cpus().saturating_sub(1).max(1)
}

/// `layout` from the arena, lock-free.
fn bump(layout: Layout) -> *mut u8 {
    let mut next = ARENA_NEXT.load(Ordering::Relaxed);
    loop {
        let start = next.next_multiple_of(layout.align());
        let end = start + layout.size();
        if next == 0 || end > ARENA_END.load(Ordering::Relaxed) {
            #[cfg(not(target_os = "none"))]
            {
                // Host unit tests: no arena; the system allocator is safe
                // to call from any of their threads.
                // SAFETY: a non-zero size (callers have at least one slot).
                return unsafe { alloc::alloc::alloc(layout) };
            }
            #[cfg(target_os = "none")]
            panic!(
                "percpu: per-CPU data used before percpu::init, or more than ARENA_BYTES_PER_CPU ({ARENA_BYTES_PER_CPU}) per CPU"
            );
        }
        match ARENA_NEXT.compare_exchange_weak(next, end, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return start as *mut u8,
            Err(seen) => next = seen,
        }
    }
}

/// One `T` per CPU. Build it with [`per_cpu!`].
pub struct PerCpu<T: 'static> {
    boot: CacheLine<T>,
    /// CPUs `1..cpus()`, or null until one of them is first used.
    others: AtomicPtr<CacheLine<T>>,
    init: fn() -> T,
}

/// `per_cpu!(EXPR)`: a [`PerCpu`] whose every slot starts as the constant `EXPR`.
#[macro_export]
macro_rules! per_cpu {
    ($init:expr) => {
        $crate::percpu::PerCpu::new($crate::percpu::CacheLine($init), || $init)
    };
}

impl<T> PerCpu<T> {
    #[doc(hidden)]
    pub const fn new(boot: CacheLine<T>, init: fn() -> T) -> Self {
        Self {
            boot,
            others: AtomicPtr::new(core::ptr::null_mut()),
            init,
        }
    }

    /// The calling CPU's slot. A thread that can be preempted may migrate
    /// right after: keep interrupts masked or preemption disabled
    /// ([`crate::sched::preempt`]) while the slot must stay this CPU's.
    pub fn current(&self) -> &T {
        self.of(A::cpu_id())
    }

    /// CPU `cpu`'s slot.
    ///
    /// # Panics
    /// If `cpu` is not below [`cpus`].
    pub fn of(&self, cpu: usize) -> &T {
        if cpu == 0 {
            return &self.boot.0;
        }
        let n = cpus();
        assert!(cpu < n, "percpu: CPU {cpu} of {n}");
        // Acquire: the slots' initialisation before their use (pairs with
        // the Release store in `allocate`).
        let mut others = self.others.load(Ordering::Acquire);
        if others.is_null() || others == ALLOCATING.cast() {
            others = self.allocate(n - 1);
        }
        // SAFETY: `others` holds `n - 1` initialised slots that live for
        // ever (never freed once published); `cpu - 1 < n - 1`.
        unsafe { &(*others.add(cpu - 1)).0 }
    }

    /// Takes and initialises the slots of CPUs `1..=slots` and publishes
    /// them, or waits for the CPU that is doing so. (All secondaries touch
    /// the same statics as soon as they start: a block each, lost in all but
    /// one, would use up the arena 255 times over at 256 CPUs.)
    #[cold]
    fn allocate(&self, slots: usize) -> *mut CacheLine<T> {
        // Masked: an interrupt handler on this CPU that used this static
        // while we allocate would wait for us for ever.
        let irq = A::irq_save();
        let claimed = self
            .others
            .compare_exchange(
                core::ptr::null_mut(),
                ALLOCATING.cast(),
                Ordering::Acquire,
                Ordering::Acquire,
            )
            .is_ok();
        let others = if claimed {
            let layout = Layout::array::<CacheLine<T>>(slots).expect("per-CPU layout");
            let new = bump(layout).cast::<CacheLine<T>>();
            for i in 0..slots {
                // SAFETY: `new` is `slots` fresh, aligned slots no one else sees.
                unsafe { new.add(i).write(CacheLine((self.init)())) };
            }
            // Release: the slots' initialisation before the pointer.
            self.others.store(new, Ordering::Release);
            new
        } else {
            loop {
                // Acquire: pairs with the Release store above.
                let others = self.others.load(Ordering::Acquire);
                if others != ALLOCATING.cast() {
                    break others;
                }
                core::hint::spin_loop();
            }
        };
        A::irq_restore(irq);
        others
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn each_cpu_sees_its_own_slot() {
        static DATA: PerCpu<AtomicUsize> = crate::per_cpu!(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|cpu| {
                std::thread::spawn(move || {
                    arch::hosted::set_cpu_id(cpu);
                    for _ in 0..1000 {
                        DATA.current().fetch_add(cpu + 1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for cpu in 0..4 {
            assert_eq!(DATA.of(cpu).load(Ordering::Relaxed), 1000 * (cpu + 1));
        }
        assert_eq!(core::mem::align_of::<CacheLine<u8>>(), 64);
    }
}
