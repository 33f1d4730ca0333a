//! What can be plotted: the metrics (y) and the x axis, and each run's points for them.

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
}

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
        }
    }

    /// The run's (x, y) points, finite ones only, in record order.
    pub fn points(self, run: &Run, x: XAxis) -> Vec<(f64, f64)> {
        let pick = |epoch: f64, iter: u64| match x {
            XAxis::Epoch => epoch,
            XAxis::Iteration => iter as f64,
        };
        let points: Vec<(f64, f64)> = match self {
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
        };
        points
            .into_iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect()
    }
}
