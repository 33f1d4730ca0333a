//! gnc-run: the training half of gncctl. `gncctl run …`, `verify …` and `analyze …` exec it with
//! the same arguments; it links libtorch and pins the CPU environment of the job's
//! reproducibility level before any tensor exists.

mod analyze;
mod doctor;
mod run;
mod supervised;
mod verify;

use clap::Parser;

use gnc_ctl::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Each command pins the CPU environment of its job's reproducibility level once it has
    // read the spec, before any tensor exists (gnc_worker::pin).
    gnc_ctl::init_logging();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Analyze(args) => analyze::run(args),
        Command::Doctor(args) => doctor::run(args),
        _ => Err(anyhow::anyhow!(
            "gnc-run only computes (`run`, `verify`, `analyze`, `doctor`); use gncctl for the \
             other commands"
        )),
    };
    gnc_ctl::finish(result)
}
