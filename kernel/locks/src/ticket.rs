//! Ticket lock: FIFO by construction, every waiter spins on the same word.
//!
//! `next` hands out tickets, `owner` is the ticket being served. Two
//! separate 16-bit words (not halves of one 32-bit word: Rust forbids
//! mixed-size atomics on one location), so 65,535 waiters at most.

use super::atomic::{lock_new, spin_hint, AtomicU16, Ordering};

pub struct TicketLock {
    next: AtomicU16,
    owner: AtomicU16,
}

lock_new!(TicketLock, {
    Self {
        next: AtomicU16::new(0),
        owner: AtomicU16::new(0),
    }
});

impl TicketLock {
    pub fn lock(&self) {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        // Acquire: pairs with the Release in `unlock` of the previous owner.
        while self.owner.load(Ordering::Acquire) != ticket {
            spin_hint();
        }
    }

    pub fn try_lock(&self) -> bool {
        let owner = self.owner.load(Ordering::Relaxed);
        self.next
            .compare_exchange(
                owner,
                owner.wrapping_add(1),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// # Safety
    /// The caller holds the lock.
    pub unsafe fn unlock(&self) {
        // Only the holder writes `owner`: a load and a store suffice.
        let owner = self.owner.load(Ordering::Relaxed);
        self.owner.store(owner.wrapping_add(1), Ordering::Release);
    }

    pub fn is_locked(&self) -> bool {
        self.next.load(Ordering::Relaxed) != self.owner.load(Ordering::Relaxed)
    }
}
