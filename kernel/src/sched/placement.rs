//! Where threads go, as pure rules over what each CPU looks like now (the
//! scheduler gathers the views; these choose).
//!
//! A CPU whose vCPU the PV view reports preempted is avoided by wake-up
//! placement (a thread queued there waits for the host) and preferred as a
//! victim by pulling and balancing (its queued threads are not running
//! anyway). Without a PV preempted flag every CPU reads as running, and the
//! rules are plain least-loaded ones.

/// One CPU as placement sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuView {
    pub cpu: usize,
    /// Online and scheduling.
    pub up: bool,
    /// The PV view reports its vCPU preempted.
    pub preempted: bool,
    /// Threads queued there, plus the running one unless it is idle.
    pub load: usize,
    /// Threads queued there (could be moved).
    pub queued: usize,
}

impl CpuView {
    fn usable(&self) -> bool {
        self.up && !self.preempted
    }
}

/// Where a thread that becomes runnable goes, `last` being where it ran:
/// there if that CPU is usable and has nothing to run; else the least loaded
/// usable CPU (`last` winning ties, then the lowest id); `last` if none is
/// usable.
pub fn wake_target(last: usize, cpus: impl Iterator<Item = CpuView> + Clone) -> usize {
    let usable = cpus.filter(CpuView::usable);
    if usable.clone().any(|v| v.cpu == last && v.load == 0) {
        return last;
    }
    usable
        .min_by_key(|v| (v.load, v.cpu != last, v.cpu))
        .map_or(last, |v| v.cpu)
}

/// Whom `cpu`, about to go idle, takes a thread from: the CPU with queued
/// threads, preempted ones first, then the most queued.
pub fn pull_victim(cpu: usize, cpus: impl Iterator<Item = CpuView>) -> Option<usize> {
    cpus.filter(|v| v.cpu != cpu && v.queued > 0)
        .max_by_key(|v| (v.preempted, v.queued))
        .map(|v| v.cpu)
}

/// Whom `cpu` (with `mine` threads) takes a thread from on its balancing
/// tick: the most loaded other CPU (preempted ones first among equals), if
/// it has two or more threads more.
pub fn balance_victim(
    cpu: usize,
    mine: usize,
    cpus: impl Iterator<Item = CpuView>,
) -> Option<usize> {
    cpus.filter(|v| v.cpu != cpu)
        .max_by_key(|v| (v.load, v.preempted))
        .filter(|v| v.load >= mine + 2)
        .map(|v| v.cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(cpu: usize, load: usize, preempted: bool) -> CpuView {
        CpuView {
            cpu,
            up: true,
            preempted,
            load,
            queued: load.saturating_sub(1),
        }
    }

    #[test]
    fn a_woken_thread_stays_on_its_idle_cpu() {
        let cpus = [view(0, 1, false), view(1, 0, false), view(2, 0, false)];
        assert_eq!(wake_target(2, cpus.into_iter()), 2);
    }

    #[test]
    fn a_woken_thread_avoids_preempted_vcpus() {
        // Its last CPU is idle but preempted; so is the least loaded other.
        let cpus = [
            view(0, 2, false),
            view(1, 0, true),
            view(2, 0, true),
            view(3, 1, false),
        ];
        assert_eq!(wake_target(1, cpus.into_iter()), 3);
        // Without the preempted flags it would have stayed.
        let plain = cpus.map(|v| CpuView {
            preempted: false,
            ..v
        });
        assert_eq!(wake_target(1, plain.into_iter()), 1);
    }

    #[test]
    fn least_loaded_then_last_then_lowest() {
        let cpus = [
            view(0, 2, false),
            view(1, 1, false),
            view(2, 1, false),
            view(3, 3, false),
        ];
        assert_eq!(wake_target(2, cpus.into_iter()), 2);
        assert_eq!(wake_target(3, cpus.into_iter()), 1);
    }

    #[test]
    fn with_every_vcpu_preempted_or_down_it_stays() {
        let mut cpus = [view(0, 0, true), view(1, 0, true)];
        assert_eq!(wake_target(1, cpus.into_iter()), 1);
        cpus[0] = CpuView {
            preempted: false,
            up: false,
            ..cpus[0]
        };
        assert_eq!(wake_target(1, cpus.into_iter()), 1);
    }

    #[test]
    fn an_idle_cpu_pulls_from_a_preempted_vcpu_first() {
        let cpus = [
            view(0, 0, false),
            view(1, 4, false),
            view(2, 2, true),
            view(3, 1, false),
        ];
        assert_eq!(pull_victim(0, cpus.into_iter()), Some(2));
        let plain = cpus.map(|v| CpuView {
            preempted: false,
            ..v
        });
        assert_eq!(pull_victim(0, plain.into_iter()), Some(1));
        // Nothing queued anywhere else: nothing to pull.
        let empty = [view(0, 0, false), view(1, 1, true)];
        assert_eq!(pull_victim(0, empty.into_iter()), None);
    }

    #[test]
    fn balancing_needs_two_threads_more() {
        let cpus = [view(0, 1, false), view(1, 2, false), view(2, 2, true)];
        assert_eq!(balance_victim(0, 1, cpus.into_iter()), None);
        let cpus = [view(0, 1, false), view(1, 3, false), view(2, 3, true)];
        assert_eq!(balance_victim(0, 1, cpus.into_iter()), Some(2));
    }
}
