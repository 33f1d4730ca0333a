//! The arguments of `gncctl run` (carried out by `gnc-run`, which links libtorch).

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct RunArgs {
    /// The job spec (TOML).
    pub spec: PathBuf,
    /// Continue from the newest checkpoint in the output directory.
    #[arg(long)]
    pub resume: bool,
    /// Write outputs here instead of the spec's output_dir.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Stop, with a checkpoint, after this many iterations (resume later with --resume).
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Compute threads (changes speed, never results).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the summary as JSON on stdout, and no progress bar.
    #[arg(long)]
    pub json: bool,
    /// Train in worker processes over shared memory, e.g. `cpu:4` (same bits as in-process);
    /// overrides the spec's `parallel.devices`.
    #[arg(long)]
    pub devices: Option<gnc_proto::Devices>,
    /// Train across the hosts of this Open MPI hostfile (`NAME [slots=N]` per line), started
    /// with `mpirun`: `--devices cpu:N` processes on each host (else one per slot), each an
    /// aligned block of logical workers; a host's processes reduce over shared memory, the
    /// hosts over MPI; the same bits as on one host. A dead rank or host restarts the whole
    /// job from its checkpoint. Overrides the spec's `parallel.hosts`.
    #[arg(long, value_name = "HOSTFILE", conflicts_with = "threads")]
    pub hosts: Option<PathBuf>,
    /// With worker processes: restart the group when it makes no progress for this many
    /// seconds (start-up, evaluation and checkpoints included).
    #[arg(long, default_value_t = 300.0)]
    pub hang_timeout: f64,
    /// Across hosts: stop the job, naming the ranks that never arrived, unless every rank has
    /// joined within this many seconds of mpirun's start.
    #[arg(long, default_value_t = 120.0)]
    pub join_timeout: f64,
    /// Across hosts, elastic: when hosts cannot be reached (at a start, or after a failure),
    /// go on from the last checkpoint on the hosts that can, as long as there are at least
    /// this many, in the largest valid layout of the job's logical workers over them; a host
    /// that comes back is used again at the next restart. Same bits for every layout.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub min_hosts: Option<u64>,
    /// With worker processes or hosts: how many restarts to allow before giving up.
    #[arg(long, default_value_t = 3)]
    pub max_restarts: u32,
}
