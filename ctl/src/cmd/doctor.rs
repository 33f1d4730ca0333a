//! The arguments of `gncctl doctor` (carried out by `gnc-run`, which links libtorch: it
//! computes this machine's kernel fingerprint).

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A recorded run's output directory: say whether this machine can reproduce it.
    pub run_dir: Option<PathBuf>,
    /// The reproducibility level to examine (default: the run's, else portable).
    #[arg(long)]
    pub level: Option<gnc_proto::repro::Level>,
    /// Print the key, the fingerprint and the verdicts as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}
