//! Noise enhancement (NE paper §2, Eq. 6): each worker's gradient is that of
//! α L_B + (1 - α) L_B' over its batch B and a second, independent batch B' of the same size
//! (drawn from its own data order, `rng::Purpose::SecondBatchOrder`); for α > 1 this amplifies
//! the gradient noise without changing its mean. Every worker computes at x.

use super::Method;

pub struct NoiseEnhancement {
    pub alpha: f64,
}

impl Method for NoiseEnhancement {
    fn second_batch(&self) -> Option<f64> {
        Some(self.alpha)
    }
}
