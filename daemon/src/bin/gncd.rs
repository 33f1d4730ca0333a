//! `gncd`: the gnc daemon. `gncd [--config PATH]` serves until SIGTERM; `gncd validate
//! [--config PATH]` checks the config (systemd's ExecStartPre). Exit status: 0 done, 1 error
//! (the message on stderr), 2 bad usage.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gnc_daemon::gncd::{self, config::DEFAULT_CONFIG};

#[derive(Parser)]
#[command(name = "gncd", version, about = "gnc training daemon")]
struct Args {
    /// The daemon's config file.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Subcommand)]
enum Sub {
    /// Check the config file and exit (0: valid, 1: not).
    Validate,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // journald and log files want plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let result: anyhow::Result<()> = match args.command {
        Some(Sub::Validate) => gncd::validate(&args.config)
            .map(|_| println!("{}: valid", args.config.display()))
            .map_err(Into::into),
        None => gncd::run(&args.config).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gncd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
