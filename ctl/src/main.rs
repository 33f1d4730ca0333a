//! gncctl: the gnc control CLI. `main` only parses arguments and maps errors to exit codes;
//! each subcommand lives in its own file.
#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod daemon;
mod exit;
mod run;
mod run_dir;
mod supervised;

use clap::Parser;

use cli::{Cli, Command};

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
    let socket = daemon::socket_path(cli.socket);
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Submit(args) => cmd::submit::run(args, &socket),
        Command::List(args) => cmd::list::run(args, &socket),
        Command::Status(args) => cmd::status::run(args, &socket),
        Command::Watch(args) => cmd::watch::run(args, &socket),
        Command::Logs(args) => cmd::logs::run(args, &socket),
        Command::Metrics(args) => cmd::metrics::run(args, &socket),
        Command::Pause(args) => cmd::pause::run(args, &socket),
        Command::Resume(args) => cmd::resume::run(args, &socket),
        Command::Cancel(args) => cmd::cancel::run(args, &socket),
        Command::CheckpointNow(args) => cmd::checkpoint_now::run(args, &socket),
        Command::Shutdown(args) => cmd::shutdown::run(args, &socket),
        Command::Plot(args) => cmd::plot::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Completions(args) => cmd::completions::run(args),
        Command::Man => cmd::man::run(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(exit::code(&e))
        }
    }
}
