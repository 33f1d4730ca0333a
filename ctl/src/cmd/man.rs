//! `gncctl man`: the man page, in roff, on stdout (e.g. `gncctl man > gncctl.1`).

use clap::CommandFactory;

use crate::cli::Cli;

pub fn run() -> anyhow::Result<()> {
    let page = clap_mangen::Man::new(Cli::command());
    page.render(&mut std::io::stdout())?;
    Ok(())
}
