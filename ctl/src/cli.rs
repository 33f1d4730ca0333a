//! The command line: every subcommand and the global flags (also the source of the shell
//! completions and the man page).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::cmd;

#[derive(Parser)]
#[command(
    name = "gncctl",
    version,
    about = "Bit-reproducible large-batch training with gradient noise convolution",
    after_help = "Exit status: 0 success; 1 failure; 2 bad arguments; 3 a negative answer \
                  (a run did not reproduce, a watched job failed or was cancelled); \
                  69 gncd is not reachable."
)]
pub struct Cli {
    /// gncd's socket (else $GNC_SOCKET, else /run/gnc/gncd.sock).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Train a job on this machine, without a daemon.
    Run(crate::run_args::RunArgs),
    /// Queue a job on gncd.
    Submit(cmd::submit::Args),
    /// Every job gncd knows, oldest first.
    List(cmd::list::Args),
    /// One job, or without a job gncd itself.
    Status(cmd::status::Args),
    /// Follow a job's progress until it stops (non-zero exit if it fails or is cancelled).
    Watch(cmd::watch::Args),
    /// A job's log: worker output and supervisor notices.
    Logs(cmd::logs::Args),
    /// A job's metric records, as JSON lines.
    Metrics(cmd::metrics::Args),
    /// Checkpoint a job at the next iteration boundary and stop it; it keeps its place.
    Pause(cmd::pause::Args),
    /// Queue a paused job again; it continues from its checkpoint.
    Resume(cmd::resume::Args),
    /// Stop a job for good.
    Cancel(cmd::cancel::Args),
    /// Write a checkpoint of a job at the next iteration boundary and go on training.
    CheckpointNow(cmd::checkpoint_now::Args),
    /// Ask gncd to checkpoint its running job and exit.
    Shutdown(cmd::shutdown::Args),
    /// Compare runs in a chart (PNG or SVG): by default test accuracy, training loss and
    /// learning rate against the epoch.
    Plot(cmd::plot::Args),
    /// Re-run a recorded run and check that it reproduces bit for bit (non-zero exit if not).
    Verify(cmd::verify::Args),
    /// Analyse a run's end point as the papers do: the top Hessian eigenvalue, Keskar's
    /// ε-sharpness, the loss on the line towards another run's end point.
    Analyze(cmd::analyze::Args),
    /// This machine's reproducibility key and kernel fingerprint: which runs it reproduces.
    Doctor(cmd::doctor::Args),
    /// Print a shell completion script on stdout.
    Completions(cmd::completions::Args),
    /// Print the man page (roff) on stdout.
    Man,
}
