//! `gncctl verify RUN_DIR [--iterations N]`: re-runs a recorded job from its `spec.json` in a
//! temporary directory and checks that it reproduces the record bit for bit: every iteration
//! record (loss, grad_norm, noise_norm, lr, epoch), and the params SHA-256 against
//! `result.json` (whole run) or the checkpoint manifest at iteration N (when kept). A run that
//! never finished (it diverged, or was killed: no `result.json`) is checked on the iterations it
//! recorded; the re-run's own divergence after them is not an error.

mod compare;
pub(crate) mod recorded;
mod rerun;

use anyhow::Context;
use gnc_proto::{IterRecord, MetricRecord};

use gnc_ctl::cmd::verify::Args as VerifyArgs;
use gnc_ctl::exit::Negative;
use gnc_ctl::run_dir::read_metrics;

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let recorded = recorded::read(&args.run_dir)?;
    // The keys first: what differs between the record and this re-run that changes bits.
    let level = args.level.unwrap_or(recorded.spec.reproducibility);
    gnc_worker::pin::pin_process_environment(level).map_err(anyhow::Error::msg)?;
    let key_differences = key_differences(&recorded, &gnc_worker::pin::key());
    for d in &key_differences {
        eprintln!("note: {d}");
    }
    // Re-run at the level asked for (the spec hash ignores the default level).
    let spec = recorded.spec.clone().edit(|s| s.reproducibility = level)?;
    let recorded_iters = recorded.iterations();
    let n = args.iterations.unwrap_or(recorded_iters);
    anyhow::ensure!(n >= 1, "--iterations must be at least 1");
    anyhow::ensure!(
        n <= recorded_iters,
        "the recorded run has {recorded_iters} iterations, fewer than the {n} asked for"
    );
    // Stop early unless the re-run goes exactly as far as a complete record.
    let total = recorded.result.as_ref().map(|r| r.total_iterations);
    let stop = total.is_none_or(|total| n < total).then_some(n);
    if recorded.result.is_none() {
        eprintln!(
            "note: {} has no result.json (the run did not finish: it diverged, or was stopped \
             from outside); checking the {recorded_iters} iterations it recorded",
            recorded.dir.display()
        );
    }
    let devices = args.devices.or(spec.devices()?);
    let scratch = tempfile::Builder::new()
        .prefix("gncctl-verify-")
        .tempdir()
        .context("cannot create a temporary directory for the re-run")?;
    eprintln!(
        "re-running {} ({} of {} iterations{}) in {}",
        spec.name,
        n,
        total.map_or("the recorded".into(), |t| t.to_string()),
        devices
            .as_ref()
            .map_or(String::new(), |d| format!(", on {d}")),
        scratch.path().display()
    );
    let summary = rerun::rerun(&spec, scratch.path(), stop, devices)
        .with_context(|| format!("the re-run of {} failed", args.run_dir.display()))?;
    // A re-run that ends early (it diverged before n) shows in its records, compared below.
    let rerun_hash = summary.params_sha256;
    let rerun_iters: Vec<IterRecord> = read_metrics(scratch.path())?
        .into_iter()
        .filter_map(|r| match r {
            MetricRecord::Iter(r) => Some(r),
            _ => None,
        })
        .collect();
    let verdict =
        judge(&recorded, &rerun_iters, n, &rerun_hash)?.map_err(|m| explain(m, &key_differences));
    if args.json {
        let (reproduced, message) = match &verdict {
            Ok(m) => (true, m),
            Err(m) => (false, m),
        };
        let report = serde_json::json!({
            "reproduced": reproduced,
            "iterations": n,
            "params_sha256": rerun_hash,
            "message": message,
            "key_differences": key_differences,
        });
        println!("{report}");
    }
    match verdict {
        Ok(message) => {
            if !args.json {
                println!("{message}");
            }
            Ok(())
        }
        Err(message) => Err(Negative(message).into()),
    }
}

/// `Ok` with the report of a reproduced run, `Err` naming the first difference.
fn judge(
    recorded: &recorded::Recorded,
    rerun_iters: &[IterRecord],
    n: u64,
    rerun_hash: &str,
) -> anyhow::Result<Result<String, String>> {
    if let Some(difference) = compare::first_difference(&recorded.iters, rerun_iters, n) {
        return Ok(Err(format!("not reproduced: {difference}")));
    }
    // The params hash after n iterations: in result.json when the record ends there, else in
    // the checkpoint manifest of iteration n if the run kept it.
    let finished = recorded.result.as_ref().filter(|r| r.iterations == n);
    let (expected, source) = if let Some(result) = finished {
        (
            Some(result.params_sha256.clone()),
            "result.json".to_string(),
        )
    } else {
        (
            recorded.checkpoint_hash(n)?,
            format!("the checkpoint manifest of iteration {n}"),
        )
    };
    Ok(match expected {
        Some(hash) if hash != rerun_hash => Err(format!(
            "not reproduced: the params sha256 after iteration {n} differs: recorded {hash} \
             ({source}), re-run {rerun_hash}"
        )),
        Some(_) => Ok(format!(
            "reproduced: {n} iterations bit for bit; params sha256 {rerun_hash} matches {source}"
        )),
        None => Ok(format!(
            "reproduced: {n} iterations bit for bit; params sha256 {rerun_hash} (no checkpoint \
             of iteration {n} recorded to compare it with)"
        )),
    })
}

/// Why the record's bits may not be this re-run's, in words (none when nothing that changes
/// bits differs). A record without a key predates keys: nothing can be said.
fn key_differences(recorded: &recorded::Recorded, here: &gnc_proto::repro::Key) -> Vec<String> {
    let Some(result) = &recorded.result else {
        // A run that never finished wrote no key; its spec's level is the one re-run.
        return Vec::new();
    };
    match &result.reproducibility {
        Some(key) => key.differences(here),
        None => vec![format!(
            "{} records no reproducibility key (written by an earlier gnc)",
            recorded.dir.join("result.json").display()
        )],
    }
}

/// A negative verdict, with the key differences that explain it put first.
fn explain(message: String, differences: &[String]) -> String {
    if differences.is_empty() {
        return message;
    }
    format!(
        "{}; bits are expected to differ. {message}",
        differences.join("; ")
    )
}
