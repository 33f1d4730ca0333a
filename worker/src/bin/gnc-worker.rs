//! gnc-worker: one worker process of a multi-process run, started by the supervisor
//! (`gncctl run --devices cpu:N`, `gncd`). `main` parses arguments and maps errors to exit codes; the work is in `gnc_worker::distributed`.

use clap::Parser;
use gnc_contract::args::WorkerArgs;
use gnc_contract::protocol;
use gnc_worker::distributed;

fn main() -> std::process::ExitCode {
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
