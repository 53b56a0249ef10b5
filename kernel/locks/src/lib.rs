//! lodger's lock algorithms, apart from the kernel that uses them.
//!
//! - [`qspinlock`]: Linux's queued spinlock with a paravirtual slow path.
//! - [`ticket`] and [`mcs`]: the classic spinlocks, for comparison.
//! - [`mutex`]: the sleeping mutex's algorithm ([`mutex::RawMutex`]).
//!
//! Each is written against [`atomic`] and a small trait for what it needs
//! from its surroundings ([`qspinlock::Platform`], [`mutex::Threads`],
//! [`mutex::WaitList`]): the kernel implements them over its per-CPU
//! statics, PV view and scheduler (`kernel::sync`); the tests here over
//! host threads. Under `--cfg loom`, [`atomic`] is loom's, and the models
//! check every interleaving of a few threads:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p locks --release
//! ```
//!
//! A loom build is this same crate with loom's atomics (only the host
//! stress tests give way to the models), so the kernel needs no `cfg` for
//! it: the `cfg(loom)`s are all here.

// std for the tests, and for `feature = "std"` (spin-waits that yield).
#![cfg_attr(not(any(test, feature = "std")), no_std)]

pub mod atomic;
pub mod mcs;
pub mod mutex;
pub mod qspinlock;
pub mod ticket;

#[cfg(all(test, loom))]
mod model;
#[cfg(test)]
mod test_platform;
