//! lodger's host-side tooling, run as `cargo xtask COMMAND` from anywhere in
//! the workspace (the alias lives in `.cargo/config.toml`).
//!
//! One file per subcommand (`build`, `run`, `test`, `bench`, `soak`, `libvirt`;
//! `demo` is `bench/demo.rs`); the pieces they
//! share are [`arch`] (what differs per guest architecture), [`host`] (where
//! the guest runs), [`guest`] (the contract with the kernel: boot arguments
//! and the exit marker), [`qemu`] (starting, watching and killing QEMU) and
//! [`cmd`] (printing and running external commands). The real-KVM hosts
//! are [`kvm`] (this machine's KVM; its command line serves both) and
//! [`nested_kvm`], built from Debian packages with [`debian`] and [`cpio`].
//! [`progress`] shows how the long commands get on (a live line on a
//! terminal, plain lines in CI). The QEMU boot tests are data, in [`boot_tests`]; [`steal`] compares the
//! guest's steal clock with pvhost's ground truth for one of their checks.

#![forbid(unsafe_code)]

mod arch;
mod bench;
mod boot_tests;
mod build;
mod cmd;
mod cpio;
mod debian;
mod guest;
mod host;
mod interference;
mod kvm;
mod libvirt;
mod nested_kvm;
mod progress;
mod pvhost;
mod qemu;
mod qemu_pv;
mod run;
mod soak;
mod steal;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, boot and test lodger under QEMU",
    after_help = "Each command's flags: cargo xtask COMMAND --help. Exit statuses (the guest's, \
                  and 2, 124, 125, 130 of xtask's own): README.md, \"Exit status\"."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the guest image (release) and print its path.
    Build(build::Args),
    /// Build the guest image, boot it under QEMU and exit with its status.
    Run(run::Args),
    /// Host tests and lints, then the QEMU boot tests.
    Test(test::Args),
    /// Benchmarks: `--suite locks` (lock kinds, PV on and off) into target/bench/.
    Bench(bench::Args),
    /// The demo: lockstorm with PV on and off, side by side (pvhost with a
    /// preemption schedule by default), in about a minute; into target/demo/.
    Demo(bench::demo::Args),
    /// Boot lockstorm, selftest and fairshare in a loop with random (seeded)
    /// hosts, vCPU counts, steal schedules and boot switches until the time
    /// is up or a boot fails (then: the command that repeats it).
    Soak(soak::Args),
    /// Write a libvirt domain XML for the image (KVM, direct kernel boot,
    /// serial console) and print its path.
    Libvirt(libvirt::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = qemu::kill_on_exit() {
        eprintln!("xtask: error: {e:#}");
        return ExitCode::from(guest::EXIT_NO_STATUS);
    }
    let result = match cli.command {
        Command::Build(args) => build::main(args),
        Command::Run(args) => run::main(args),
        Command::Test(args) => test::main(args),
        Command::Bench(args) => bench::main(args),
        Command::Demo(args) => bench::demo::main(args),
        Command::Soak(args) => soak::main(args),
        Command::Libvirt(args) => libvirt::main(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            // Like timeout(1): 125 says the tool failed, not the guest.
            ExitCode::from(guest::EXIT_NO_STATUS)
        }
    }
}
