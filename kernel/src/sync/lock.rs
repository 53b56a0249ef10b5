//! One guard API over every lock algorithm.
//!
//! `Lock<R, I, T>`: a value `T` behind the raw lock `R` ([`RawLock`]), with
//! policy `I` for what else may run on the CPU while it is held. The names
//! say where a lock may be used:
//!
//! | type | while held | use from |
//! |---|---|---|
//! | [`SpinLock<T, R>`] | no preemption; interrupts unchanged | thread context only, never from an interrupt handler |
//! | [`SpinNoIrq<T, R>`] | interrupts masked on this CPU (so no preemption) | anywhere, including interrupt handlers |
//!
//! Either way the holder stays on its CPU until it unlocks: the queue
//! nodes of [`Mcs`] and [`QSpin`] are per CPU, and a thread switched out
//! while holding a spinlock would leave the next one spinning behind it.
//!
//! `R` defaults to the queued spinlock ([`QSpin`]); [`Tas`], [`Ticket`] and
//! [`Mcs`] are there for comparison, and [`LockKind`] names them at run time.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use arch::{Cpu, Interrupts, IrqState};

use super::kernel::{KernelCpu, MCS_NODES_PER_CPU};
use super::mcs::McsLock;
use super::qspinlock::{QSpinLock, SlowPath};
use super::ticket::TicketLock;
use crate::A;

/// A lock algorithm without data.
///
/// # Safety
/// Between a `lock` (or successful `try_lock`) and the matching `unlock`, no
/// other `lock` or `try_lock` may succeed.
pub unsafe trait RawLock {
    /// Name used by [`LockKind`] and in reports.
    const NAME: &'static str;
    /// An unlocked lock (a fresh one for each use of the constant).
    #[allow(clippy::declare_interior_mutable_const)] // Copied into each lock, never shared.
    const INIT: Self;
    fn lock(&self);
    fn try_lock(&self) -> bool;
    /// # Safety
    /// The caller holds the lock.
    unsafe fn unlock(&self);
}

/// The queued spinlock, with the slow path chosen at boot.
pub struct QSpin(QSpinLock);
/// Test-and-set: the `spin` crate's spinlock.
pub struct Tas(spin::mutex::SpinMutex<()>);
/// Ticket lock.
pub struct Ticket(TicketLock);
/// MCS queue lock.
pub struct Mcs(McsLock);

// SAFETY: QSpinLock admits one holder between lock and unlock.
unsafe impl RawLock for QSpin {
    const NAME: &'static str = "qspinlock";
    const INIT: Self = QSpin(QSpinLock::new());
    #[inline(always)] // The fast path is one compare-and-swap.
    fn lock(&self) {
        self.0.lock(&KernelCpu::BOOT);
    }
    fn try_lock(&self) -> bool {
        self.0.try_lock()
    }
    #[inline(always)]
    unsafe fn unlock(&self) {
        self.0.unlock(&KernelCpu::BOOT);
    }
}

/// The queued spinlock with its slow path fixed, whatever the boot chose:
/// `HALT` for halt-and-kick, else native spinning. For benchmarks that
/// compare both in one boot; every user of one lock waits the same way.
pub struct QSpinWith<const HALT: bool>(QSpinLock);

impl<const HALT: bool> QSpinWith<HALT> {
    const CPU: KernelCpu = KernelCpu {
        forced: Some(if HALT { SlowPath::Halt } else { SlowPath::Spin }),
    };
}

// SAFETY: QSpinLock admits one holder between lock and unlock.
unsafe impl<const HALT: bool> RawLock for QSpinWith<HALT> {
    const NAME: &'static str = "qspinlock";
    const INIT: Self = QSpinWith(QSpinLock::new());
    fn lock(&self) {
        self.0.lock(&Self::CPU);
    }
    fn try_lock(&self) -> bool {
        self.0.try_lock()
    }
    unsafe fn unlock(&self) {
        self.0.unlock(&Self::CPU);
    }
}

// SAFETY: the spin crate's mutex admits one holder; the guard is forgotten
// and the lock released by `force_unlock` in `unlock`.
unsafe impl RawLock for Tas {
    const NAME: &'static str = "tas";
    const INIT: Self = Tas(spin::mutex::SpinMutex::new(()));
    fn lock(&self) {
        core::mem::forget(self.0.lock());
    }
    fn try_lock(&self) -> bool {
        self.0.try_lock().map(core::mem::forget).is_some()
    }
    unsafe fn unlock(&self) {
        // SAFETY: the caller holds the lock (its guard was forgotten).
        unsafe { self.0.force_unlock() };
    }
}

// SAFETY: a ticket lock admits one holder.
unsafe impl RawLock for Ticket {
    const NAME: &'static str = "ticket";
    const INIT: Self = Ticket(TicketLock::new());
    fn lock(&self) {
        self.0.lock();
    }
    fn try_lock(&self) -> bool {
        self.0.try_lock()
    }
    unsafe fn unlock(&self) {
        // SAFETY: forwarded.
        unsafe { self.0.unlock() };
    }
}

// SAFETY: an MCS lock admits one holder. Lock and unlock run on the same CPU
// (nothing migrates while a spinlock is held), so they use the same nodes.
unsafe impl RawLock for Mcs {
    const NAME: &'static str = "mcs";
    const INIT: Self = Mcs(McsLock::new());
    fn lock(&self) {
        self.0.lock(MCS_NODES_PER_CPU.current());
    }
    fn try_lock(&self) -> bool {
        self.0.try_lock(MCS_NODES_PER_CPU.current())
    }
    unsafe fn unlock(&self) {
        // SAFETY: forwarded; same CPU as the lock.
        unsafe { self.0.unlock(MCS_NODES_PER_CPU.current()) };
    }
}

/// What else may run on the CPU while a lock is held.
pub trait IrqPolicy {
    type Saved: Copy;
    fn enter() -> Self::Saved;
    fn exit(saved: Self::Saved);
}

/// Interrupts untouched, preemption disabled.
pub struct PreemptOff;
/// Interrupts masked on this CPU.
pub struct IrqMasked;

impl IrqPolicy for PreemptOff {
    type Saved = ();
    #[inline(always)]
    fn enter() {
        crate::sched::preempt::disable();
    }
    #[inline(always)]
    fn exit(_: ()) {
        crate::sched::preempt::enable();
    }
}

impl IrqPolicy for IrqMasked {
    type Saved = IrqState;
    fn enter() -> IrqState {
        A::irq_save()
    }
    fn exit(saved: IrqState) {
        A::irq_restore(saved);
    }
}

/// `T` behind raw lock `R` with interrupt policy `I`.
pub struct Lock<R: RawLock, I: IrqPolicy, T: ?Sized> {
    raw: R,
    _irq: PhantomData<I>,
    data: UnsafeCell<T>,
}

/// Thread-context lock: preemption disabled while held.
pub type SpinLock<T, R = QSpin> = Lock<R, PreemptOff, T>;
/// Lock usable from interrupt handlers: interrupts masked while held.
pub type SpinNoIrq<T, R = QSpin> = Lock<R, IrqMasked, T>;

// SAFETY: the lock hands out one `&mut T` at a time, so sharing the lock
// between CPUs only needs `T: Send`.
unsafe impl<R: RawLock, I: IrqPolicy, T: ?Sized + Send> Sync for Lock<R, I, T> {}
// SAFETY: moving the lock moves the value.
unsafe impl<R: RawLock, I: IrqPolicy, T: ?Sized + Send> Send for Lock<R, I, T> {}

/// Holds a [`Lock`]; releases it, then restores interrupts, when dropped.
pub struct Guard<'a, R: RawLock, I: IrqPolicy, T: ?Sized> {
    lock: &'a Lock<R, I, T>,
    saved: I::Saved,
}

impl<R: RawLock, I: IrqPolicy, T> Lock<R, I, T> {
    pub const fn new(value: T) -> Self {
        Self {
            raw: R::INIT,
            _irq: PhantomData,
            data: UnsafeCell::new(value),
        }
    }
}

impl<R: RawLock, I: IrqPolicy, T: ?Sized> Lock<R, I, T> {
    pub fn lock(&self) -> Guard<'_, R, I, T> {
        let saved = I::enter();
        self.raw.lock();
        Guard { lock: self, saved }
    }

    pub fn try_lock(&self) -> Option<Guard<'_, R, I, T>> {
        let saved = I::enter();
        if self.raw.try_lock() {
            Some(Guard { lock: self, saved })
        } else {
            I::exit(saved);
            None
        }
    }

    /// Tries for `attempts` spins; `None` if the lock stayed busy.
    pub fn try_lock_for(&self, attempts: usize) -> Option<Guard<'_, R, I, T>> {
        for _ in 0..attempts {
            if let Some(guard) = self.try_lock() {
                return Some(guard);
            }
            A::spin_hint();
        }
        None
    }

    /// Releases the lock whoever holds it.
    ///
    /// # Safety
    /// The holder must never touch the value or the lock again (it has been
    /// stopped, as when another CPU panicked while printing).
    pub unsafe fn force_unlock(&self) {
        // SAFETY: forwarded to the caller; the holder is gone.
        unsafe { self.raw.unlock() };
    }
}

impl<R: RawLock, I: IrqPolicy, T: ?Sized> Deref for Guard<'_, R, I, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves we hold the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<R: RawLock, I: IrqPolicy, T: ?Sized> DerefMut for Guard<'_, R, I, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves we hold the lock, and `&mut self` that
        // this is the only reference through it.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<R: RawLock, I: IrqPolicy, T: ?Sized> Drop for Guard<'_, R, I, T> {
    fn drop(&mut self) {
        // SAFETY: the guard proves we hold the lock.
        unsafe { self.lock.raw.unlock() };
        I::exit(self.saved);
    }
}

/// The lock algorithms by name, for apps and tests that choose at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    Tas,
    Ticket,
    Mcs,
    QSpin,
}

impl LockKind {
    pub const ALL: [LockKind; 4] = [
        LockKind::Tas,
        LockKind::Ticket,
        LockKind::Mcs,
        LockKind::QSpin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LockKind::Tas => Tas::NAME,
            LockKind::Ticket => Ticket::NAME,
            LockKind::Mcs => Mcs::NAME,
            LockKind::QSpin => QSpin::NAME,
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Runs `$body` with `$R` bound to the raw lock type of `$kind`.
#[macro_export]
macro_rules! with_lock_kind {
    ($kind:expr, $R:ident => $body:expr) => {
        match $kind {
            $crate::sync::LockKind::Tas => {
                type $R = $crate::sync::Tas;
                $body
            }
            $crate::sync::LockKind::Ticket => {
                type $R = $crate::sync::Ticket;
                $body
            }
            $crate::sync::LockKind::Mcs => {
                type $R = $crate::sync::Mcs;
                $body
            }
            $crate::sync::LockKind::QSpin => {
                type $R = $crate::sync::QSpin;
                $body
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn counter_stress<R: RawLock + Send + Sync + 'static>() {
        let lock: Arc<SpinLock<u64, R>> = Arc::new(SpinLock::new(0));
        let threads: Vec<_> = (0..4)
            .map(|cpu| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    arch::hosted::set_cpu_id(cpu);
                    for _ in 0..20_000 {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*lock.lock(), 80_000, "{}", R::NAME);
    }

    #[test]
    fn every_kind_excludes() {
        for kind in LockKind::ALL {
            with_lock_kind!(kind, R => counter_stress::<R>());
        }
    }

    #[test]
    fn kinds_by_name() {
        for kind in LockKind::ALL {
            assert_eq!(LockKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(LockKind::from_name("nope"), None);
    }

    #[test]
    fn try_lock_fails_while_held_for_every_kind() {
        fn check<R: RawLock>() {
            let lock: SpinNoIrq<(), R> = SpinNoIrq::new(());
            let held = lock.lock();
            assert!(lock.try_lock().is_none(), "{}", R::NAME);
            drop(held);
            assert!(lock.try_lock().is_some(), "{}", R::NAME);
        }
        for kind in LockKind::ALL {
            with_lock_kind!(kind, R => check::<R>());
        }
    }

    #[test]
    fn guards_may_drop_out_of_order() {
        let (a, b): (SpinLock<u8, Mcs>, SpinLock<u8, Mcs>) = (SpinLock::new(1), SpinLock::new(2));
        let ga = a.lock();
        let gb = b.lock();
        drop(ga);
        drop(gb);
        let (_ga, _gb) = (a.lock(), b.lock());
    }
}
