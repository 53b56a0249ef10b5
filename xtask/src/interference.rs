//! How much this machine got in the way of a QEMU run: the run-queue wait
//! of QEMU's threads (`/proc/PID/task/TID/schedstat`: time on a CPU, time
//! runnable but waiting for one). A vCPU thread that waits is time the
//! guest loses without being told: under nested KVM no layer can report
//! it as steal. Timing tests judge their figures against it
//! (`test.rs`: a failure under interference is not judgeable, and retried).

use std::fs;

/// QEMU's threads' CPU time and run-queue wait, summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub run_ns: u64,
    pub wait_ns: u64,
}

impl Sample {
    /// The share of the threads' wanted time they spent waiting.
    pub fn wait_share(self) -> f64 {
        let wanted = self.run_ns + self.wait_ns;
        if wanted == 0 {
            0.0
        } else {
            self.wait_ns as f64 / wanted as f64
        }
    }
}

/// One `schedstat` line: run ns, wait ns, time slices.
fn parse(line: &str) -> Option<Sample> {
    let mut fields = line.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some(Sample {
        run_ns: fields.next()??,
        wait_ns: fields.next()??,
    })
}

/// The sum over every thread of process `pid` now; `None` if it is gone or
/// the kernel has no schedstats.
pub fn sample(pid: u32) -> Option<Sample> {
    let mut total = Sample::default();
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        // A thread that ended since the listing is skipped.
        let Ok(line) = fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        let s = parse(line.trim())?;
        total.run_ns += s.run_ns;
        total.wait_ns += s.wait_ns;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schedstat_and_shares_the_wait() {
        let s = parse("3000000 1000000 42").unwrap();
        assert_eq!(
            s,
            Sample {
                run_ns: 3_000_000,
                wait_ns: 1_000_000
            }
        );
        assert!((s.wait_share() - 0.25).abs() < 1e-9);
        assert_eq!(parse("garbage"), None);
        assert_eq!(Sample::default().wait_share(), 0.0);
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).expect("this process has schedstats");
        assert!(s.run_ns > 0);
    }
}
