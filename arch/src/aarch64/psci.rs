//! PSCI through the conduit the FDT names (`/psci` `method`): `hvc` under KVM
//! and at EL1 under TCG, `smc` when QEMU emulates EL3 firmware for an image
//! entered at EL2. Calls go through the `smccc` crate.

use smccc::{psci, Hvc, Smc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conduit {
    Hvc,
    Smc,
}

impl Conduit {
    pub fn from_method(method: &str) -> Option<Self> {
        match method {
            "hvc" => Some(Self::Hvc),
            "smc" => Some(Self::Smc),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Hvc => "hvc",
            Self::Smc => "smc",
        }
    }

    /// PSCI_VERSION as (major, minor).
    pub fn psci_version(self) -> Option<(u16, u16)> {
        let v = match self {
            Self::Hvc => psci::version::<Hvc>(),
            Self::Smc => psci::version::<Smc>(),
        };
        v.ok().map(|v| (v.major, v.minor))
    }

    pub fn cpu_on(self, mpidr: u64, entry: u64, context: u64) -> Result<(), psci::Error> {
        match self {
            Self::Hvc => psci::cpu_on::<Hvc>(mpidr, entry, context),
            Self::Smc => psci::cpu_on::<Smc>(mpidr, entry, context),
        }
    }

    pub fn system_off(self) -> Result<(), psci::Error> {
        match self {
            Self::Hvc => psci::system_off::<Hvc>(),
            Self::Smc => psci::system_off::<Smc>(),
        }
    }
}
