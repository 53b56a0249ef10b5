//! `cargo xtask build`: the guest image.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::arch::Arch;
use crate::cmd;

#[derive(clap::Args)]
pub struct Args {
    /// Guest architecture.
    #[arg(long, value_enum, default_value_t = Arch::Aarch64)]
    arch: Arch,
}

pub fn main(args: Args) -> Result<ExitCode> {
    println!("{}", image(args.arch)?.display());
    Ok(ExitCode::SUCCESS)
}

/// Builds the release image for `arch` and returns the ELF's path.
pub fn image(arch: Arch) -> Result<PathBuf> {
    cmd::run(&mut arch.cargo_boot("build"))?;
    let image = arch.image();
    if !image.is_file() {
        bail!(
            "the build succeeded but {} is missing (is the boot crate's binary still named `lodger`?)",
            image.display()
        );
    }
    Ok(image)
}
