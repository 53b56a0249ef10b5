//! The kernel's side of the lock algorithms: per-CPU queue nodes, the PV
//! hash table, and the PV primitives from the PV view.

use arch::Arch;

use super::mcs::McsCpuNodes;
use super::qspinlock::{McsNode, Platform, PvHash, MAX_NODES, PV_HASH_SLOTS};
use crate::percpu::PerCpu;
use crate::{per_cpu, pv, A};

static QSPIN_NODES: PerCpu<[McsNode; MAX_NODES]> = per_cpu!([const { McsNode::new() }; MAX_NODES]);
static PV_HASH: PvHash<PV_HASH_SLOTS> = PvHash::new();
/// Each CPU's MCS-lock nodes.
pub(super) static MCS_NODES_PER_CPU: PerCpu<McsCpuNodes> = per_cpu!(McsCpuNodes::new());

/// The qspinlock's platform in the kernel (no state: all of it is static).
pub(super) struct KernelCpu;

impl Platform for KernelCpu {
    #[inline(always)]
    fn cpu(&self) -> usize {
        A::cpu_id()
    }
    fn node(&self, cpu: usize, idx: usize) -> &McsNode {
        &QSPIN_NODES.of(cpu)[idx]
    }
    fn hash(&self) -> &PvHash<PV_HASH_SLOTS> {
        &PV_HASH
    }
    #[inline(always)] // Read once per slow-path entry.
    fn pv(&self) -> bool {
        pv::lock_slow_path_is_pv()
    }
    fn wait(&self, still: &dyn Fn() -> bool) {
        pv::wait(still);
    }
    fn kick(&self, cpu: usize) {
        pv::kick(cpu);
    }
    fn vcpu_is_preempted(&self, cpu: usize) -> bool {
        pv::vcpu_is_preempted(cpu)
    }
}
