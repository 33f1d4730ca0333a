//! Gradient noise convolution (GNC paper Algorithm 1, Eq. 4 and 6): logical worker i computes
//! its gradient at x_i^(p) = x^(p) - α η_t ‖x^(p)‖ ω_i^(p) with ω_i = g_i(t-1) - g~(t-1),
//! its own previous gradient's deviation from the previous mean (ω_i = 0, i.e. x_i = x, where
//! there is no previous gradient: the first iteration, or the first after RNC).
//!
//! GNC is computed as x_i = (x + s ⊙ g~(t-1)) + (-s) ⊙ g_i(t-1) with s = α η ‖x^(p)‖: the
//! bracket is shared by all workers, so each worker pays one fused multiply-add per element
//! (the same value as x - s ⊙ ω_i up to float32 rounding, see tests/gnc_reference.rs), made
//! from values ([`GncWeights`]) straight into the buffer its layer reads.
//!
//! GNC keeps every worker's gradient and their mean from one iteration to the next
//! ([`Method::keeps_gradients`]).

use std::sync::Arc;

use tch::Tensor;

use super::filters::neg_scales;
use super::{At, Method, Perturbation};
use crate::device::Device;
use crate::kernels::buffers::values;
use crate::model::ParamCursor;
use crate::state::SavedGradient;

/// GNC with noise coefficient α (GNC Table 5).
pub struct Gnc {
    pub alpha: f64,
}

impl Method for Gnc {
    fn perturbation(
        &self,
        at: At,
        params: &[Tensor],
        prev_mean: Option<&[Tensor]>,
    ) -> Box<dyn Perturbation> {
        Box::new(GncPerturbation::new(params, self.alpha, at.lr, prev_mean))
    }

    fn keeps_gradients(&self, _epoch: u64) -> bool {
        true
    }
}

/// One iteration's GNC weights: x_i = base + neg_scale ⊙ g_i(t-1); workers without a previous
/// gradient use x.
pub struct GncPerturbation {
    alpha: f64,
    weights: Arc<GncWeights>,
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

    /// Parameter k of a worker whose saved gradient for it is `prev`, made in `prev`'s own
    /// buffer (each element is read once and overwritten: half the memory traffic of writing
    /// a second buffer). Each element is fma(neg_scale, prev, base), rounded once: the same
    /// bits as libtorch's `base.addcmul(neg_scale, prev)` (which fuses it), checked in
    /// tests/gnc_reference.rs.
    pub fn make(&self, k: usize, mut prev: Vec<f32>) -> Vec<f32> {
        let (base, scale) = (&self.base[k], &self.neg_scale[k]);
        assert_eq!(
            prev.len(),
            base.len(),
            "a saved gradient has its parameter's size"
        );
        let per_filter = base.len() / scale.len();
        for ((x, b), s) in prev
            .chunks_exact_mut(per_filter)
            .zip(base.chunks_exact(per_filter))
            .zip(scale)
        {
            for (x, &b) in x.iter_mut().zip(b) {
                *x = s.mul_add(*x, b);
            }
        }
        prev
    }
}

impl GncPerturbation {
    /// GNC for iteration t at rate `lr`: `prev_mean` is g~(t-1), `None` at the first iteration.
    pub fn new(params: &[Tensor], alpha: f64, lr: f64, prev_mean: Option<&[Tensor]>) -> Self {
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
        GncPerturbation {
            alpha,
            weights: Arc::new(GncWeights {
                base,
                neg_scale: neg_scale.iter().map(values).collect(),
                shapes: params.iter().map(Tensor::size).collect(),
                device: Device::of(&params[0]),
            }),
        }
    }
}

impl Perturbation for GncPerturbation {
    fn alpha(&self) -> Option<f64> {
        Some(self.alpha)
    }

    fn share(&self) -> Box<dyn Perturbation> {
        Box::new(GncPerturbation {
            alpha: self.alpha,
            weights: Arc::clone(&self.weights),
        })
    }

    /// Each layer's weights are made from the worker's previous gradient when the forward pass
    /// reaches the layer, so they are still in cache when the layer reads them (the previous
    /// gradients are too large to stay in cache).
    fn cursor<'a>(
        &'a self,
        params: &[Tensor],
        _worker: usize,
        prev: Option<SavedGradient>,
    ) -> ParamCursor<'a> {
        match prev {
            Some(prev) => ParamCursor::gnc(&self.weights, prev),
            None => ParamCursor::leaves(params.iter().map(Tensor::detach).collect()),
        }
    }

    fn weights_of(
        &self,
        params: &[Tensor],
        _worker: usize,
        prev: Option<SavedGradient>,
    ) -> Vec<f32> {
        match prev {
            Some(prev) => prev
                .into_iter()
                .enumerate()
                .flat_map(|(k, g)| self.weights.make(k, g))
                .collect(),
            None => super::flat_values(params.iter()),
        }
    }
}
