//! gncctl's command line and its commands that need no libtorch. Two binaries share it:
//! - `gncctl` (this package): the everyday CLI. It does not link libtorch, so the client
//!   commands (status, watch, …) start in milliseconds and hundreds of them at once cost the
//!   daemon's machine little; `run` and `verify` are handed to `gnc-run` by exec
//!   ([`trainer`]).
//! - `gnc-run` (`ctl/train/`): the same command line, carrying out the commands that train
//!   (`run`, `verify`) with the engine and the embedded supervisor.

pub mod cli;
pub mod cmd;
pub mod daemon;
pub mod exit;
pub mod progress;
pub mod run_args;
pub mod run_dir;
pub mod trainer;

/// Logs through `tracing` to stderr (RUST_LOG, default warnings).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
}

/// The process's exit status for a command's result (errors on stderr).
pub fn finish(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(exit::code(&e))
        }
    }
}
