//! What a run directory recorded: the spec it ran (`spec.json`), its summary (`result.json`,
//! absent where the run never finished: it diverged, or was killed), its per-iteration records
//! (`metrics.jsonl`) and its checkpoint manifests.

use std::path::{Path, PathBuf};

use anyhow::Context;
use gnc_contract::manifest::{Manifest, manifest_file};
use gnc_proto::{IterRecord, JobSpec, MetricRecord, ValidSpec};
use gnc_worker::RunSummary;

use gnc_ctl::run_dir::read_metrics;

pub struct Recorded {
    pub dir: PathBuf,
    pub spec: ValidSpec,
    /// `None` for a run that never finished; its iteration records are all there is.
    pub result: Option<RunSummary>,
    pub iters: Vec<IterRecord>,
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} ({what})", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid {what}", path.display()))
}

/// The spec a run directory recorded, validated.
pub fn spec(dir: &Path) -> anyhow::Result<ValidSpec> {
    let spec: JobSpec = read_json(&dir.join("spec.json"), "the run's job spec")?;
    spec.validated()
        .with_context(|| format!("{} holds an invalid spec", dir.join("spec.json").display()))
}

/// Reads the records `verify` compares against.
pub fn read(dir: &Path) -> anyhow::Result<Recorded> {
    let spec = spec(dir)?;
    let summary = dir.join("result.json");
    let result: Option<RunSummary> = if summary.exists() {
        Some(read_json(&summary, "the run's summary")?)
    } else {
        None
    };
    let iters = read_metrics(dir)?
        .into_iter()
        .filter_map(|r| match r {
            MetricRecord::Iter(r) => Some(r),
            _ => None,
        })
        .collect();
    Ok(Recorded {
        dir: dir.to_path_buf(),
        spec,
        result,
        iters,
    })
}

impl Recorded {
    /// Iterations the record holds: the summary's, else the iteration records'.
    pub fn iterations(&self) -> u64 {
        self.result
            .as_ref()
            .map_or(self.iters.len() as u64, |r| r.iterations)
    }

    /// The params SHA-256 of the recorded checkpoint after `iteration` iterations, if the
    /// run still keeps that checkpoint.
    pub fn checkpoint_hash(&self, iteration: u64) -> anyhow::Result<Option<String>> {
        let path = manifest_file(&self.dir.join("checkpoints"), iteration);
        if !path.exists() {
            return Ok(None);
        }
        let manifest: Manifest = read_json(&path, "a checkpoint manifest")?;
        Ok(Some(manifest.params_sha256))
    }
}
