//! The paravirtual ABIs lodger speaks, one file per architecture: function
//! IDs, return codes and shared-memory records, exactly as in
//! `docs/abi.md` (checkable line by line). Pure data, so the guest, its
//! host-side tests and the reference host can all use it.

pub mod arm64;
pub mod loongarch;
