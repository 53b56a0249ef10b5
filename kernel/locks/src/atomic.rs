//! The atomics the lock algorithms use: `core`'s in the kernel, loom's when
//! model-checking (`RUSTFLAGS="--cfg loom" cargo test -p locks --release`).

#[cfg(loom)]
pub use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

#[cfg(not(loom))]
pub use core::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

/// One iteration of a spin-wait: a CPU hint in the kernel; a yield in host
/// tests, this crate's and (`feature = "std"`) the kernel's (loom must see
/// every spin as a chance to run another thread, and test threads outnumber
/// the host's cores: a spinning queue waiter would otherwise burn the time
/// slice its predecessor needs).
#[inline(always)] // Sits in every spin loop.
pub fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(all(any(test, feature = "std"), not(loom)))]
    std::thread::yield_now();
    #[cfg(not(any(test, feature = "std")))]
    core::hint::spin_loop();
}

/// `pub const fn new()` in the kernel (statics need it), a plain `fn` under
/// loom (whose atomics have no const constructors), and `Default` either way.
macro_rules! lock_new {
    ($ty:ty, $body:block) => {
        impl $ty {
            #[cfg(not(loom))]
            pub const fn new() -> Self $body
            #[cfg(loom)]
            pub fn new() -> Self $body
        }
        impl Default for $ty {
            fn default() -> Self {
                Self::new()
            }
        }
    };
}
pub(crate) use lock_new;
