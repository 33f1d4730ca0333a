//! gnc-worker: one worker process of a multi-process run, started by the supervisor
//! (`gncctl run --devices cpu:N`, `gncd`). `main` parses arguments, pins the CPU environment
//! and maps errors to exit codes; the work is in `gnc_worker::distributed`.
#![forbid(unsafe_code)]

use clap::Parser;
use gnc_worker::distributed::{self, protocol, WorkerArgs};

fn main() -> std::process::ExitCode {
    // Before any thread or tensor exists: the determinism contract's CPU environment.
    if let Err(e) = gnc_worker::pin::pin_process_environment() {
        eprintln!("gnc-worker: error: {e}");
        return protocol::EXIT_USAGE.into();
    }
    let args = WorkerArgs::parse();
    match distributed::run(&args) {
        Ok(()) => protocol::EXIT_OK.into(),
        Err(e) => {
            eprintln!(
                "gnc-worker {} (generation {}): error: {e}",
                args.process, args.generation
            );
            e.exit_code().into()
        }
    }
}
