//! Records written to a job's `metrics.jsonl`, one JSON object per line, tagged by `kind`.

use serde::{Deserialize, Serialize};

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricRecord {
    Iter(IterRecord),
    Eval(EvalRecord),
    Final(FinalRecord),
}

/// Written after every iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterRecord {
    /// Iteration index, from 0.
    pub iter: u64,
    /// Fractional epoch at the start of the iteration.
    pub epoch: f64,
    /// Mean training loss over the M small batches (at each worker's perturbed weights).
    pub loss: f64,
    /// η_t used by the update.
    pub lr: f64,
    /// ‖g~_t‖, the norm of the reduced gradient.
    pub grad_norm: f64,
    /// Root mean square over logical workers of ‖g_i - g~‖: the gradient noise of Eq. 4 that
    /// GNC injects at the next iteration.
    pub noise_norm: f64,
    /// Unbiased estimates of |G|² (the true gradient's squared norm) and tr(Σ) (the trace of
    /// the per-example gradient covariance) from the M workers' gradients: over a window of
    /// iterations, Σ trace / Σ grad_sq is the gradient noise scale B_simple (McCandlish et
    /// al. 2018). Absent for M = 1 and in records of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_sq_estimate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_estimate: Option<f64>,
    /// Wall time of the iteration in this process, from its start to the update: every
    /// worker's gradient, the reduction and the optimiser step; not evaluations or
    /// checkpoints. The only field that differs between two runs of a job; absent (0) in
    /// records of earlier versions.
    #[serde(default)]
    pub seconds: f64,
}

/// Written at each evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Iterations completed.
    pub iter: u64,
    pub epoch: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_loss: f64,
    pub test_accuracy: f64,
}

/// Written once, when training finishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalRecord {
    pub iterations: u64,
    pub params_sha256: String,
    pub test_accuracy: f64,
    /// Wall time of the training loop, evaluation included.
    pub train_seconds: f64,
}
