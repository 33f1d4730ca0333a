//! Plain data-parallel SGD (GNC paper §2): g~ = (1/M) Σ_i g_i, every worker at x.

use tch::Tensor;

use super::{At, Method, Perturbation, Unperturbed};

pub struct Baseline;

impl Method for Baseline {
    fn perturbation(
        &self,
        _: At,
        params: &[Tensor],
        _: Option<&[Tensor]>,
    ) -> Box<dyn Perturbation> {
        Box::new(Unperturbed::at(params))
    }
}
