//! Random noise convolution (GNC paper Eq. 5): logical worker i computes its gradient at
//! x_i^(p) = x^(p) - α η_t ‖x^(p)‖ ω_i^(p) / ‖ω_i^(p)‖ with fresh ω_i uniform on [-1, 1),
//! drawn from (seed, iteration, worker, parameter): the same draws for any placement.

use tch::Tensor;

use super::filters::{filter_norms, neg_scales};
use super::{At, Method, Perturbation};
use crate::device::Device;
use crate::model::ParamCursor;
use crate::rng::{Purpose, Stream};
use crate::state::SavedGradient;

/// RNC with noise coefficient α.
pub struct Rnc {
    pub alpha: f64,
}

impl Method for Rnc {
    fn perturbation(
        &self,
        at: At,
        params: &[Tensor],
        _: Option<&[Tensor]>,
    ) -> Box<dyn Perturbation> {
        Box::new(RncPerturbation::new(
            params,
            self.alpha,
            at.lr,
            at.seed,
            at.iteration,
        ))
    }
}

/// One iteration's RNC weights: x_i = x + neg_scale ⊙ ω_i / ‖ω_i^(p)‖.
pub struct RncPerturbation {
    alpha: f64,
    seed: u64,
    iteration: u64,
    /// -α η ‖x^(p)‖ per parameter.
    neg_scale: Vec<Tensor>,
}

impl RncPerturbation {
    pub fn new(params: &[Tensor], alpha: f64, lr: f64, seed: u64, iteration: u64) -> Self {
        RncPerturbation {
            alpha,
            seed,
            iteration,
            neg_scale: neg_scales(params, alpha * lr),
        }
    }

    /// x_i for every parameter.
    fn weights(&self, params: &[Tensor], worker: usize) -> Vec<Tensor> {
        params
            .iter()
            .zip(&self.neg_scale)
            .enumerate()
            .map(|(k, (x, ns))| {
                let omega = rnc_noise(self.seed, self.iteration, worker, k, x);
                x.addcmul(&(ns / filter_norms(&omega)), &omega)
            })
            .collect()
    }
}

impl Perturbation for RncPerturbation {
    fn alpha(&self) -> Option<f64> {
        Some(self.alpha)
    }

    fn share(&self) -> Box<dyn Perturbation> {
        Box::new(RncPerturbation {
            alpha: self.alpha,
            seed: self.seed,
            iteration: self.iteration,
            neg_scale: self.neg_scale.iter().map(Tensor::shallow_clone).collect(),
        })
    }

    fn cursor<'a>(
        &'a self,
        params: &[Tensor],
        worker: usize,
        _prev: Option<SavedGradient>,
    ) -> ParamCursor<'a> {
        ParamCursor::leaves(self.weights(params, worker))
    }

    fn weights_of(
        &self,
        params: &[Tensor],
        worker: usize,
        _prev: Option<SavedGradient>,
    ) -> Vec<f32> {
        super::flat_values(self.weights(params, worker).iter())
    }
}

/// ω for RNC: uniform on [-1, 1), drawn from (seed, RncNoise, iteration, worker, parameter).
pub fn rnc_noise(seed: u64, iteration: u64, worker: usize, param: usize, like: &Tensor) -> Tensor {
    Device::of(like).floats_written(&like.size(), |values| {
        Stream::new(
            seed,
            Purpose::RncNoise,
            &[iteration, worker as u64, param as u64],
        )
        .fill_uniform(values, -1.0, 1.0)
    })
}
