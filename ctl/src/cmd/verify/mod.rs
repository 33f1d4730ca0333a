//! `gncctl verify RUN_DIR [--iterations N]`: re-runs a recorded job from its `spec.json` in a
//! temporary directory and checks that it reproduces the record bit for bit: every iteration
//! record (loss, grad_norm, noise_norm, lr, epoch), and the params SHA-256 against
//! `result.json` (whole run) or the checkpoint manifest at iteration N (when kept).

mod compare;
mod recorded;
mod rerun;

use std::path::PathBuf;

use anyhow::Context;
use gnc_proto::{Devices, IterRecord, MetricRecord};

use crate::exit::Negative;
use crate::run_dir::read_metrics;

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
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let recorded = recorded::read(&args.run_dir)?;
    let recorded_iters = recorded.result.iterations;
    let n = args.iterations.unwrap_or(recorded_iters);
    anyhow::ensure!(n >= 1, "--iterations must be at least 1");
    anyhow::ensure!(
        n <= recorded_iters,
        "the recorded run has {recorded_iters} iterations, fewer than the {n} asked for"
    );
    // Stop early unless the re-run goes exactly as far as a complete record.
    let stop = (n < recorded.result.total_iterations).then_some(n);
    let devices = args.devices.or(recorded.spec.devices()?);
    let scratch = tempfile::Builder::new()
        .prefix("gncctl-verify-")
        .tempdir()
        .context("cannot create a temporary directory for the re-run")?;
    eprintln!(
        "re-running {} ({} of {} iterations{}) in {}",
        recorded.spec.name,
        n,
        recorded.result.total_iterations,
        devices.map_or(String::new(), |d| format!(", on {d}")),
        scratch.path().display()
    );
    let summary = rerun::rerun(&recorded.spec, scratch.path(), stop, devices)
        .with_context(|| format!("the re-run of {} failed", args.run_dir.display()))?;
    let rerun_iters: Vec<IterRecord> = read_metrics(scratch.path())?
        .into_iter()
        .filter_map(|r| match r {
            MetricRecord::Iter(r) => Some(r),
            _ => None,
        })
        .collect();
    if let Some(difference) = compare::first_difference(&recorded.iters, &rerun_iters, n) {
        return Err(Negative(format!("not reproduced: {difference}")).into());
    }
    // The params hash after n iterations: in result.json when the record ends there, else in
    // the checkpoint manifest of iteration n if the run kept it.
    let (expected, source) = if n == recorded_iters {
        (
            Some(recorded.result.params_sha256.clone()),
            "result.json".to_string(),
        )
    } else {
        (
            recorded.checkpoint_hash(n)?,
            format!("the checkpoint manifest of iteration {n}"),
        )
    };
    match expected {
        Some(hash) if hash != summary.params_sha256 => Err(Negative(format!(
            "not reproduced: the params sha256 after iteration {n} differs: recorded {hash} \
             ({source}), re-run {}",
            summary.params_sha256
        ))
        .into()),
        Some(_) => {
            println!(
                "reproduced: {n} iterations bit for bit; params sha256 {} matches {source}",
                summary.params_sha256
            );
            Ok(())
        }
        None => {
            println!(
                "reproduced: {n} iterations bit for bit; params sha256 {} (no checkpoint of \
                 iteration {n} recorded to compare it with)",
                summary.params_sha256
            );
            Ok(())
        }
    }
}
