//! Locks.
//!
//! - [`qspinlock`]: Linux's queued spinlock with a paravirtual slow path, the
//!   kernel's default ([`QSpin`]).
//! - [`ticket`], [`mcs`] and the `spin` crate's test-and-set ([`Tas`]), for
//!   comparison.
//! - [`SpinLock`] / [`SpinNoIrq`]: the one guard API over all of them.
//! - [`Mutex`], [`Condvar`], [`Semaphore`]: sleeping locks for threads
//!   ([`crate::sched`]), built on the spinlocks and wait queues.
//!
//! The algorithms are written against [`atomic`], which is loom's under
//! `--cfg loom` so they can be model-checked on the host; the kernel-facing
//! parts (statics, per-CPU nodes, guards) are left out of such builds.

pub mod atomic;
pub mod mcs;
pub mod mutex;
pub mod qspinlock;
pub mod ticket;

#[cfg(not(loom))]
mod condvar;
#[cfg(not(loom))]
mod kernel;
#[cfg(not(loom))]
mod lock;
#[cfg(not(loom))]
mod semaphore;

#[cfg(not(loom))]
pub use lock::{
    Guard, IrqMasked, IrqPolicy, Lock, LockKind, Mcs, PreemptOff, QSpin, QSpinWith, RawLock,
    SpinLock, SpinNoIrq, Tas, Ticket,
};

#[cfg(not(loom))]
pub use condvar::Condvar;
#[cfg(not(loom))]
pub use kernel::{
    qspin_stats, set_spin_limit, set_steal_budget, set_unqueued_spins, QSpinStats, SpinCalibration,
    SpinLimit, StealBudget, Unqueued,
};
#[cfg(not(loom))]
pub use mutex::{Mutex, MutexGuard, MutexSpin, MutexStats};
pub use qspinlock::SlowPath;
#[cfg(not(loom))]
pub use semaphore::Semaphore;

#[cfg(all(test, loom))]
mod model;
#[cfg(test)]
mod test_platform;
