//! The weights each logical worker computes its gradient at (GNC paper §2, §A.2).
//!
//! - baseline, noise enhancement: x_i = x.
//! - GNC (Eq. 6): x_i^(p) = x^(p) - α η_t ‖x^(p)‖ ω_i^(p) with ω_i = g_i(t-1) - g~(t-1)
//!   (Eq. 4, Algorithm 1), ω_i = 0 when there is no previous gradient.
//! - RNC (Eq. 5): x_i^(p) = x^(p) - α η_t ‖x^(p)‖ ω_i^(p) / ‖ω_i^(p)‖, ω_i uniform on [-1, 1).
//!
//! A filter p is an output channel of a convolution or a row of a linear weight (the first
//! dimension of a tensor of rank ≥ 2); a bias or BatchNorm vector is one filter as a whole.
//!
//! GNC is computed as x_i = (x + s ⊙ g~(t-1)) + (-s) ⊙ g_i(t-1) with s = α η ‖x^(p)‖: the
//! bracket is shared by all workers, so each worker pays one fused multiply-add per element
//! (the same value as x - s ⊙ ω_i up to float32 rounding, see tests/gnc_reference.rs), made
//! from values ([`GncWeights`]) straight into the buffer its layer reads.

use std::sync::Arc;

use tch::Tensor;

use crate::device::Device;
use crate::kernels::linear::{buffer, recycle, values};
use crate::model::ParamCursor;
use crate::rng::{Purpose, Stream};
use crate::state::SavedGradient;

/// ‖x^(p)‖ per filter, shaped to broadcast against `x`.
pub fn filter_norms(x: &Tensor) -> Tensor {
    if x.dim() >= 2 {
        let filters = x.size()[0];
        let mut shape = vec![filters];
        shape.extend(std::iter::repeat_n(1, x.dim() - 1));
        x.flatten(1, -1)
            .norm_scalaropt_dim(2, [1i64], false)
            .view(shape.as_slice())
    } else {
        x.norm().view([1])
    }
}

/// Per-iteration data shared by every worker of one method.
pub enum Perturbation {
    /// x_i = x.
    None,
    /// x_i = base + neg_scale ⊙ g_i(t-1); workers without a previous gradient use x.
    Gnc(Arc<GncWeights>),
    /// x_i = x + neg_scale ⊙ ω_i / ‖ω_i^(p)‖ with fresh uniform ω_i.
    Rnc {
        seed: u64,
        iteration: u64,
        neg_scale: Vec<Tensor>,
    },
}

/// The part of GNC's x_i = base + neg_scale ⊙ g_i(t-1) that all workers share, as values:
/// each worker's weights are made from it and its saved gradient (also values) element by
/// element, with no tensor operation and no copy in between.
pub struct GncWeights {
    /// x + s ⊙ g~(t-1) per parameter, row-major.
    base: Vec<Vec<f32>>,
    /// -s per filter of each parameter (one value for a bias or BatchNorm vector).
    neg_scale: Vec<Vec<f32>>,
    shapes: Vec<Vec<i64>>,
    /// Where the parameters live, and so each worker's weights.
    pub device: Device,
}

impl GncWeights {
    pub fn shape(&self, k: usize) -> &[i64] {
        &self.shapes[k]
    }

    /// Parameter k of a worker whose saved gradient for it is `prev`, which this consumes (its
    /// buffer is reused). Each element is fma(neg_scale, prev, base), rounded once: the same
    /// bits as libtorch's `base.addcmul(neg_scale, prev)` (which fuses it), checked in
    /// tests/gnc_reference.rs.
    pub fn make(&self, k: usize, prev: Vec<f32>) -> Vec<f32> {
        let (base, scale) = (&self.base[k], &self.neg_scale[k]);
        assert_eq!(
            prev.len(),
            base.len(),
            "a saved gradient has its parameter's size"
        );
        let mut x = buffer(base.len());
        let per_filter = base.len() / scale.len();
        for (((x, b), p), s) in x
            .chunks_exact_mut(per_filter)
            .zip(base.chunks_exact(per_filter))
            .zip(prev.chunks_exact(per_filter))
            .zip(scale)
        {
            for ((x, &b), &p) in x.iter_mut().zip(b).zip(p) {
                *x = s.mul_add(p, b);
            }
        }
        recycle(prev);
        x
    }
}

/// -α η ‖x^(p)‖ for every parameter.
fn neg_scales(params: &[Tensor], alpha_eta: f64) -> Vec<Tensor> {
    params
        .iter()
        .map(|x| filter_norms(x) * (-alpha_eta))
        .collect()
}

impl Perturbation {
    /// GNC for iteration t: `prev_mean` is g~(t-1), `None` at the first iteration.
    pub fn gnc(params: &[Tensor], alpha: f64, lr: f64, prev_mean: Option<&[Tensor]>) -> Self {
        let neg_scale = neg_scales(params, alpha * lr);
        let base: Vec<Vec<f32>> = match prev_mean {
            Some(mean) => params
                .iter()
                .zip(mean)
                .zip(&neg_scale)
                .map(|((x, g), ns)| values(&(x - ns * g)))
                .collect(),
            None => params.iter().map(values).collect(),
        };
        Perturbation::Gnc(Arc::new(GncWeights {
            base,
            neg_scale: neg_scale.iter().map(values).collect(),
            shapes: params.iter().map(Tensor::size).collect(),
            device: Device::of(&params[0]),
        }))
    }

    pub fn rnc(params: &[Tensor], alpha: f64, lr: f64, seed: u64, iteration: u64) -> Self {
        Perturbation::Rnc {
            seed,
            iteration,
            neg_scale: neg_scales(params, alpha * lr),
        }
    }

    /// A copy for another thread: shares storage, never written after creation.
    pub fn share(&self) -> Perturbation {
        let share = |v: &Vec<Tensor>| v.iter().map(Tensor::shallow_clone).collect();
        match self {
            Perturbation::None => Perturbation::None,
            Perturbation::Gnc(weights) => Perturbation::Gnc(Arc::clone(weights)),
            Perturbation::Rnc {
                seed,
                iteration,
                neg_scale,
            } => Perturbation::Rnc {
                seed: *seed,
                iteration: *iteration,
                neg_scale: share(neg_scale),
            },
        }
    }

    /// The weights logical worker `worker` differentiates at, handed out in canonical order as
    /// leaf tensors. GNC consumes the worker's previous gradient: each layer's weights are
    /// made from it when the forward pass reaches the layer, so they are still in cache when
    /// the layer reads them (the previous gradients are too large to stay in cache).
    pub fn cursor<'a>(
        &'a self,
        params: &[Tensor],
        worker: usize,
        prev_grad: Option<SavedGradient>,
    ) -> ParamCursor<'a> {
        match (self, prev_grad) {
            (Perturbation::Gnc(weights), Some(prev)) => ParamCursor::gnc(weights, prev),
            (
                Perturbation::Rnc {
                    seed,
                    iteration,
                    neg_scale,
                },
                _,
            ) => ParamCursor::leaves(rnc_weights(params, neg_scale, *seed, *iteration, worker)),
            _ => ParamCursor::leaves(params.iter().map(Tensor::detach).collect()),
        }
    }

    /// The weights `worker` differentiates at, as one flat vector in canonical order — the
    /// values [`Perturbation::cursor`] hands out — for analyses (the losses of the perturbed
    /// models, GNC §3.2, Fig. 4b–c).
    pub fn weights_of(
        &self,
        params: &[Tensor],
        worker: usize,
        prev_grad: Option<SavedGradient>,
    ) -> Vec<f32> {
        let tensors: Vec<Vec<f32>> = match (self, prev_grad) {
            (Perturbation::Gnc(weights), Some(prev)) => prev
                .into_iter()
                .enumerate()
                .map(|(k, g)| weights.make(k, g))
                .collect(),
            (
                Perturbation::Rnc {
                    seed,
                    iteration,
                    neg_scale,
                },
                _,
            ) => rnc_weights(params, neg_scale, *seed, *iteration, worker)
                .iter()
                .map(values)
                .collect(),
            _ => params.iter().map(values).collect(),
        };
        tensors.concat()
    }
}

/// RNC's x_i = x + neg_scale ⊙ ω_i / ‖ω_i^(p)‖ for every parameter.
fn rnc_weights(
    params: &[Tensor],
    neg_scale: &[Tensor],
    seed: u64,
    iteration: u64,
    worker: usize,
) -> Vec<Tensor> {
    params
        .iter()
        .zip(neg_scale)
        .enumerate()
        .map(|(k, (x, ns))| {
            let omega = rnc_noise(seed, iteration, worker, k, x);
            x.addcmul(&(ns / filter_norms(&omega)), &omega)
        })
        .collect()
}

/// ω for RNC: uniform on [-1, 1), drawn from (seed, RncNoise, iteration, worker, parameter).
pub fn rnc_noise(seed: u64, iteration: u64, worker: usize, param: usize, like: &Tensor) -> Tensor {
    let mut values = vec![0f32; like.numel()];
    Stream::new(
        seed,
        Purpose::RncNoise,
        &[iteration, worker as u64, param as u64],
    )
    .fill_uniform(&mut values, -1.0, 1.0);
    Device::of(like).floats(&values, &like.size())
}
