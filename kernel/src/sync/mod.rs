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
//! The algorithms live in the [`locks`] crate (re-exported here), written
//! against its `atomic` module, which is loom's under `--cfg loom` so they
//! can be model-checked on the host; this module holds the kernel-facing
//! parts: statics, per-CPU nodes, the PV primitives, guards, and the
//! sleeping locks over the scheduler.

pub use locks::{mcs, qspinlock, ticket};

mod condvar;
mod kernel;
mod lock;
pub mod mutex;
mod semaphore;

pub use lock::{
    Guard, IrqMasked, IrqPolicy, Lock, LockKind, Mcs, PreemptOff, QSpin, QSpinWith, RawLock,
    SpinLock, SpinNoIrq, Tas, Ticket,
};

pub use condvar::Condvar;
pub use kernel::{
    qspin_stats, set_spin_limit, set_steal_budget, set_unqueued_spins, QSpinStats, SpinCalibration,
    SpinLimit, StealBudget, Unqueued,
};
pub use mutex::{Mutex, MutexGuard, MutexSpin, MutexStats};
pub use qspinlock::SlowPath;
pub use semaphore::Semaphore;
