//! The arguments of `gncctl verify` (carried out by `gnc-run`, which links libtorch: it
//! re-runs the recorded job and compares it with the record bit for bit).

use std::path::PathBuf;

use gnc_proto::Devices;

#[derive(clap::Args)]
pub struct Args {
    /// The recorded run's output directory (with spec.json, result.json and metrics.jsonl).
    /// A relative `data.root` in its spec is taken relative to the working directory.
    pub run_dir: PathBuf,
    /// Re-run only the first N iterations (default: as many as the record has).
    #[arg(long, value_name = "N")]
    pub iterations: Option<u64>,
    /// Re-run in worker processes, e.g. `cpu:2` (the bits must not change); default: the
    /// recorded spec's `parallel.devices`, else in this process.
    #[arg(long)]
    pub devices: Option<Devices>,
    /// Re-run at this reproducibility level instead of the recorded one (`portable` or
    /// `native`); the verdict then says that the levels differ.
    #[arg(long)]
    pub level: Option<gnc_proto::repro::Level>,
    /// Print the verdict as JSON on stdout: reproduced, iterations, params_sha256, message.
    #[arg(long)]
    pub json: bool,
}
