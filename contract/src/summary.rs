//! The result of a run, as `result.json` holds it: written by whoever trained (the in-process
//! run, or worker process 0), read by the supervisor, the daemon and `gncctl`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What a finished (or deliberately stopped) run reports; also written to `result.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub job: String,
    pub method: String,
    /// Iterations completed.
    pub iterations: u64,
    pub total_iterations: u64,
    /// False when the run stopped at `stop_after` before the end.
    pub complete: bool,
    pub params_sha256: String,
    pub spec_hash: String,
    pub test_accuracy: Option<f64>,
    pub test_loss: Option<f64>,
    /// Seconds spent in this process's training loop (evaluation included).
    pub train_seconds: f64,
    pub threads: usize,
    pub output_dir: PathBuf,
    /// The pinned CPU environment the run computed under.
    pub environment: Vec<(String, String)>,
    /// What the bits depend on besides the spec (`gnc_proto::repro::Key`); absent in results
    /// of earlier versions.
    #[serde(default)]
    pub reproducibility: Option<gnc_proto::repro::Key>,
    /// With a loss trigger (`schedule.loss_trigger`): the iterations it took the training
    /// loss to fall below `stop_below`, where the run ended — the noise-enhancement paper's
    /// "convergence time". Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converged_at: Option<u64>,
}
