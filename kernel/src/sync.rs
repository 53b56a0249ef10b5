//! Interim lock: a test-and-set spinlock (the `spin` crate's) that masks
//! interrupts on this CPU while held, so code running in an interrupt handler
//! can take it without deadlocking against the thread it interrupted.
//! (The queued spinlock family replaces the inner lock in a later step.)

use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};

use arch::{Arch, IrqState};

use crate::A;

/// A spinlock that keeps interrupts masked while it is held.
pub struct SpinNoIrq<T> {
    inner: spin::Mutex<T>,
}

/// Holds a [`SpinNoIrq`]; releases it, then restores interrupts, when dropped.
pub struct SpinNoIrqGuard<'a, T> {
    guard: ManuallyDrop<spin::MutexGuard<'a, T>>,
    irq: IrqState,
}

impl<T> SpinNoIrq<T> {
    pub const fn new(value: T) -> Self {
        Self {
            inner: spin::Mutex::new(value),
        }
    }

    pub fn lock(&self) -> SpinNoIrqGuard<'_, T> {
        let irq = A::irq_save();
        SpinNoIrqGuard {
            guard: ManuallyDrop::new(self.inner.lock()),
            irq,
        }
    }

    /// Tries for `attempts` spins; `None` if the lock stayed busy.
    pub fn try_lock_for(&self, attempts: usize) -> Option<SpinNoIrqGuard<'_, T>> {
        let irq = A::irq_save();
        for _ in 0..attempts {
            if let Some(guard) = self.inner.try_lock() {
                return Some(SpinNoIrqGuard {
                    guard: ManuallyDrop::new(guard),
                    irq,
                });
            }
            A::spin_hint();
        }
        A::irq_restore(irq);
        None
    }

    /// Releases the lock whoever holds it.
    ///
    /// # Safety
    /// The holder must never touch the protected value again (it has been
    /// stopped, as when another CPU panicked while printing).
    pub unsafe fn force_unlock(&self) {
        // SAFETY: forwarded to the caller.
        unsafe { self.inner.force_unlock() }
    }
}

impl<T> Deref for SpinNoIrqGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for SpinNoIrqGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for SpinNoIrqGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: `guard` is dropped exactly once, here, and never used after.
        unsafe { ManuallyDrop::drop(&mut self.guard) };
        A::irq_restore(self.irq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn guards_exclude_each_other_across_threads() {
        let lock = Arc::new(SpinNoIrq::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*lock.lock(), 40_000);
    }

    #[test]
    fn try_lock_for_gives_up_while_held() {
        let lock = SpinNoIrq::new(());
        let _held = lock.lock();
        assert!(lock.try_lock_for(100).is_none());
    }
}
