//! A set of logical CPUs, as the PV IPI and the shootdown name their targets.

/// A set of logical CPUs: one bit per CPU, for every CPU the kernel supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuMask([u64; CPU_MASK_WORDS]);

const CPU_MASK_WORDS: usize = crate::MAX_CPUS.div_ceil(64);

impl CpuMask {
    /// This set and `cpu` (ignored past [`crate::MAX_CPUS`]).
    pub fn with(mut self, cpu: usize) -> Self {
        if let Some(word) = self.0.get_mut(cpu / 64) {
            *word |= 1 << (cpu % 64);
        }
        self
    }
    pub fn contains(self, cpu: usize) -> bool {
        self.0
            .get(cpu / 64)
            .is_some_and(|w| w & 1 << (cpu % 64) != 0)
    }
    /// The CPUs of the set, in increasing order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..crate::MAX_CPUS).filter(move |&c| self.contains(c))
    }
    pub fn is_empty(self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }
    pub fn count(self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
}

impl FromIterator<usize> for CpuMask {
    fn from_iter<I: IntoIterator<Item = usize>>(cpus: I) -> Self {
        cpus.into_iter().fold(Self::default(), Self::with)
    }
}

#[cfg(test)]
mod cpu_mask_tests {
    use super::CpuMask;
    use crate::MAX_CPUS;

    #[test]
    fn holds_every_cpu_the_kernel_supports() {
        assert_eq!(MAX_CPUS, 256);
        let edges = [0, 63, 64, 127, 128, 255];
        let mask: CpuMask = edges.into_iter().collect();
        assert_eq!(mask.iter().collect::<Vec<_>>(), edges);
        assert_eq!(mask.count(), edges.len());
        for cpu in 0..MAX_CPUS {
            assert_eq!(mask.contains(cpu), edges.contains(&cpu), "CPU {cpu}");
        }
    }

    #[test]
    fn ignores_cpus_past_the_maximum() {
        let mask = CpuMask::default().with(MAX_CPUS).with(usize::MAX / 2);
        assert!(mask.is_empty());
        assert!(!mask.contains(MAX_CPUS));
        let all: CpuMask = (0..MAX_CPUS).collect();
        assert_eq!(all.count(), MAX_CPUS);
    }
}
