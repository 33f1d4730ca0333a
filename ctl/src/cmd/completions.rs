//! `gncctl completions SHELL`: a completion script for the shell, on stdout.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

#[derive(clap::Args)]
pub struct Args {
    /// The shell to complete for.
    pub shell: Shell,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "gncctl", &mut std::io::stdout());
    Ok(())
}
