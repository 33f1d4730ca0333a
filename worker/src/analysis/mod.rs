//! The papers' analyses of a trained point (GNC §3 and A.6; Keskar et al. 2017): how sharp the
//! minimum is and how the loss varies around it. They read parameters and never train, so no
//! run's bits depend on them.
//!
//! Each analysis works on an [`Objective`], a loss over a flat parameter vector with its
//! gradient, so that the same code is tested on quadratics whose answers are known
//! (`curvature`, `sharpness`, `line` tests) and run on a model over a fixed set of training
//! examples ([`model::ModelObjective`]).
//!
//! - [`curvature::top_eigenvalue`]: the largest Hessian eigenvalue, by power iteration on
//!   Hessian-vector products taken as central differences of gradients (exact for quadratics;
//!   every model and reproducibility level has gradients, but the portable kernels have no
//!   second derivatives);
//! - [`sharpness::epsilon_sharpness`]: Keskar's metric 2.1 with A = I: the largest relative
//!   loss increase within the box |y_i| ≤ ε(|x_i| + 1), by projected sign-gradient ascent;
//! - [`line::losses_along`]: the loss on the line through two points (Keskar's Fig. 3);
//! - [`anisotropy`]: κ = λ_max / λ_min* of the workers' noise covariance per layer (GNC
//!   §3.2), for GNC's noise (from a checkpoint's per-worker gradients) and RNC's;
//! - [`noise`]: the perturbed models' losses (GNC Fig. 4b–c) and the noise's κ per layer;
//! - [`smoothness`]: Santurkar et al.'s indicators along the gradient (GNC Fig. 5, §A.6) and
//!   the full gradient's predictiveness (Fig. 3b–c);
//! - [`noise_scale`]: the gradient noise scale B_simple (McCandlish et al. 2018) from what
//!   every iteration reduces anyway; the engine records its two estimates per iteration.

pub mod anisotropy;
pub mod curvature;
pub mod line;
pub mod model;
pub mod noise;
pub mod noise_scale;
pub mod sharpness;
pub mod smoothness;

/// A loss over a flat vector of parameters.
pub trait Objective {
    /// Parameters it takes.
    fn dim(&self) -> usize;
    /// The loss at `x`.
    fn loss(&self, x: &[f32]) -> f64;
    /// The loss at `x`, and its gradient written into `grad`.
    fn loss_and_gradient(&self, x: &[f32], grad: &mut [f32]) -> f64;
}

/// A deterministic vector of `n` values uniform in [-1, 1) (xorshift64*), the same on every
/// machine: the start of the power iteration and of the ascent.
pub(crate) fn uniform(n: usize, seed: u64) -> Vec<f64> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let bits = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
            bits as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub(crate) fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

#[cfg(test)]
pub(crate) mod quadratic {
    use super::Objective;

    /// f(x) = ½ Σ_ij (x - c)_i A_ij (x - c)_j, for tests: its Hessian is A.
    pub struct Quadratic {
        pub a: Vec<Vec<f64>>,
        pub c: Vec<f64>,
    }

    impl Quadratic {
        fn gradient64(&self, x: &[f32]) -> Vec<f64> {
            let d: Vec<f64> = x.iter().zip(&self.c).map(|(&x, c)| x as f64 - c).collect();
            self.a
                .iter()
                .map(|row| row.iter().zip(&d).map(|(a, d)| a * d).sum())
                .collect()
        }
    }

    impl Objective for Quadratic {
        fn dim(&self) -> usize {
            self.c.len()
        }

        fn loss(&self, x: &[f32]) -> f64 {
            let g = self.gradient64(x);
            0.5 * x
                .iter()
                .zip(&self.c)
                .zip(&g)
                .map(|((&x, c), g)| (x as f64 - c) * g)
                .sum::<f64>()
        }

        fn loss_and_gradient(&self, x: &[f32], grad: &mut [f32]) -> f64 {
            for (out, g) in grad.iter_mut().zip(self.gradient64(x)) {
                *out = g as f32;
            }
            self.loss(x)
        }
    }
}
