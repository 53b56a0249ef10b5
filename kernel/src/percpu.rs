//! Per-CPU data: one cache-line-aligned slot per logical CPU, indexed by
//! [`arch::Arch::cpu_id`], so CPUs updating their own slot never share a line.

use arch::Arch;

use crate::{A, MAX_CPUS};

/// One slot, padded to a cache line. Public only for [`per_cpu!`].
#[doc(hidden)]
#[repr(align(64))]
pub struct CacheLine<T>(pub T);

/// `MAX_CPUS` values of `T`, one per CPU. Build it with [`per_cpu!`].
pub struct PerCpu<T> {
    slots: [CacheLine<T>; MAX_CPUS],
}

/// `per_cpu!(EXPR)`: a [`PerCpu`] whose every slot starts as the constant `EXPR`.
#[macro_export]
macro_rules! per_cpu {
    ($init:expr) => {
        $crate::percpu::PerCpu::from_slots(
            [const { $crate::percpu::CacheLine($init) }; $crate::MAX_CPUS],
        )
    };
}

impl<T> PerCpu<T> {
    #[doc(hidden)]
    pub const fn from_slots(slots: [CacheLine<T>; MAX_CPUS]) -> Self {
        Self { slots }
    }

    /// The calling CPU's slot. A thread that can be preempted may migrate
    /// right after: keep interrupts masked or preemption disabled
    /// ([`crate::sched::preempt`]) while the slot must stay this CPU's.
    pub fn current(&self) -> &T {
        &self.slots[A::cpu_id()].0
    }

    /// CPU `cpu`'s slot.
    pub fn of(&self, cpu: usize) -> &T {
        &self.slots[cpu].0
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
