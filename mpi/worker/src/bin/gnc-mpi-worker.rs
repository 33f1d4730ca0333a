//! gnc-mpi-worker: one rank of a job across hosts, started by `mpirun`, one per process:
//! `mpirun -np H·N --map-by ppr:N:node gnc-mpi-worker SPEC --out DIR --processes-per-host N`
//! (H hosts of N processes). Rank 0 writes the metrics and `result.json`; the final hash
//! equals the one-host run's for every H and N that give subtrees.

use clap::Parser;
use gnc_mpi_worker::RunRequest;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "gnc-mpi-worker")]
struct Args {
    /// The job spec: TOML, or JSON (`spec.json`, as the launcher records it).
    spec: PathBuf,
    /// Which start of the job this is (the launcher counts restarts).
    #[arg(long, default_value_t = 0)]
    generation: u64,
    /// Output directory (metrics, checkpoints, result.json), shared by every rank.
    #[arg(long)]
    out: PathBuf,
    /// Resume from the checkpoint after this many iterations.
    #[arg(long)]
    resume_from: Option<u64>,
    /// Stop (with a checkpoint) once this many iterations are complete.
    #[arg(long)]
    stop_after: Option<u64>,
    /// Processes on each host: ranks h·N .. (h+1)·N are host h's, reducing over shared
    /// memory (mpirun --map-by ppr:N:node places them so).
    #[arg(long, default_value_t = 1)]
    processes_per_host: usize,
    /// The launch that started this rank: the rank exits once the launcher's beat in the
    /// output directory says that launch is over.
    #[arg(long)]
    launch: Option<String>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let request = RunRequest {
        spec: args.spec,
        generation: args.generation,
        out: args.out,
        resume_from: args.resume_from,
        stop_after: args.stop_after,
        processes_per_host: args.processes_per_host,
        launch: args.launch,
    };
    match gnc_mpi_worker::run(&request) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gnc-mpi-worker: error: {e}");
            e.exit_code().into()
        }
    }
}
