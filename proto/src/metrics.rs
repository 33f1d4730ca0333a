//! Records written to a job's `metrics.jsonl`, one JSON object per line, tagged by `kind`.

use serde::{Deserialize, Serialize};

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricRecord {
    Iter(IterRecord),
    Eval(EvalRecord),
    /// The `[diagnostics]` measurements at the start of an iteration.
    Diagnostics(Box<DiagnosticsRecord>),
    Final(FinalRecord),
}

/// Written after every iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterRecord {
    /// Iteration index, from 0.
    pub iter: u64,
    /// Fractional epoch at the start of the iteration.
    #[serde(deserialize_with = "nan_from_null")]
    pub epoch: f64,
    /// Mean training loss over the M small batches (at each worker's perturbed weights).
    #[serde(deserialize_with = "nan_from_null")]
    pub loss: f64,
    /// η_t used by the update.
    #[serde(deserialize_with = "nan_from_null")]
    pub lr: f64,
    /// ‖g~_t‖, the norm of the reduced gradient.
    #[serde(deserialize_with = "nan_from_null")]
    pub grad_norm: f64,
    /// Root mean square over logical workers of ‖g_i - g~‖: the gradient noise of Eq. 4 that
    /// GNC injects at the next iteration.
    #[serde(deserialize_with = "nan_from_null")]
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
    #[serde(default, deserialize_with = "nan_from_null")]
    pub seconds: f64,
}

/// Written at each evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Iterations completed.
    pub iter: u64,
    #[serde(deserialize_with = "nan_from_null")]
    pub epoch: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub train_loss: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub train_accuracy: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub test_loss: f64,
    #[serde(deserialize_with = "nan_from_null")]
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

/// The papers' measurements at the start of iteration `iter` (before its update), on copies
/// of the state (`[diagnostics]`; GNC §3 and §A.6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagnosticsRecord {
    pub iter: u64,
    pub epoch: f64,
    /// η_t of the iteration.
    pub lr: f64,
    /// ‖g~‖, the method's large-batch gradient at x_t (for GNC the smoothed gradient of Eq. 3,
    /// each worker at its perturbed weights): the iteration record's `grad_norm`, bit for bit.
    pub grad_norm: f64,
    /// Examples of the full gradient (the first N of the training set, no augmentation,
    /// BatchNorm with the running statistics).
    pub examples: usize,
    /// The loss over those examples at x_t, and the norm of its gradient (the full gradient,
    /// computed without any noise).
    pub full_loss: f64,
    pub full_grad_norm: f64,
    /// Full-gradient predictiveness (GNC Fig. 3b–c): cos(∇L(x_t), g~).
    pub predictiveness: f64,
    pub smoothness: Smoothness,
    /// κ of the workers' noise per layer, GNC's and RNC's (Fig. 4a); while GNC injects noise
    /// from saved per-worker gradients (absent at its first iteration and for other methods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anisotropy: Option<NoiseAnisotropy>,
    /// The losses of the M perturbed models x_i (Fig. 4b–c); while the method perturbs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perturbed: Option<PerturbedLosses>,
    /// Wall time of the measurements.
    pub seconds: f64,
}

/// Santurkar et al.'s indicators along the gradient (GNC Fig. 5, §A.6): the method's loss and
/// gradient g~ (the same batches and noise rules as the iteration) at x_s = x_t - s g~ for
/// `steps.len()` lengths s evenly spaced in [η/2, 2η].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Smoothness {
    /// The step lengths s.
    pub steps: Vec<f64>,
    /// The loss at each x_s.
    pub losses: Vec<f64>,
    /// ‖g~(x_s) - g~(x_t)‖ at each x_s.
    pub gradient_changes: Vec<f64>,
    /// Loss stability (Fig. 5a): max - min of the losses.
    pub loss_range: f64,
    /// Gradient predictiveness (Fig. 5b): the smallest and largest gradient change.
    pub gradient_change_range: [f64; 2],
    /// β-smoothness (Fig. 5c): max over s of ‖g~(x_t) - g~(x_s)‖ / ‖x_t - x_s‖.
    pub beta: f64,
}

/// One point of the loss on the line between two end points (Keskar et al. 2017, Fig. 3):
/// α = 0 is the analysed run's end point, α = 1 the other run's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinePoint {
    pub alpha: f64,
    /// JSON has no NaN: serde_json writes a NaN loss as null, read back as NaN.
    #[serde(deserialize_with = "nan_from_null")]
    pub loss: f64,
}

/// The `line` of `analysis.json`, written by `gncctl analyze RUN --towards OTHER` and drawn by
/// `gncctl plot --metric analysis-line`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisLine {
    pub towards: std::path::PathBuf,
    /// The other run's checkpoint: iterations completed.
    pub towards_iteration: u64,
    pub points: Vec<LinePoint>,
}

/// JSON has no infinities or NaN, so serde_json writes a non-finite float as `null` (the
/// records of a run that diverged hold some): they read back as NaN, not finite whichever it
/// was, so that such a record can still be read, plotted and verified.
fn nan_from_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// κ per layer for GNC's noise and for the noise RNC would draw at the same iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseAnisotropy {
    pub workers: usize,
    pub gnc: Vec<LayerAnisotropy>,
    pub rnc: Vec<LayerAnisotropy>,
}

/// One layer's noise spectrum (GNC §3.2): κ = λ_max / λ_min* of (1/M) ΩΩᵀ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerAnisotropy {
    pub layer: String,
    pub kappa: f64,
    pub lambda_max: f64,
    pub lambda_min_star: f64,
    /// Eigenvalues above the rank tolerance × λ_max: the directions the noise spans.
    pub rank: usize,
    /// The eigenvalues at the 10th, 50th and 90th percentiles (nearest rank, ascending, among
    /// the nonzero ones).
    pub percentiles: [f64; 3],
}

/// The losses of the M models x_i = x - α η ‖x^(p)‖ ω_i^(p) (GNC Fig. 4b–c): with GNC's noise
/// (while GNC injects it) and with RNC's at the same α and rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerturbedLosses {
    pub alpha: f64,
    pub lr: f64,
    /// The loss of x itself over the same examples.
    pub unperturbed: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gnc: Option<LossSpread>,
    pub rnc: LossSpread,
}

/// Losses of the M perturbed models, and how widely they vary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossSpread {
    pub losses: Vec<f64>,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    /// The size of each worker's perturbation: the mean over filters p (a dim-0 slice of a
    /// weight of two or more dimensions, else the whole tensor, as the noise rules scale them)
    /// of ‖x_i^(p) − x^(p)‖ / ‖x^(p)‖. RNC's is α η by construction; GNC's is α η ‖ω_i^(p)‖,
    /// so comparing the two at one α compares noises of different sizes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relative_norms: Vec<f64>,
    /// ‖x_i − x‖² of each worker's perturbation over all parameters, for the curvature along
    /// the noise: (mean of `losses` − the unperturbed loss) / mean of these (GNC §3.2; GNC's
    /// first-order terms cancel, as its ω_i sum to zero).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub squared_norms: Vec<f64>,
}

impl LossSpread {
    /// The spread of `losses`, with the perturbations' sizes ([`LossSpread::relative_norms`],
    /// [`LossSpread::squared_norms`]).
    pub fn with_sizes(
        losses: Vec<f64>,
        relative_norms: Vec<f64>,
        squared_norms: Vec<f64>,
    ) -> LossSpread {
        LossSpread {
            relative_norms,
            squared_norms,
            ..LossSpread::of(losses)
        }
    }

    pub fn of(losses: Vec<f64>) -> LossSpread {
        let n = losses.len() as f64;
        let mean = losses.iter().sum::<f64>() / n;
        let std = (losses.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n).sqrt();
        LossSpread {
            mean,
            std,
            min: losses.iter().copied().fold(f64::INFINITY, f64::min),
            max: losses.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            losses,
            relative_norms: Vec::new(),
            squared_norms: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_record_of_a_diverged_run_reads_back() {
        // As gnc-run wrote it at iteration 67 of a run whose noise norm overflowed.
        let line = r#"{"kind":"iter","iter":67,"epoch":9.5,"loss":2.5e30,"lr":6.4,"grad_norm":4e18,"noise_norm":null,"grad_sq_estimate":null,"trace_estimate":null,"seconds":2.1}"#;
        let MetricRecord::Iter(r) = serde_json::from_str(line).unwrap() else {
            panic!("an iteration record")
        };
        assert!(r.noise_norm.is_nan() && r.loss > 1e30 && r.grad_sq_estimate.is_none());
        let eval = r#"{"kind":"eval","iter":8,"epoch":1.0,"train_loss":null,"train_accuracy":0.1,"test_loss":null,"test_accuracy":0.1}"#;
        let MetricRecord::Eval(e) = serde_json::from_str(eval).unwrap() else {
            panic!("an evaluation record")
        };
        assert!(e.test_loss.is_nan() && e.train_loss.is_nan());
    }

    #[test]
    fn a_line_point_with_a_nan_loss_reads_back_as_nan() {
        let point = LinePoint {
            alpha: 2.0,
            loss: f64::NAN,
        };
        let text = serde_json::to_string(&point).unwrap();
        assert_eq!(text, r#"{"alpha":2.0,"loss":null}"#);
        let back: LinePoint = serde_json::from_str(&text).unwrap();
        assert!(back.loss.is_nan() && back.alpha == 2.0);
    }
}
