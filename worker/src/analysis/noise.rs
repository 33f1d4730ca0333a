//! The noise the workers inject, at one iteration (GNC §3.2): how anisotropic it is (Fig. 4a)
//! and how the losses of the perturbed models x_i vary (Fig. 4b–c). Used by `gncctl analyze`
//! (a checkpoint's state) and by `[diagnostics]` (the state at the start of an iteration).

use gnc_proto::{LossSpread, NoiseAnisotropy, PerturbedLosses};
use tch::Tensor;

use super::Objective;
use super::anisotropy;
use crate::method::{Perturbation, filter_norms, rnc_noise};
use crate::model::ParamSpec;
use crate::state::SavedGradient;

/// Every worker's g_i(t-1), where the state keeps them (while GNC injects noise).
pub fn saved_gradients(prev_grads: &[Option<SavedGradient>]) -> Option<Vec<&SavedGradient>> {
    prev_grads.iter().map(Option::as_ref).collect()
}

/// κ per layer for GNC's noise ω_i = g_i(t-1) - g~(t-1) (Eq. 4; Ω centres the g_i on their
/// mean, which is g~) and RNC's ω_i = u_i / ‖u_i^(p)‖ filter-wise (Eq. 5) drawn for iteration
/// `iteration`, for the M workers whose saved gradients are `saved` (M ≥ 3).
pub fn anisotropy(
    specs: &[ParamSpec],
    params: &[Tensor],
    saved: &[&SavedGradient],
    seed: u64,
    iteration: u64,
) -> Option<NoiseAnisotropy> {
    if saved.len() < 3 {
        return None;
    }
    let mut gnc = Vec::new();
    let mut rnc = Vec::new();
    for (k, (spec, x)) in specs.iter().zip(params).enumerate() {
        let columns: Vec<&[f32]> = saved.iter().map(|g| g[k].as_slice()).collect();
        gnc.push(anisotropy::layer(&spec.name, &columns));
        let random: Vec<Vec<f32>> = (0..saved.len())
            .map(|worker| {
                let u = rnc_noise(seed, iteration, worker, k, x);
                let direction = &u / filter_norms(&u);
                let mut values = vec![0f32; direction.numel()];
                direction
                    .contiguous()
                    .copy_data(&mut values, direction.numel());
                values
            })
            .collect();
        let columns: Vec<&[f32]> = random.iter().map(Vec::as_slice).collect();
        rnc.push(anisotropy::layer(&spec.name, &columns));
    }
    Some(NoiseAnisotropy {
        workers: saved.len(),
        gnc,
        rnc,
    })
}

/// Where the perturbed models come from: the parameters x, the M workers' saved gradients
/// (GNC's noise; `None` where there are none) and the noise rule's α and rate.
pub struct Perturbed<'a> {
    pub params: &'a [Tensor],
    pub saved: Option<Vec<&'a SavedGradient>>,
    /// g~(t-1), GNC's base; present with `saved`.
    pub prev_mean: Option<&'a [Tensor]>,
    pub workers: usize,
    pub alpha: f64,
    pub lr: f64,
    pub seed: u64,
    pub iteration: u64,
}

impl Perturbed<'_> {
    /// The losses of x_i = x - α η ‖x^(p)‖ ω_i^(p) for GNC's ω_i (the saved g_i - g~, exactly
    /// as the iteration makes them), where there are saved gradients, and for RNC's.
    pub fn losses(&self, objective: &dyn Objective) -> PerturbedLosses {
        let spread = |perturbation: &Perturbation| {
            LossSpread::of(
                (0..self.workers)
                    .map(|worker| {
                        let prev = self.saved.as_ref().map(|s| s[worker].clone());
                        objective.loss(&perturbation.weights_of(self.params, worker, prev))
                    })
                    .collect(),
            )
        };
        let gnc = self.saved.as_ref().map(|_| {
            spread(&Perturbation::gnc(
                self.params,
                self.alpha,
                self.lr,
                self.prev_mean,
            ))
        });
        let rnc = Perturbation::rnc(self.params, self.alpha, self.lr, self.seed, self.iteration);
        PerturbedLosses {
            alpha: self.alpha,
            lr: self.lr,
            unperturbed: objective.loss(&super::model::flatten(self.params)),
            gnc,
            rnc: spread(&rnc),
        }
    }
}
