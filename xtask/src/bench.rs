//! `cargo xtask bench`: nothing yet. It says so and fails rather than
//! pretend to have measured anything.

use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {}

pub fn main(_args: Args) -> Result<ExitCode> {
    eprintln!("no benchmark suites yet");
    Ok(ExitCode::from(2))
}
