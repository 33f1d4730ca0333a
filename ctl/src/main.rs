//! gncctl: the gnc control CLI. `main` only parses arguments and maps errors to exit codes;
//! each subcommand lives in its own file.
#![forbid(unsafe_code)]

mod run;
mod supervised;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "gncctl",
    version,
    about = "Bit-reproducible large-batch training with gradient noise convolution"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a job on this machine, without a daemon.
    Run(run::RunArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Before any thread or tensor exists: the determinism contract's CPU environment.
    if let Err(e) = gnc_worker::pin::pin_process_environment() {
        eprintln!("error: {e}");
        return std::process::ExitCode::from(2);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
