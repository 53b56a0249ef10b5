//! One raw hypercall in the host's own convention, for the fuzzer and the
//! tests (`crate::Pv::pv_raw_call`).

/// The registers of one raw hypercall ([`crate::Pv::pv_raw_call`]), in the
/// host's convention: arm64 SMCCC x0..x5 (x0 the function ID, in w0; x1..x3
/// its arguments, x4 and x5 not passed; x0..x3 back, the rest 0),
/// LoongArch `hvcl 0x100` a0..a5 (a0 the function; a0..a5 back, the ABI
/// clobbers only a0).
pub type RawRegs = [u64; 6];

/// Which convention [`RawRegs`] follow here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawConvention {
    /// Arm's SMC Calling Convention, on the conduit the FDT names.
    Smccc,
    /// LoongArch KVM's `hvcl 0x100`.
    Hvcl,
}

/// Why [`crate::Pv::pv_raw_call`] issued no call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawCallError {
    /// No conduit here is known to answer any function ID: the probe found
    /// no SMCCC >= 1.1 (on a machine without EL2 an unknown HVC is
    /// UNDEFINED), `pv=off` forbade every call, or the architecture has no
    /// such convention (LoongArch's `hvcl` ABI is not SMCCC).
    Unavailable,
    /// A call that could take a CPU, the machine or memory away from the
    /// kernel; says which.
    Refused(&'static str),
}
