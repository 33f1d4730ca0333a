//! What can be plotted: the metrics (y) and the x axis, and each run's points for them.

use gnc_proto::{DiagnosticsRecord, LayerAnisotropy};

use super::runs::Run;

/// A quantity recorded in metrics.jsonl.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Metric {
    /// Test accuracy at each evaluation.
    TestAccuracy,
    /// Training-set accuracy at each evaluation.
    TrainAccuracy,
    /// Test loss at each evaluation.
    TestLoss,
    /// Training loss of every iteration.
    Loss,
    /// Learning rate of every iteration.
    Lr,
    /// Norm of the reduced gradient, every iteration.
    GradNorm,
    /// Gradient noise norm, every iteration.
    NoiseNorm,
    /// The gradient noise scale B_simple (McCandlish et al. 2018): Σ tr(Σ) / Σ |G|² of the
    /// iteration records' estimates over the last [`NOISE_SCALE_WINDOW`] iterations.
    NoiseScale,
    /// `[diagnostics]`: cos(full gradient, large-batch gradient) (GNC Fig. 3b–c).
    Predictiveness,
    /// `[diagnostics]`: the range of the losses along the gradient (GNC Fig. 5a).
    LossStability,
    /// `[diagnostics]`: the largest gradient change along the gradient (GNC Fig. 5b).
    GradientChange,
    /// `[diagnostics]`: β-smoothness along the gradient (GNC Fig. 5c).
    BetaSmoothness,
    /// `[diagnostics]`: the median over layers of κ of GNC's noise (GNC Fig. 4a).
    KappaGnc,
    /// `[diagnostics]`: the median over layers of κ of RNC's noise at the same iteration.
    KappaRnc,
    /// `[diagnostics]`: the standard deviation of the M perturbed models' losses with GNC's
    /// noise (GNC Fig. 4b–c).
    PerturbedSpreadGnc,
    /// `[diagnostics]`: the same with RNC's noise.
    PerturbedSpreadRnc,
    /// The loss on the line from the run's end point (α = 0) to another run's (α = 1), from
    /// `gncctl analyze RUN --towards OTHER` (Keskar et al. 2017, Fig. 3); x is α.
    AnalysisLine,
}

/// Iterations whose estimates one point of the noise scale sums (each alone is too noisy).
pub const NOISE_SCALE_WINDOW: usize = 100;

/// The x axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XAxis {
    Epoch,
    Iteration,
}

impl XAxis {
    pub fn label(self) -> &'static str {
        match self {
            XAxis::Epoch => "epoch",
            XAxis::Iteration => "iteration",
        }
    }
}

impl Metric {
    /// The panels drawn when no metric is chosen.
    pub const DEFAULT: [Metric; 3] = [Metric::TestAccuracy, Metric::Loss, Metric::Lr];

    pub fn title(self) -> &'static str {
        match self {
            Metric::TestAccuracy => "test accuracy",
            Metric::TrainAccuracy => "training accuracy",
            Metric::TestLoss => "test loss",
            Metric::Loss => "training loss",
            Metric::Lr => "learning rate",
            Metric::GradNorm => "gradient norm",
            Metric::NoiseNorm => "gradient noise norm",
            Metric::NoiseScale => "gradient noise scale B_simple",
            Metric::Predictiveness => "full-gradient predictiveness (cosine)",
            Metric::LossStability => "loss range along the gradient",
            Metric::GradientChange => "largest gradient change along the gradient",
            Metric::BetaSmoothness => "β-smoothness along the gradient",
            Metric::KappaGnc => "κ of GNC noise (median over layers)",
            Metric::KappaRnc => "κ of RNC noise (median over layers)",
            Metric::PerturbedSpreadGnc => "std of perturbed models' losses, GNC noise",
            Metric::PerturbedSpreadRnc => "std of perturbed models' losses, RNC noise",
            Metric::AnalysisLine => "loss on the line between two end points",
        }
    }

    /// The x axis's description: `x`'s, except for the analysis line's α.
    pub fn x_label(self, x: XAxis) -> &'static str {
        match self {
            Metric::AnalysisLine => "α (0: this run's end point, 1: the other run's)",
            _ => x.label(),
        }
    }

    /// Where a metric no run has comes from, for the error that says so.
    pub fn source(self) -> Option<&'static str> {
        match self {
            Metric::AnalysisLine => Some("`gncctl analyze RUN --towards OTHER` writes it"),
            _ if self.is_diagnostic() => {
                Some("it is measured by a [diagnostics] section in the job spec")
            }
            _ => None,
        }
    }

    /// The run's (x, y) points, finite ones only, in record order.
    pub fn points(self, run: &Run, x: XAxis) -> Vec<(f64, f64)> {
        let pick = |epoch: f64, iter: u64| match x {
            XAxis::Epoch => epoch,
            XAxis::Iteration => iter as f64,
        };
        let points: Vec<(f64, f64)> = match self {
            Metric::NoiseScale => Metric::noise_scale(run, pick),
            Metric::AnalysisLine => run.line.clone(),
            Metric::TestAccuracy | Metric::TrainAccuracy | Metric::TestLoss => run
                .evals
                .iter()
                .map(|e| {
                    let y = match self {
                        Metric::TestAccuracy => e.test_accuracy,
                        Metric::TrainAccuracy => e.train_accuracy,
                        _ => e.test_loss,
                    };
                    (pick(e.epoch, e.iter), y)
                })
                .collect(),
            Metric::Loss | Metric::Lr | Metric::GradNorm | Metric::NoiseNorm => run
                .iters
                .iter()
                .map(|r| {
                    let y = match self {
                        Metric::Loss => r.loss,
                        Metric::Lr => r.lr,
                        Metric::GradNorm => r.grad_norm,
                        _ => r.noise_norm,
                    };
                    (pick(r.epoch, r.iter), y)
                })
                .collect(),
            // The diagnostics records' metrics.
            _ => run
                .diagnostics
                .iter()
                .filter_map(|d| Some((pick(d.epoch, d.iter), self.diagnostic(d)?)))
                .collect(),
        };
        points
            .into_iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect()
    }

    /// Whether `[diagnostics]` records carry it.
    pub fn is_diagnostic(self) -> bool {
        matches!(
            self,
            Metric::Predictiveness
                | Metric::LossStability
                | Metric::GradientChange
                | Metric::BetaSmoothness
                | Metric::KappaGnc
                | Metric::KappaRnc
                | Metric::PerturbedSpreadGnc
                | Metric::PerturbedSpreadRnc
        )
    }

    /// This metric's value in a diagnostics record, where it has one.
    fn diagnostic(self, d: &DiagnosticsRecord) -> Option<f64> {
        let median_kappa = |layers: &[LayerAnisotropy]| {
            let mut kappas: Vec<f64> = layers.iter().map(|l| l.kappa).collect();
            kappas.sort_by(f64::total_cmp);
            kappas.get(kappas.len() / 2).copied()
        };
        match self {
            Metric::Predictiveness => Some(d.predictiveness),
            Metric::LossStability => Some(d.smoothness.loss_range),
            Metric::GradientChange => Some(d.smoothness.gradient_change_range[1]),
            Metric::BetaSmoothness => Some(d.smoothness.beta),
            Metric::KappaGnc => median_kappa(&d.anisotropy.as_ref()?.gnc),
            Metric::KappaRnc => median_kappa(&d.anisotropy.as_ref()?.rnc),
            Metric::PerturbedSpreadGnc => Some(d.perturbed.as_ref()?.gnc.as_ref()?.std),
            Metric::PerturbedSpreadRnc => Some(d.perturbed.as_ref()?.rnc.std),
            _ => None,
        }
    }

    /// B_simple at each iteration that ends a full window of records with both estimates.
    fn noise_scale(run: &Run, pick: impl Fn(f64, u64) -> f64) -> Vec<(f64, f64)> {
        let estimated: Vec<_> = run
            .iters
            .iter()
            .filter_map(|r| Some((r, r.grad_sq_estimate?, r.trace_estimate?)))
            .collect();
        estimated
            .windows(NOISE_SCALE_WINDOW)
            .filter_map(|window| {
                let grad_sq: f64 = window.iter().map(|w| w.1).sum();
                let trace: f64 = window.iter().map(|w| w.2).sum();
                let last = window.last()?.0;
                (grad_sq > 0.0).then(|| (pick(last.epoch, last.iter), trace / grad_sq))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gnc_proto::IterRecord;

    fn record(iter: u64, estimates: Option<(f64, f64)>) -> IterRecord {
        IterRecord {
            iter,
            epoch: iter as f64 / 10.0,
            loss: 1.0,
            lr: 0.1,
            grad_norm: 1.0,
            noise_norm: 1.0,
            grad_sq_estimate: estimates.map(|e| e.0),
            trace_estimate: estimates.map(|e| e.1),
            seconds: 0.0,
        }
    }

    #[test]
    fn the_noise_scale_is_the_ratio_of_sums_over_each_full_window() {
        // |G|² estimates 1 and 3 alternating, tr(Σ) 8 throughout: each window of 100 sums
        // 200 and 800, so B_simple = 4 wherever a window is full; a record without the
        // estimates (M = 1, older versions) is left out.
        let mut iters: Vec<IterRecord> = (0..150)
            .map(|i| record(i, Some((if i % 2 == 0 { 1.0 } else { 3.0 }, 8.0))))
            .collect();
        iters.insert(7, record(999, None));
        let run = Run {
            label: "r".into(),
            dir: "r".into(),
            iters,
            evals: Vec::new(),
            diagnostics: Vec::new(),
            line: Vec::new(),
        };
        let points = Metric::NoiseScale.points(&run, XAxis::Iteration);
        assert_eq!(points.len(), 150 - NOISE_SCALE_WINDOW + 1);
        assert_eq!(points[0], (99.0, 4.0));
        assert!(points.iter().all(|&(_, b)| b == 4.0));
    }
}
