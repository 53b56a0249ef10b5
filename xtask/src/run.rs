//! `cargo xtask run`: build the image, boot it, stream its console and exit
//! with the guest's status (see [`crate::guest`] for the codes).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use crate::arch::Arch;
use crate::qemu::{self, Boot, Host, Outcome};
use crate::{build, guest};

#[derive(clap::Args)]
pub struct Args {
    /// Guest architecture.
    #[arg(long, value_enum, default_value_t = Arch::Aarch64)]
    arch: Arch,
    /// Number of CPUs (1..=8).
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=8))]
    smp: u8,
    /// Where the guest runs.
    #[arg(long, value_enum, default_value_t = Host::Tcg)]
    host: Host,
    /// The app the kernel runs (boot argument `app=NAME`).
    #[arg(long, default_value = "selftest", value_name = "NAME")]
    app: String,
    /// Enter the guest at EL2 (aarch64: `-M virt,...,virtualization=on`).
    #[arg(long)]
    el2: bool,
    /// Kill QEMU after this many seconds (exit status 124).
    #[arg(long, default_value_t = 60, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    /// Extra raw kernel arguments, placed after `app=NAME` and before `--`.
    #[arg(
        long,
        value_name = "STRING",
        default_value = "",
        hide_default_value = true
    )]
    bootargs: String,
    /// Boot this ELF instead of building the image.
    #[arg(long, value_name = "PATH")]
    image: Option<PathBuf>,
    /// Arguments for the app: `-- a b` boots with `app=NAME -- a b`.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

pub fn main(args: Args) -> Result<ExitCode> {
    // Check the command line before spending time on a build.
    let bootargs = guest::bootargs(&args.app, &args.bootargs, &args.args)?;
    args.arch.machine_args(args.el2)?;

    let boot = Boot {
        arch: args.arch,
        host: args.host,
        smp: args.smp,
        el2: args.el2,
        image: match args.image {
            Some(image) => image,
            None => build::image(args.arch)?,
        },
        bootargs,
    };
    let run = qemu::run(boot.command()?, Duration::from_secs(args.timeout), true)?;
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
