//! `cargo xtask run`: build the image, boot it, stream its console and exit
//! with the guest's status (see [`crate::guest`] for the codes).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use crate::arch::Arch;
use crate::host::{Host, HostKind, Preparations, Pv, MAX_L1_LOAD};
use crate::qemu::{self, Boot, MemSize, Outcome, MAX_SMP};
use crate::{build, guest};

/// The flags `run` shares with `libvirt` ([`crate::libvirt`]): the guest,
/// its CPUs and memory, and what it boots.
#[derive(clap::Args)]
pub struct Guest {
    /// Guest architecture.
    #[arg(long, value_enum, default_value_t = Arch::Aarch64)]
    pub arch: Arch,
    /// Number of CPUs (1..=256, the kernel's MAX_CPUS).
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_SMP)))]
    pub smp: u16,
    /// Guest RAM (run: tcg only), NM or NG from 128M to 4G, e.g. 768M or 1G.
    #[arg(long, value_name = "SIZE", default_value_t = qemu::GUEST_MEMORY)]
    pub mem: MemSize,
    /// The app the kernel runs (boot argument `app=NAME`).
    #[arg(long, default_value = "selftest", value_name = "NAME")]
    pub app: String,
    /// Extra raw kernel arguments (such as the PV switches `pv=off`,
    /// `pv.lock=off`), placed after `app=NAME` and before `--`.
    #[arg(
        long,
        value_name = "STRING",
        default_value = "",
        hide_default_value = true
    )]
    pub bootargs: String,
    /// Boot this ELF instead of building the image.
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,
    /// Arguments for the app: `-- a b` boots with `app=NAME -- a b`.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

impl Guest {
    /// The kernel command line ([`guest::bootargs`]).
    pub fn bootargs(&self) -> Result<String> {
        guest::bootargs(&self.app, &self.bootargs, &self.args)
    }

    /// `--image`, or the image built for `--arch`.
    pub fn image(&self) -> Result<PathBuf> {
        match &self.image {
            Some(image) => Ok(image.clone()),
            None => build::image(self.arch),
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    guest: Guest,
    /// Where the guest runs.
    #[arg(long, value_enum, default_value_t = HostKind::Tcg)]
    host: HostKind,
    /// nested-kvm and kvm: the guest's PV interfaces (`-cpu
    /// host,kvm-steal-time=on|off`; loongarch64 kvm: `kvm-pv-ipi` and
    /// `kvm-steal-time`); pvhost: PV time, PV lock and PV sched offered or
    /// not [default: on]
    #[arg(long, value_enum, value_name = "on|off")]
    pv: Option<Pv>,
    /// pvhost with PV on: only these features offered, `all`, `none` or a
    /// list by the `pv:` line's names: time,lock,sched (aarch64: pvhost.time,
    /// pvhost.lock, pvhost.sched) or time,ipi,preempt (loongarch64:
    /// STEAL_TIME, IPI, PREEMPT) [default: all]
    #[arg(long, value_name = "LIST")]
    offer: Option<String>,
    /// nested-kvm: busy loops started in L1 before the guest, so that its
    /// vCPUs are really preempted [default: 0]
    #[arg(long, value_name = "K",
          value_parser = clap::value_parser!(u8).range(0..=i64::from(MAX_L1_LOAD)))]
    l1_load: Option<u8>,
    /// pvhost: the preemption injector's policy: none,
    /// periodic:PERIOD,SHARE[,PHASE] (periodic:10ms,50%,2.5ms) or
    /// random:SEED,MEAN_RUN,MEAN_STEAL (random:seed=7,run=3ms,steal=2ms),
    /// each optionally followed by @STOP (@2s: no preemption from then on);
    /// bare numbers are µs, % and (after @) ms, as in
    /// periodic:PERIOD_US,SHARE_PCT[,PHASE_US] [default: none]
    #[arg(long, value_name = "POLICY")]
    steal: Option<String>,
    /// Enter the guest at EL2 (aarch64: `-M virt,...,virtualization=on`).
    #[arg(long)]
    el2: bool,
    /// Kill QEMU after this many seconds (exit status 124) [default: 60,
    /// nested-kvm 180]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,
}

/// The boot arguments and the host, if the command line makes sense and
/// the host can run the guest here (`--host kvm` looks at the machine).
fn check(args: &Args) -> Result<(String, Host)> {
    let g = &args.guest;
    let bootargs = g.bootargs()?;
    let mut host = Host::from_args(args.host, args.pv, args.l1_load, args.steal.as_deref())?;
    if let Some(offer) = &args.offer {
        host = host.with_offer(crate::pvhost::Offer::parse(offer)?)?;
    }
    host.check(g.arch, args.el2)?;
    qemu::check_mem(host, g.mem)?;
    Ok((bootargs, host))
}

pub fn main(args: Args) -> Result<ExitCode> {
    // Check the command line before spending time on a build; a bad one
    // exits 2, as clap's own errors do.
    let (bootargs, host) = match check(&args) {
        Ok(checked) => checked,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            return Ok(ExitCode::from(guest::EXIT_BAD_COMMAND_LINE));
        }
    };
    let g = &args.guest;

    let boot = Boot {
        arch: g.arch,
        host,
        smp: g.smp,
        mem: g.mem,
        el2: args.el2,
        image: g.image()?,
        bootargs,
    };
    let timeout = args
        .timeout
        .map_or(host.default_timeout(), Duration::from_secs);
    let launch = boot.command(&mut Preparations::default())?;
    let run = qemu::run(launch, timeout, true)?;
    if !run.console.is_empty() && !run.console.ends_with('\n') {
        // Our message starts on a line of its own.
        println!();
    }
    let seconds = run.elapsed.as_secs_f64();
    match run.outcome {
        Outcome::Exited(_) => eprintln!("xtask: {} after {seconds:.1} s", run.outcome),
        _ => eprintln!("xtask: error: {} ({seconds:.1} s)", run.outcome),
    }
    Ok(ExitCode::from(run.outcome.exit_code()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(words: &[&str]) -> Args {
        Cli::try_parse_from(std::iter::once("run").chain(words.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn host_kvm_on_this_machine() {
        let kvm = args(&["--host", "kvm", "--pv", "off", "--smp", "2"]);
        if std::env::consts::ARCH == "x86_64" {
            // It can only fail here, at once and with status 2, before a build.
            let err = check(&kvm).unwrap_err();
            assert!(
                format!("{err:#}").contains("this machine is x86_64"),
                "{err:#}"
            );
            assert_eq!(
                main(kvm).unwrap(),
                ExitCode::from(guest::EXIT_BAD_COMMAND_LINE)
            );
        }
        let err = check(&args(&["--host", "kvm", "--l1-load", "1"])).unwrap_err();
        assert!(err.to_string().starts_with("--l1-load only"), "{err}");
    }
}
