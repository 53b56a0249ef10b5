//! `cargo xtask soak`: boots lockstorm, selftest and fairshare in a loop,
//! each boot a case drawn at random (seeded) from the hosts, architectures,
//! vCPU counts, steal schedules and boot switches, until the time is up or
//! a case fails. A failure stops the soak with the `cargo xtask run`
//! command that boots the same case, and the soak command that draws it
//! again.
//!
//! Every case must exit 0: lockstorm loses no update (its own check),
//! selftest passes all of its tests, fairshare ends (and, where the guest
//! has a steal clock, its steal accounting matches that clock). The
//! selftest's timed tests are judged as the boot tests judge them
//! ([`crate::test`]): failed under interference that explains it, a case
//! is booted again, at most three times, then counted as not judgeable.
//!
//! Case `K` of seed `S` depends on `S`, `K` and the `--hosts`/`--arches`
//! lists only, so `--seed S --case K` boots exactly it again.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::arch::Arch;
use crate::boot_tests::{BootTest, Check, BASE};
use crate::host::{Host, HostKind, Pv};
use crate::test::{self, Boots, Tally};
use crate::{nested_kvm, pvhost};

#[derive(clap::Args)]
pub struct Args {
    /// Stop drawing new cases after this many minutes.
    #[arg(long, default_value_t = 30, value_name = "M",
          value_parser = clap::value_parser!(u64).range(1..=24 * 60))]
    minutes: u64,
    /// The seed of the draws [default: from the clock; printed first].
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// Boot only case K of the seed (as a failed soak says), then stop.
    #[arg(long, value_name = "K")]
    case: Option<u64>,
    /// The hosts to draw from (nested-kvm: aarch64 only, and slow).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [HostKind::Tcg, HostKind::Pvhost])]
    hosts: Vec<HostKind>,
    /// The guest architectures to draw from.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Arch::Aarch64, Arch::Loongarch64])]
    arches: Vec<Arch>,
    /// Stream each guest's console while it runs.
    #[arg(long, short)]
    verbose: bool,
}

/// Seconds any case may take (the selftest at 8 LoongArch vCPUs on 2
/// busy cores has needed 50).
const CASE_TIMEOUT_S: u64 = 180;

pub fn main(args: Args) -> Result<ExitCode> {
    if args.hosts.contains(&HostKind::Kvm) {
        bail!("--hosts kvm: the soak draws from emulated hosts only (tcg, pvhost, nested-kvm)");
    }
    if pairs(&args.hosts, &args.arches).next().is_none() {
        bail!("no host in --hosts runs an architecture of --arches");
    }
    let seed = args.seed.unwrap_or_else(clock_seed);
    let test_args = test::Args::boots_only(args.verbose, Some(CASE_TIMEOUT_S));
    let mut boots = Boots::new(Tally::default());
    let cases: Box<dyn Iterator<Item = u64>> = match args.case {
        Some(k) => Box::new(std::iter::once(k)),
        None => Box::new(0..),
    };
    let repeat = |k: u64| {
        format!(
            "cargo xtask soak --seed {seed} --case {k} --hosts {} --arches {}",
            names(&args.hosts, HostKind::name),
            names(&args.arches, Arch::name)
        )
    };
    println!(
        "soak: seed {seed}, {} min, hosts {}, arches {}",
        args.minutes,
        names(&args.hosts, HostKind::name),
        names(&args.arches, Arch::name)
    );
    let start = Instant::now();
    let mut drawn = 0;
    for k in cases {
        if args.case.is_none() && start.elapsed() >= Duration::from_secs(args.minutes * 60) {
            break;
        }
        let case = Case::draw(seed, k, &args.hosts, &args.arches);
        println!(
            "soak: case {k} ({:.0} min in): {}",
            start.elapsed().as_secs_f64() / 60.0,
            case.run_command()
        );
        let failed_before = boots.tally.failed.len();
        boots.run(case.boot_test(k), &test_args);
        drawn += 1;
        if boots.tally.failed.len() > failed_before {
            println!(
                "soak: case {k} failed; to boot it again: {}",
                case.run_command()
            );
            println!("soak: or draw it again: {}", repeat(k));
            break;
        }
    }
    println!(
        "soak: {drawn} cases in {:.1} min (seed {seed}): {} passed, {} failed, {} not judgeable",
        start.elapsed().as_secs_f64() / 60.0,
        boots.tally.passed,
        boots.tally.failed.len(),
        boots.tally.not_judgeable.len()
    );
    Ok(if boots.tally.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A seed from the clock, for a soak that was not given one.
fn clock_seed() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_secs() ^ u64::from(now.subsec_nanos())
}

fn names<T: Copy>(items: &[T], name: fn(T) -> &'static str) -> String {
    items.iter().map(|&i| name(i)).collect::<Vec<_>>().join(",")
}

/// The (host, arch) pairs that can boot, in the order of the lists.
fn pairs<'a>(
    hosts: &'a [HostKind],
    arches: &'a [Arch],
) -> impl Iterator<Item = (HostKind, Arch)> + 'a {
    hosts.iter().flat_map(move |&h| {
        arches
            .iter()
            .filter(move |&&a| h != HostKind::NestedKvm || a == Arch::Aarch64)
            .map(move |&a| (h, a))
    })
}

/// The apps a case boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum App {
    Lockstorm,
    Selftest,
    Fairshare,
}

impl App {
    /// The app's name (`app=NAME`).
    fn name(self) -> &'static str {
        match self {
            App::Lockstorm => "lockstorm",
            App::Selftest => "selftest",
            App::Fairshare => "fairshare",
        }
    }
}

/// One drawn boot.
#[derive(Clone, Debug, PartialEq)]
struct Case {
    arch: Arch,
    host: Host,
    smp: u16,
    app: App,
    /// Boot switches (`pv=off`, `pv.lock=off`, `lock.spin=N`, ...).
    bootargs: String,
    app_args: Vec<String>,
}

impl Case {
    /// Case `k` of `seed`.
    fn draw(seed: u64, k: u64, hosts: &[HostKind], arches: &[Arch]) -> Case {
        // One generator per case, so that a case does not depend on the
        // ones before it.
        let mut rng = fastrand::Rng::with_seed(seed ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let pairs: Vec<_> = pairs(hosts, arches).collect();
        let (kind, arch) = pairs[rng.usize(..pairs.len())];
        let app = [App::Lockstorm, App::Selftest, App::Fairshare][rng.usize(..3)];
        // Overcommit up to 4x on 2 cores; the selftest at 8 LoongArch
        // vCPUs is the slowest case (tens of seconds).
        let smp = match kind {
            HostKind::NestedKvm => rng.u16(1..=4),
            _ => rng.u16(1..=8),
        };
        let host = match kind {
            HostKind::Tcg | HostKind::Kvm => Host::Tcg,
            HostKind::NestedKvm => Host::NestedKvm(nested_kvm::Settings {
                pv: if rng.u8(..4) == 0 { Pv::Off } else { Pv::On },
                l1_load: rng.u8(0..=2),
            }),
            HostKind::Pvhost => Host::Pvhost(pvhost::Settings {
                pv: if rng.u8(..4) == 0 { Pv::Off } else { Pv::On },
                steal: leak(steal_schedule(&mut rng)),
                ..pvhost::Settings::DEFAULT
            }),
        };
        let mut switches = Vec::new();
        // PV switches mean something only where a hypervisor is; on TCG
        // they must be harmless all the same.
        if rng.u8(..6) == 0 {
            switches.push("pv=off".to_owned());
        } else {
            let own: &[&str] = match arch {
                Arch::Aarch64 => &["pv.time=off", "pv.lock=off", "pv.sched=off"],
                Arch::Loongarch64 => &["pv.time=off", "pv.lock=off", "pv.ipi=off"],
            };
            switches.extend(
                own.iter()
                    .filter(|_| rng.u8(..5) == 0)
                    .map(|s| (*s).to_owned()),
            );
        }
        if rng.u8(..5) == 0 {
            switches.push(format!("lock.spin={}", 1u32 << rng.u32(6..=16)));
        }
        // Spin-only locks (`pv=off`, `pv.lock=off`) hand over in FIFO order
        // to vCPUs the host has switched out: past one vCPU per host core
        // the selftest then takes minutes (as Linux's native qspinlock
        // would; docs/ARCHITECTURE.md, "Locks"). Overcommit is the halting
        // lock's case.
        let spin_only = switches.iter().any(|s| s == "pv=off" || s == "pv.lock=off");
        let smp = if spin_only { smp.min(2) } else { smp };
        let app_args = match app {
            App::Lockstorm => {
                let mut kinds: Vec<&str> = ["qspinlock", "tas", "mutex"]
                    .into_iter()
                    .filter(|_| rng.bool())
                    .collect();
                // FIFO locks hand over to preempted vCPUs: a few hundred
                // acquisitions a second when overcommitted, enough for a
                // timed storm.
                if rng.u8(..3) == 0 {
                    kinds.push(["ticket", "mcs"][rng.usize(..2)]);
                }
                if kinds.is_empty() {
                    kinds.push("qspinlock");
                }
                vec![
                    format!("kinds={}", kinds.join(",")),
                    format!("ms={}", rng.u32(100..=400)),
                    format!(
                        "slowpath={}",
                        ["boot", "halt", "spin", "both"][rng.usize(..4)]
                    ),
                ]
            }
            App::Selftest => Vec::new(),
            App::Fairshare => vec![format!("ms={}", rng.u32(300..=1000))],
        };
        let bootargs = switches.join(" ");
        let mut app_args = app_args;
        if app == App::Fairshare {
            // With a steal clock the scheduler's steal must match it.
            let clock = matches!(host, Host::Pvhost(s) if s.pv == Pv::On)
                && !bootargs.contains("pv=off")
                && !bootargs.contains("pv.time=off");
            app_args.push(
                if clock {
                    "expect=steal-match"
                } else {
                    "expect=any"
                }
                .into(),
            );
        }
        Case {
            arch,
            host,
            smp,
            app,
            bootargs,
            app_args,
        }
    }

    /// The boot test that boots this case (leaked: a soak makes hundreds,
    /// and they live as long as the command).
    fn boot_test(&self, k: u64) -> &'static BootTest {
        let app_args: Vec<&'static str> = self.app_args.iter().map(|a| leak(a.clone())).collect();
        let checks: &'static [Check] = match self.app {
            App::Lockstorm => &[Check::Lacks("lost updates"), Check::Lacks("panicked")],
            App::Selftest => &[Check::Contains(" 0 failed"), Check::Lacks("panicked")],
            App::Fairshare => &[
                Check::Contains("worst_ratio_error="),
                Check::Lacks("panicked"),
            ],
        };
        Box::leak(Box::new(BootTest {
            name: leak(format!("soak-{k}")),
            arch: self.arch,
            host: self.host,
            smp: self.smp,
            app: self.app.name(),
            app_args: Box::leak(app_args.into_boxed_slice()),
            bootargs: leak(self.bootargs.clone()),
            checks,
            // The selftest's timed tests are judged against the
            // interference (`crate::test`), its other tests are not.
            timing: None,
            ..BASE
        }))
    }

    /// The `cargo xtask run` command line that boots this case.
    fn run_command(&self) -> String {
        let mut words = vec![
            "cargo xtask run".to_owned(),
            format!("--arch {}", self.arch.name()),
            format!("--smp {}", self.smp),
        ];
        match self.host {
            Host::Tcg | Host::Kvm(_) => words.push("--host tcg".into()),
            Host::NestedKvm(s) => {
                words.push(format!("--host nested-kvm --pv {}", s.pv.name()));
                words.push(format!("--l1-load {}", s.l1_load));
            }
            Host::Pvhost(s) => {
                words.push(format!("--host pvhost --pv {}", s.pv.name()));
                words.push(format!("--steal {}", s.steal));
            }
        }
        if !self.bootargs.is_empty() {
            words.push(format!("--bootargs '{}'", self.bootargs));
        }
        words.push(format!("--timeout {CASE_TIMEOUT_S}"));
        words.push(format!("--app {}", self.app.name()));
        if !self.app_args.is_empty() {
            words.push(format!("-- {}", self.app_args.join(" ")));
        }
        words.join(" ")
    }
}

/// A steal schedule in pvhost's own form: none, periodic (all vCPUs at once
/// or staggered) or random, sometimes ending early.
fn steal_schedule(rng: &mut fastrand::Rng) -> String {
    let policy = match rng.u8(..4) {
        0 => return "none".into(),
        1 | 2 => {
            let period = rng.u32(2..=20) * 1000;
            let share = rng.u32(10..=70);
            let phase = if rng.bool() { period / 4 } else { 0 };
            format!("periodic:{period},{share},{phase}")
        }
        _ => format!(
            "random:{},{},{}",
            rng.u32(..1000),
            rng.u32(500..=5000),
            rng.u32(200..=3000)
        ),
    };
    if rng.u8(..4) == 0 {
        format!("{policy}@{}", rng.u32(200..=2000))
    } else {
        policy
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &[HostKind] = &[HostKind::Tcg, HostKind::Pvhost, HostKind::NestedKvm];
    const ARCHES: &[Arch] = &[Arch::Aarch64, Arch::Loongarch64];

    #[test]
    fn a_case_depends_only_on_the_seed_and_its_number() {
        for k in 0..50 {
            assert_eq!(
                Case::draw(7, k, HOSTS, ARCHES),
                Case::draw(7, k, HOSTS, ARCHES)
            );
        }
        let differ =
            (0..50).any(|k| Case::draw(7, k, HOSTS, ARCHES) != Case::draw(8, k, HOSTS, ARCHES));
        assert!(differ, "the seed changes nothing");
    }

    #[test]
    fn draws_cover_every_host_arch_and_app_and_stay_bootable() {
        let cases: Vec<Case> = (0..400).map(|k| Case::draw(1, k, HOSTS, ARCHES)).collect();
        for app in [App::Lockstorm, App::Selftest, App::Fairshare] {
            assert!(cases.iter().any(|c| c.app == app), "{app:?} never drawn");
        }
        for arch in ARCHES {
            assert!(cases
                .iter()
                .any(|c| c.arch == *arch && matches!(c.host, Host::Pvhost(_))));
        }
        assert!(cases.iter().any(|c| matches!(c.host, Host::NestedKvm(_))));
        assert!(cases.iter().any(|c| c.bootargs.contains("pv=off")));
        for c in &cases {
            // nested KVM runs aarch64 guests only; every steal schedule is
            // one pvhost accepts, every command line one the kernel does.
            if matches!(c.host, Host::NestedKvm(_)) {
                assert_eq!(c.arch, Arch::Aarch64);
            }
            if let Host::Pvhost(s) = c.host {
                pvhost::normalize_steal(s.steal).unwrap();
            }
            assert!((1..=8).contains(&c.smp));
            if c.bootargs.contains("pv=off") || c.bootargs.contains("pv.lock=off") {
                assert!(c.smp <= 2, "spin-only locks overcommitted: {c:?}");
            }
            let test = c.boot_test(0);
            crate::guest::bootargs(test.app, test.bootargs, test.app_args).unwrap();
        }
    }

    #[test]
    fn the_repro_command_names_the_whole_case() {
        let c = Case {
            arch: Arch::Loongarch64,
            host: Host::Pvhost(pvhost::Settings {
                pv: Pv::Off,
                steal: "periodic:10000,50,2500",
                ..pvhost::Settings::DEFAULT
            }),
            smp: 3,
            app: App::Lockstorm,
            bootargs: "pv.lock=off lock.spin=64".into(),
            app_args: vec!["kinds=tas".into(), "ms=100".into()],
        };
        assert_eq!(
            c.run_command(),
            "cargo xtask run --arch loongarch64 --smp 3 --host pvhost --pv off \
             --steal periodic:10000,50,2500 --bootargs 'pv.lock=off lock.spin=64' \
             --timeout 180 --app lockstorm -- kinds=tas ms=100"
        );
    }

    #[test]
    fn only_hosts_that_run_an_arch_pair_with_it() {
        let p: Vec<_> = pairs(&[HostKind::NestedKvm], &[Arch::Loongarch64]).collect();
        assert!(p.is_empty());
        let p: Vec<_> = pairs(&[HostKind::NestedKvm, HostKind::Tcg], ARCHES).collect();
        assert_eq!(p.len(), 3);
    }
}
