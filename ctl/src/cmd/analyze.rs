//! The arguments of `gncctl analyze` (carried out by `gnc-run`, which links libtorch): the
//! papers' analyses of a run's end point — its sharpness and the loss around it.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The run's output directory: its spec.json and newest checkpoint (the end point of a
    /// finished run) are analysed; `analysis.json` is written there.
    pub run_dir: PathBuf,
    /// Training examples the loss is taken over (the first N of the training set).
    #[arg(long, value_name = "N", default_value_t = 2048)]
    pub examples: usize,
    /// Hessian-vector products at most, for the top Hessian eigenvalue (0: skip it).
    #[arg(long, value_name = "K", default_value_t = 20)]
    pub power_iterations: usize,
    /// The finite-difference step h of its Hessian-vector products, relative to the end
    /// point's ‖x‖ (at least 1): run it again at h/10 to see whether the eigenvalue depends on
    /// the step (it is exact for a quadratic; a ReLU network is not one).
    #[arg(long, value_name = "H", default_value_t = 1e-3, value_parser = positive)]
    pub hvp_step: f64,
    /// ε of Keskar's ε-sharpness, one per flag (default: 1e-3 and 5e-4, the paper's).
    #[arg(long = "epsilon", value_name = "EPS")]
    pub epsilons: Vec<f64>,
    /// Sign-gradient ascent steps per ε.
    #[arg(long, value_name = "S", default_value_t = 20)]
    pub ascent_steps: usize,
    /// Another run of the same model: the loss on the line from this run's end point
    /// (α = 0) to that one's (α = 1), for α from -1 to 2 (Keskar's Fig. 3).
    #[arg(long, value_name = "RUN_DIR")]
    pub towards: Option<PathBuf>,
    /// Print the analysis as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl Args {
    /// The ε asked for, or the paper's.
    pub fn epsilons(&self) -> Vec<f64> {
        if self.epsilons.is_empty() {
            vec![1e-3, 5e-4]
        } else {
            self.epsilons.clone()
        }
    }
}

/// A finite number above zero.
fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}
