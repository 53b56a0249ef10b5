//! `cargo xtask bench --suite SUITE`: benchmarks. A benchmark measures and
//! reports; it never passes or fails on its figures, only when a run fails
//! (see each suite).
//!
//! Suites: `locks` ([`locks`]); `cargo xtask demo` ([`demo`]) is a small
//! cell set of it; `shootdown` ([`shootdown`]), the TLB shootdown's cost
//! against the vCPU count, and `boot` ([`boot`]), boot time against it,
//! each with its own runner and report on the shared [`stats`] and [`ci`]. The files: [`locks`] drives the suite,
//! [`stats`] parses the guest's result lines and summarises them, [`ci`]
//! gives ratios their confidence intervals, [`goals`] holds the locks'
//! goals and the comparison with Linux's choice of lock, [`render`] writes
//! `target/bench/locks.{md,json,svg}`.

mod boot;
mod ci;
pub mod demo;
mod goals;
mod locks;
mod render;
mod shootdown;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::ValueEnum;

use crate::guest;
use crate::host::{Host, HostKind, MAX_L1_LOAD};
use locks::Workload;
/// pvhost's standard schedule, for the boot tests too.
pub use locks::PVHOST_STEAL;

/// Repetitions of every cell: the default and the least a real run takes.
const REPS: u32 = 5;
/// The most repetitions `--quick` takes (a smoke run, not a measurement).
const QUICK_REPS: u32 = 2;
/// The most rounds a run grows to while a goal's figure is unsettled: the
/// default, and the most `--max-reps` takes.
const MAX_REPS: u32 = 15;
const MAX_REPS_CAP: u32 = 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// `lockstorm` per lock kind and mutex spin policy, PV on and off, on
    /// TCG, nested KVM and pvhost.
    Locks,
    /// `shootdown` per vCPU count (`--cpus`): aarch64 TLBI on TCG (the
    /// baseline), LoongArch IOCSR IPIs on TCG, LoongArch pvhost with the PV
    /// IPI on and off; of `--hosts`, tcg and pvhost.
    Shootdown,
    /// Boot time against the vCPU count (`--cpus`), both architectures
    /// under TCG (`--arches`).
    Boot,
}

#[derive(clap::Args)]
pub struct Args {
    /// The benchmark suite to run.
    #[arg(long, value_enum)]
    suite: Suite,
    /// Boots per cell, interleaved round by round: the first rounds (at
    /// least 5, unless --quick) [default: 5, with --quick 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    reps: Option<u32>,
    /// After the first --reps rounds, add whole rounds while a goal's
    /// figure is unsettled (its 95% CI contains its bar, e.g. straddles
    /// 1x, or is wider than ±25% of its median), up to M rounds in all (at most 40)
    /// [default: 15, or --reps if more; with --quick: --reps]
    #[arg(long, value_name = "M", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_REPS_CAP)))]
    max_reps: Option<u32>,
    /// A smoke run: 1 or 2 reps, figures not fit for comparison.
    #[arg(long)]
    quick: bool,
    /// Hosts to run on, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "tcg,nested-kvm,pvhost"
    )]
    hosts: Vec<HostKind>,
    /// Rows of the matrix to run, comma-separated (`mutex`: only the
    /// sleeping mutex's cells; `overcommit`: TCG at 16 CPUs, a few
    /// seconds a boot; `scale`: TCG at 64 CPUs, aarch64 and loongarch64,
    /// PV on only).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "contended,uncontended,mutex,overcommit,scale"
    )]
    workloads: Vec<Workload>,
    /// nested-kvm: busy loops in L1 next to the guest (see `run --l1-load`);
    /// the report's nested-kvm figures say so.
    #[arg(long, value_name = "K", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=i64::from(MAX_L1_LOAD)))]
    l1_load: u8,
    /// shootdown and boot: the vCPU counts, comma-separated [default:
    /// shootdown 2,8,32,128,256 (counts above the kernel's MAX_CPUS are
    /// listed as skipped); boot 1,2,4,...,256]
    #[arg(long, value_delimiter = ',', value_name = "N,N,...",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    cpus: Vec<u16>,
    /// The guest architectures, comma-separated: boot's; locks': the
    /// cells of these (loongarch64 has pvhost's pair and the scale cell,
    /// the other cells are aarch64's).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "aarch64,loongarch64"
    )]
    arches: Vec<crate::arch::Arch>,
    /// shootdown: how long each boot's app runs, in ms.
    #[arg(long, value_name = "MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    ms: u64,
    #[command(flatten)]
    boot: BootFlags,
}

/// How each boot of a run goes (the bench's and the demo's flags).
#[derive(clap::Args)]
pub struct BootFlags {
    /// Kill a boot after this many seconds [default: the host's, as for `run`]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// Boot this ELF (of the guest architecture) instead of building the image.
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,
    /// Stream each guest's console while it runs.
    #[arg(long, short)]
    pub verbose: bool,
}

pub fn main(args: Args) -> Result<ExitCode> {
    // Each suite checks its own flags; a refusal is a bad command line.
    let refused = |e: anyhow::Error| {
        eprintln!("xtask: error: {e:#}");
        Ok(ExitCode::from(guest::EXIT_BAD_COMMAND_LINE))
    };
    match args.suite {
        Suite::Locks => options(&args).map_or_else(refused, locks::main),
        Suite::Shootdown => shootdown_options(&args).map_or_else(refused, shootdown::main),
        Suite::Boot => boot_options(&args).map_or_else(refused, boot::main),
    }
}

/// The shootdown suite's options: the reps as for locks, the hosts it
/// runs on of `--hosts`.
fn shootdown_options(args: &Args) -> Result<shootdown::Options> {
    let hosts: Vec<HostKind> = unique(&args.hosts)
        .into_iter()
        .filter(|h| matches!(h, HostKind::Tcg | HostKind::Pvhost))
        .collect();
    if hosts.is_empty() {
        bail!("--suite shootdown runs on tcg and pvhost: --hosts names neither");
    }
    let mut cpus = unique(&args.cpus);
    if cpus.is_empty() {
        cpus = shootdown::DEFAULT_CPUS.to_vec();
    }
    if let Some(n) = cpus.iter().find(|&&n| n < 2) {
        bail!("--cpus {n}: a shootdown needs another CPU");
    }
    cpus.sort_unstable();
    Ok(shootdown::Options {
        reps: reps(args)? as usize,
        quick: args.quick,
        hosts,
        cpus,
        ms: args.ms,
        timeout: args.boot.timeout.map(Duration::from_secs),
        verbose: args.boot.verbose,
    })
}

/// `--suite boot`'s options: its own flags; the locks' ones are refused.
fn boot_options(args: &Args) -> Result<boot::Options> {
    let reps = reps(args)?;
    if args.max_reps.is_some() || args.l1_load > 0 {
        bail!("--max-reps and --l1-load are for --suite locks");
    }
    let arches = unique(&args.arches);
    if arches.is_empty() {
        bail!("--arches names no architecture");
    }
    let mut cpus = unique(&args.cpus);
    if cpus.is_empty() {
        cpus = boot::DEFAULT_CPUS.to_vec();
    }
    if let Some(n) = cpus.iter().find(|&&n| n > crate::qemu::MAX_SMP) {
        bail!(
            "--cpus {n}: the kernel brings up at most {}",
            crate::qemu::MAX_SMP
        );
    }
    cpus.sort_unstable();
    let images = match (&args.boot.image, arches.as_slice()) {
        (None, _) => Vec::new(),
        (Some(image), [arch]) => vec![(*arch, image.clone())],
        (Some(_), _) => bail!("--image with --suite boot needs one --arches"),
    };
    Ok(boot::Options {
        reps: reps as usize,
        arches,
        cpus,
        timeout: args.boot.timeout.map(Duration::from_secs),
        images,
        verbose: args.boot.verbose,
    })
}

/// `--reps` and `--quick`, checked: at least [`REPS`], or a smoke run.
fn reps(args: &Args) -> Result<u32> {
    Ok(match (args.reps, args.quick) {
        (None, false) => REPS,
        (None, true) => 1,
        (Some(n), false) if n < REPS => {
            bail!("--reps {n}: a benchmark takes at least {REPS} (--quick for a smoke run of 1-{QUICK_REPS})")
        }
        (Some(n), true) if n > QUICK_REPS => {
            bail!("--quick runs 1-{QUICK_REPS} reps, not {n}: drop --quick for a real run")
        }
        (Some(n), _) => n,
    })
}

/// The suite's options from the command line, checked.
fn options(args: &Args) -> Result<locks::Options> {
    let reps = reps(args)?;
    let max_reps = match (args.max_reps, args.quick) {
        (None, false) => reps.max(MAX_REPS),
        (None, true) => reps,
        (Some(m), true) => bail!("--max-reps {m} with --quick: a smoke run does not grow"),
        (Some(m), false) if m < reps => bail!("--max-reps {m} is less than --reps {reps}"),
        (Some(m), false) => m,
    };
    let hosts = unique(&args.hosts);
    if hosts.is_empty() {
        bail!("--hosts names no host");
    }
    if hosts.contains(&HostKind::Kvm) {
        // This machine's KVM: said now, not at its first boot.
        Host::Kvm(crate::kvm::Settings::DEFAULT).check(locks::ARCH, false)?;
    }
    if args.l1_load > 0 && !hosts.contains(&HostKind::NestedKvm) {
        bail!("--l1-load only with nested-kvm among --hosts");
    }
    let workloads = unique(&args.workloads);
    if workloads.is_empty() {
        bail!("--workloads names no workload");
    }
    let arches = unique(&args.arches);
    if locks::matrix(&hosts, &workloads, &arches).is_empty() {
        bail!("no cell: pvhost has no uncontended one, only tcg an overcommit one, and loongarch64 only pvhost's contended and the scale cells");
    }
    Ok(locks::Options {
        reps: reps as usize,
        max_reps: max_reps as usize,
        quick: args.quick,
        hosts,
        workloads,
        arches,
        l1_load: args.l1_load,
        timeout: args.boot.timeout.map(Duration::from_secs),
        image: args.boot.image.clone(),
        verbose: args.boot.verbose,
        output: locks::BENCH_OUTPUT,
    })
}

/// `items` in order, each once (a flag named twice runs once).
fn unique<T: Copy + PartialEq>(items: &[T]) -> Vec<T> {
    let mut seen = Vec::new();
    for &item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli<A: clap::Args> {
        #[command(flatten)]
        args: A,
    }

    /// A subcommand's arguments from the words of `line`.
    pub(super) fn parse_args<A: clap::Args>(line: &str) -> Result<A> {
        let words = std::iter::once("xtask").chain(line.split_whitespace());
        Ok(Cli::<A>::try_parse_from(words)?.args)
    }

    fn parse(line: &str) -> Result<locks::Options> {
        options(&parse_args(line)?)
    }

    #[test]
    fn defaults_are_five_reps_on_every_host() {
        let o = parse("--suite locks").unwrap();
        assert_eq!((o.reps, o.max_reps), (5, 15));
        assert!(!o.quick);
        assert_eq!(
            o.hosts,
            [HostKind::Tcg, HostKind::NestedKvm, HostKind::Pvhost]
        );
        assert_eq!(o.workloads, Workload::value_variants());
        assert_eq!((o.l1_load, o.timeout, o.verbose), (0, None, false));
        assert!(parse("").is_err(), "--suite is required");
    }

    #[test]
    fn reps_and_quick() {
        assert_eq!(parse("--suite locks --reps 7").unwrap().reps, 7);
        assert_eq!(parse("--suite locks --quick").unwrap().reps, 1);
        assert_eq!(parse("--suite locks --quick --reps 2").unwrap().reps, 2);
        assert_eq!(parse("--suite locks --quick").unwrap().max_reps, 1);
        assert_eq!(parse("--suite locks --reps 20").unwrap().max_reps, 20);
        let o = parse("--suite locks --reps 6 --max-reps 40").unwrap();
        assert_eq!((o.reps, o.max_reps), (6, 40));
        assert_eq!(parse("--suite locks --max-reps 5").unwrap().max_reps, 5);
        for bad in [
            "--reps 4",
            "--reps 0",
            "--quick --reps 3",
            "--reps 101",
            "--max-reps 41",
            "--max-reps 4",
            "--reps 8 --max-reps 7",
            "--quick --max-reps 2",
        ] {
            assert!(parse(&format!("--suite locks {bad}")).is_err(), "{bad}");
        }
    }

    #[test]
    fn workloads_are_a_list() {
        let o = parse("--suite locks --workloads mutex,mutex").unwrap();
        assert_eq!(o.workloads, [Workload::Mutex]);
        assert_eq!(
            parse("--suite locks --workloads uncontended,contended")
                .unwrap()
                .workloads,
            [Workload::Uncontended, Workload::Contended]
        );
        assert!(parse("--suite locks --workloads futex").is_err());
        assert!(parse("--suite locks --hosts pvhost --workloads uncontended").is_err());
    }

    #[test]
    fn arches_pick_the_cells_of_each_guest() {
        use crate::arch::Arch;
        let o = parse("--suite locks").unwrap();
        assert_eq!(o.arches, locks::ARCHES);
        let o = parse("--suite locks --hosts pvhost --arches loongarch64").unwrap();
        assert_eq!(o.arches, [Arch::Loongarch64]);
        let cells = locks::matrix(&o.hosts, &o.workloads, &o.arches);
        let labels: Vec<String> = cells.iter().map(|c| c.label()).collect();
        assert_eq!(
            labels,
            [
                "pvhost loongarch64 smp 4 pv on contended",
                "pvhost loongarch64 smp 4 pv off contended"
            ]
        );
        // No LoongArch cell on nested KVM.
        assert!(parse("--suite locks --hosts nested-kvm --arches loongarch64").is_err());
    }

    #[test]
    fn shootdown_takes_cpus_and_its_hosts() {
        let o = shootdown_options(&parse_args("--suite shootdown").unwrap()).unwrap();
        assert_eq!(o.cpus, [2, 8, 32, 128, 256]);
        assert_eq!(o.hosts, [HostKind::Tcg, HostKind::Pvhost]);
        assert_eq!(o.reps, 5);
        let o = shootdown_options(
            &parse_args("--suite shootdown --cpus 8,2,8 --quick --ms 500").unwrap(),
        )
        .unwrap();
        assert_eq!((o.cpus, o.reps, o.ms), (vec![2, 8], 1, 500));
        assert!(
            shootdown_options(&parse_args("--suite shootdown --hosts nested-kvm").unwrap())
                .is_err()
        );
        assert!(shootdown_options(&parse_args("--suite shootdown --cpus 1").unwrap()).is_err());
    }

    #[test]
    fn boot_takes_cpus_and_arches() {
        let o = boot_options(&parse_args("--suite boot").unwrap()).unwrap();
        assert_eq!(o.cpus, boot::DEFAULT_CPUS);
        assert_eq!(o.arches.len(), 2);
        let o = boot_options(&parse_args("--suite boot --cpus 4,1 --arches loongarch64").unwrap())
            .unwrap();
        assert_eq!(
            (o.cpus, o.arches),
            (vec![1, 4], vec![crate::arch::Arch::Loongarch64])
        );
        assert!(boot_options(&parse_args("--suite boot --cpus 257").unwrap()).is_err());
        assert!(boot_options(&parse_args("--suite boot --l1-load 1").unwrap()).is_err());
    }

    #[test]
    fn hosts_are_a_list() {
        let o = parse("--suite locks --hosts nested-kvm,tcg,nested-kvm").unwrap();
        assert_eq!(o.hosts, [HostKind::NestedKvm, HostKind::Tcg]);
        assert_eq!(
            parse("--suite locks --hosts tcg").unwrap().hosts,
            [HostKind::Tcg]
        );
        assert!(parse("--suite locks --hosts bogus").is_err());
        if std::env::consts::ARCH == "x86_64" {
            let err = parse("--suite locks --hosts tcg,kvm").unwrap_err();
            assert!(err.to_string().contains("this machine is x86_64"), "{err}");
        }
        assert!(parse("--suite locks --hosts tcg --l1-load 2").is_err());
        assert_eq!(
            parse("--suite locks --hosts nested-kvm --l1-load 2")
                .unwrap()
                .l1_load,
            2
        );
    }
}
