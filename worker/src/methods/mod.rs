//! The training methods (GNC paper §2, NE paper §2), one module each behind [`Method`].
//!
//! A method decides three things, and the engine asks it for nothing else:
//! - the weights each logical worker differentiates at in an iteration ([`Perturbation`],
//!   prepared once per iteration and shared by every compute thread);
//! - its gradient rule: one small batch per worker, or noise enhancement's two
//!   ([`Method::second_batch`]);
//! - what it keeps from one iteration to the next: every method's state is the optimiser's plus,
//!   where [`Method::keeps_gradients`] says so, the gradient memory g~(t-1), g_i(t-1) that
//!   `state::TrainState` holds and checkpoints (`prev_mean/…`, `prev_grad/<worker>/…`).
//!
//! Adding a method: a module here implementing [`Method`] (and [`Perturbation`] if its noise is
//! new), its variant in `gnc_proto::MethodSpec`, its arm in [`build`], and DESIGN.md §3.

mod baseline;
mod filters;
mod gnc;
mod gnc_to_rnc;
mod noise_enhancement;
mod rnc;

use std::sync::Arc;

use gnc_proto::MethodSpec;
use tch::Tensor;

use crate::kernels;
use crate::model::ParamCursor;
use crate::state::SavedGradient;

pub use filters::filter_norms;
pub use gnc::{Gnc, GncPerturbation, GncWeights};
pub use rnc::{Rnc, RncPerturbation, rnc_noise};

/// Where an iteration stands, as a method needs it.
#[derive(Debug, Clone, Copy)]
pub struct At {
    /// The iteration t.
    pub iteration: u64,
    /// The epoch the iteration belongs to.
    pub epoch: u64,
    /// η_t.
    pub lr: f64,
    /// The job's seed (RNC's draws come from it).
    pub seed: u64,
}

/// A training method.
pub trait Method: Send + Sync {
    /// The weights the workers differentiate at in iteration `at`, around `params`; `prev_mean`
    /// is g~(t-1) where the previous iteration kept it. By default the parameters themselves
    /// ([`Unperturbed`]); the methods that inject noise say otherwise.
    fn perturbation(
        &self,
        _at: At,
        params: &[Tensor],
        _prev_mean: Option<&[Tensor]>,
    ) -> Box<dyn Perturbation> {
        Box::new(Unperturbed::at(params))
    }

    /// Whether iteration `at` keeps each worker's gradient g_i(t) and the mean g~(t) for the
    /// next one. Where it does not, the engine drops the memory before the iteration.
    fn keeps_gradients(&self, _epoch: u64) -> bool {
        false
    }

    /// Noise enhancement's rule (NE Eq. 6): each worker's gradient is that of
    /// α L_B + (1 - α) L_B' over a second, independent batch B'; `None`: the gradient of L_B.
    fn second_batch(&self) -> Option<f64> {
        None
    }
}

/// The method a spec names.
pub fn build(spec: &MethodSpec) -> Box<dyn Method> {
    match *spec {
        MethodSpec::Baseline => Box::new(baseline::Baseline),
        MethodSpec::Gnc { alpha } => Box::new(Gnc { alpha }),
        MethodSpec::Rnc { alpha } => Box::new(Rnc { alpha }),
        MethodSpec::GncToRnc {
            alpha_gnc,
            alpha_rnc,
            switch_epoch,
        } => Box::new(gnc_to_rnc::GncToRnc {
            gnc: Gnc { alpha: alpha_gnc },
            rnc: Rnc { alpha: alpha_rnc },
            switch_epoch: switch_epoch as u64,
        }),
        MethodSpec::NoiseEnhancement { alpha } => {
            Box::new(noise_enhancement::NoiseEnhancement { alpha })
        }
    }
}

/// The weights every logical worker differentiates at in one iteration: made once per
/// iteration, never written afterwards, and handed to each compute thread as a [`share`].
///
/// [`share`]: Perturbation::share
pub trait Perturbation: Send {
    /// α of the injected noise; `None` where the workers compute at x.
    fn alpha(&self) -> Option<f64>;

    /// A copy for another compute thread, sharing storage.
    fn share(&self) -> Box<dyn Perturbation>;

    /// The weights logical worker `worker` differentiates at, handed out in canonical order as
    /// leaf tensors. `prev` is the worker's gradient g_i(t-1) where the method keeps it; a
    /// perturbation made from it consumes it (and may reuse its buffers).
    fn cursor<'a>(
        &'a self,
        params: &[Tensor],
        worker: usize,
        prev: Option<SavedGradient>,
    ) -> ParamCursor<'a>;

    /// The weights `worker` differentiates at as one flat vector in canonical order — the
    /// values [`Perturbation::cursor`] hands out — for analyses (the losses of the perturbed
    /// models, GNC §3.2, Fig. 4b–c).
    fn weights_of(&self, params: &[Tensor], worker: usize, prev: Option<SavedGradient>)
    -> Vec<f32>;
}

/// x_i = x: every worker differentiates at the parameters themselves.
pub struct Unperturbed {
    /// At the portable level, the parameters' values, copied once for the iteration and read
    /// by every worker's linear layers (as GNC's weights are made from values copied once);
    /// empty at the native level, whose layers read the tensors.
    values: Vec<Arc<Vec<f32>>>,
}

impl Unperturbed {
    /// For an iteration at `params` (the parameters every worker's cursor is then given).
    pub fn at(params: &[Tensor]) -> Self {
        let values = if kernels::portable() {
            params
                .iter()
                .map(|p| Arc::new(kernels::buffers::values(p)))
                .collect()
        } else {
            Vec::new()
        };
        Unperturbed { values }
    }
}

impl Perturbation for Unperturbed {
    fn alpha(&self) -> Option<f64> {
        None
    }

    fn share(&self) -> Box<dyn Perturbation> {
        Box::new(Unperturbed {
            values: self.values.clone(),
        })
    }

    fn cursor<'a>(
        &'a self,
        params: &[Tensor],
        _worker: usize,
        _prev: Option<SavedGradient>,
    ) -> ParamCursor<'a> {
        let leaves = params.iter().map(Tensor::detach).collect();
        if self.values.is_empty() {
            ParamCursor::leaves(leaves)
        } else {
            ParamCursor::leaves_with_values(leaves, &self.values)
        }
    }

    fn weights_of(
        &self,
        params: &[Tensor],
        _worker: usize,
        _prev: Option<SavedGradient>,
    ) -> Vec<f32> {
        flat_values(params.iter())
    }
}

/// Tensors' values, concatenated in order.
fn flat_values<'a>(tensors: impl Iterator<Item = &'a Tensor>) -> Vec<f32> {
    tensors
        .map(crate::kernels::buffers::values)
        .collect::<Vec<_>>()
        .concat()
}
