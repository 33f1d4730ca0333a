//! `[diagnostics]`: the GNC paper's measurements during training (§3, §A.6), at the start of
//! every `every_iterations`-th iteration, before its update. Everything is computed on copies
//! (the method's gradient with the state's saved gradients copied, never taken; parameters as
//! new tensors), so a run's bits are the same with and without them (tests/diagnostics.rs).
//!
//! - the method's large-batch gradient g~ at x_t (the iteration's own, bit for bit) and the
//!   full gradient ∇L(x_t) over the first `examples` training examples: their cosine is the
//!   full gradient's predictiveness (Fig. 3b–c);
//! - the smoothness indicators along g~ (Fig. 5, §A.6), with the method's loss and gradient at
//!   each step, "convolved with gradient noise" as the paper computes them for GNC;
//! - κ per layer of GNC's noise and of RNC's (Fig. 4a), while GNC injects noise;
//! - the M perturbed models' losses (Fig. 4b–c), while the method injects noise.
//!
//! They need every logical worker's saved gradient, so they run where one process holds all
//! of them (an in-process run); the run loop refuses them elsewhere by name.

use std::time::Instant;

use gnc_proto::{DiagnosticsRecord, DiagnosticsSpec};

use crate::EngineError;
use crate::analysis::Objective;
use crate::analysis::model::{ModelObjective, flatten, unflatten};
use crate::analysis::noise::{self, Perturbed};
use crate::analysis::smoothness::{along_gradient, cosine, steps};
use crate::engine::{Prepared, Trainer, grad_norm};
use crate::state::TrainState;

pub struct Diagnostics {
    spec: DiagnosticsSpec,
}

impl Diagnostics {
    /// The job's diagnostics, if its spec asks for any.
    pub fn of(trainer: &Trainer) -> Option<Diagnostics> {
        let spec = trainer.spec().diagnostics.clone()?;
        Some(Diagnostics { spec })
    }

    /// Whether iteration `t` is measured.
    pub fn due(&self, t: u64) -> bool {
        t.is_multiple_of(self.spec.every_iterations)
    }

    /// The measurements at the start of the prepared iteration; `state` does not change.
    pub fn measure(
        &self,
        trainer: &Trainer,
        state: &TrainState,
        prepared: &Prepared,
    ) -> Result<DiagnosticsRecord, EngineError> {
        let began = Instant::now();
        let t = prepared.iteration();
        let lr = prepared.lr();
        let (_, g) = trainer.method_gradient(state, prepared, None)?;
        let x = flatten(&state.params);
        let gx = flatten(&g);

        let full = ModelObjective::new(
            trainer.model(),
            &state.running,
            trainer.train_examples(),
            self.spec.examples,
        );
        let mut full_gradient = vec![0f32; x.len()];
        let full_loss = full.loss_and_gradient(&x, &mut full_gradient);

        let shapes: Vec<Vec<i64>> = trainer
            .model()
            .params()
            .iter()
            .map(|p| p.shape.clone())
            .collect();
        let smoothness = along_gradient(&x, &gx, &steps(lr, self.spec.smoothness_steps), |y| {
            let at = unflatten(y, &shapes);
            let (loss, gy) = trainer.method_gradient(state, prepared, Some(&at))?;
            Ok::<_, EngineError>((loss, flatten(&gy)))
        })?;

        let seed = trainer.spec().seed;
        // GNC's noise is the saved gradients' spread; they exist while GNC injects noise.
        let saved = prepared
            .injects_gradient_noise()
            .then(|| noise::saved_gradients(&state.prev_grads))
            .flatten();
        let anisotropy = saved
            .as_ref()
            .and_then(|s| noise::anisotropy(trainer.model().params(), &state.params, s, seed, t));
        let perturbed = trainer.noise_alpha(prepared).map(|alpha| {
            let objective = ModelObjective::new(
                trainer.model(),
                &state.running,
                trainer.train_examples(),
                self.spec.perturbed_examples,
            );
            Perturbed {
                params: &state.params,
                saved: saved.clone(),
                prev_mean: state.prev_mean.as_deref(),
                workers: trainer.spec().parallel.workers,
                alpha,
                lr,
                seed,
                iteration: t,
            }
            .losses(&objective)
        });
        Ok(DiagnosticsRecord {
            iter: t,
            epoch: trainer.schedule().epoch(t),
            lr,
            grad_norm: grad_norm(&g),
            examples: full.examples(),
            full_loss,
            full_grad_norm: full_gradient
                .iter()
                .map(|&v| (v as f64).powi(2))
                .sum::<f64>()
                .sqrt(),
            predictiveness: cosine(&full_gradient, &gx),
            smoothness,
            anisotropy,
            perturbed,
            seconds: began.elapsed().as_secs_f64(),
        })
    }
}
