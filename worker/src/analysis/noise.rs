//! The noise the workers inject, at one iteration (GNC §3.2): how anisotropic it is (Fig. 4a)
//! and how the losses of the perturbed models x_i vary (Fig. 4b–c). Used by `gncctl analyze`
//! (a checkpoint's state) and by `[diagnostics]` (the state at the start of an iteration).

use gnc_proto::{LossSpread, NoiseAnisotropy, PerturbedLosses};
use tch::Tensor;

use super::Objective;
use super::anisotropy;
use crate::methods::{GncPerturbation, Perturbation, RncPerturbation, filter_norms, rnc_noise};
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
        let x = super::model::flatten(self.params);
        let spread = |perturbation: &dyn Perturbation| {
            let (mut losses, mut sizes, mut squared) = (Vec::new(), Vec::new(), Vec::new());
            for worker in 0..self.workers {
                let prev = self.saved.as_ref().map(|s| s[worker].clone());
                let xi = perturbation.weights_of(self.params, worker, prev);
                losses.push(objective.loss(&xi));
                sizes.push(relative_size(self.params, &x, &xi));
                squared.push(squared_distance(&x, &xi));
            }
            LossSpread::with_sizes(losses, sizes, squared)
        };
        let gnc = self.saved.as_ref().map(|_| {
            spread(&GncPerturbation::new(
                self.params,
                self.alpha,
                self.lr,
                self.prev_mean,
            ))
        });
        let rnc = RncPerturbation::new(self.params, self.alpha, self.lr, self.seed, self.iteration);
        PerturbedLosses {
            alpha: self.alpha,
            lr: self.lr,
            unperturbed: objective.loss(&x),
            gnc,
            rnc: spread(&rnc),
        }
    }
}

/// ‖x_i − x‖² over all parameters, summed in f64 in index order.
fn squared_distance(x: &[f32], xi: &[f32]) -> f64 {
    x.iter()
        .zip(xi)
        .map(|(&a, &b)| (f64::from(b) - f64::from(a)).powi(2))
        .sum()
}

/// The mean over filters of ‖x_i^(p) − x^(p)‖ / ‖x^(p)‖, for the flat parameter vectors `x`
/// and `xi` laid out as `params` (a filter: a dim-0 slice of a parameter of two or more
/// dimensions, else the whole parameter, as `methods::filter_norms` takes them). Filters whose
/// ‖x^(p)‖ is zero (a bias at its initial zeros) have no relative size and are left out. Sums
/// in f64, in index order: the same on every machine.
fn relative_size(params: &[Tensor], x: &[f32], xi: &[f32]) -> f64 {
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|e| e * e).sum::<f64>().sqrt();
    let (mut sum, mut filters, mut at) = (0.0, 0usize, 0);
    for p in params {
        let n = p.numel();
        let rows = if p.dim() >= 2 {
            p.size()[0] as usize
        } else {
            1
        };
        let width = (n / rows).max(1);
        let filters_of = x[at..at + n]
            .chunks(width)
            .zip(xi[at..at + n].chunks(width));
        for (a, b) in filters_of {
            let base = norm(&mut a.iter().map(|&v| f64::from(v)));
            if base > 0.0 {
                let moved = a.iter().zip(b);
                sum += norm(&mut moved.map(|(&u, &v)| f64::from(v) - f64::from(u))) / base;
                filters += 1;
            }
        }
        at += n;
    }
    sum / filters.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relative_size_is_the_mean_over_filters() {
        // A 2 x 2 weight (two filters) and a bias vector (one filter, at zero: left out).
        let params = [
            Tensor::zeros([2, 2], tch::kind::FLOAT_CPU),
            Tensor::zeros([2], tch::kind::FLOAT_CPU),
        ];
        let x = [3.0, 4.0, 0.0, 1.0, 0.0, 0.0];
        // Filter 0 moves by (0.3, 0.4): 0.5 / 5 = 0.1; filter 1 by (0, 0.5): 0.5 / 1.
        let xi = [3.3, 4.4, 0.0, 1.5, 7.0, 7.0];
        let size = relative_size(&params, &x, &xi);
        assert!((size - 0.3).abs() < 1e-6, "{size}");
    }
}
