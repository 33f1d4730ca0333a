//! gnc-run: the training half of gncctl. `gncctl run …` and `gncctl verify …` exec it with
//! the same arguments; it links libtorch and pins the determinism contract's CPU environment
//! before anything else.
#![forbid(unsafe_code)]

mod run;
mod supervised;
mod verify;

use clap::Parser;

use gnc_ctl::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Before any thread or tensor exists: the determinism contract's CPU environment.
    if let Err(e) = gnc_worker::pin::pin_process_environment() {
        eprintln!("error: {e}");
        return std::process::ExitCode::from(2);
    }
    gnc_ctl::init_logging();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Verify(args) => verify::run(args),
        _ => Err(anyhow::anyhow!(
            "gnc-run only trains (`run`, `verify`); use gncctl for the other commands"
        )),
    };
    gnc_ctl::finish(result)
}
