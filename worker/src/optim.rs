//! Optimisers, updating the parameters in place with the reduced gradient g~.
//!
//! - Momentum (GNC §A.3): v_{t+1} = m v_t - η_t (g~ + λ x_t); x_{t+1} = x_t + v_{t+1}.
//! - LARS (GNC §A.5): the same with a per-tensor rate η^(l) = γ_t τ ‖x‖ / (‖g~‖ + λ‖x‖)
//!   (γ_t when either norm is zero).
//! - Adam (Kingma & Ba, the NE paper's optimiser): L2 decay added to the gradient, bias-corrected
//!   moments.

use gnc_proto::OptimizerSpec;
use tch::Tensor;

/// Optimiser state: named slots of per-parameter tensors plus a step counter.
pub struct Optimizer {
    spec: OptimizerSpec,
    /// Slot name → one tensor per parameter.
    pub slots: Vec<(&'static str, Vec<Tensor>)>,
    /// Updates applied so far (Adam's t).
    pub steps: u64,
}

impl Optimizer {
    pub fn new(spec: &OptimizerSpec, params: &[Tensor]) -> Optimizer {
        let zeros = || params.iter().map(Tensor::zeros_like).collect::<Vec<_>>();
        let slots = match spec {
            OptimizerSpec::Momentum { .. } | OptimizerSpec::Lars { .. } => {
                vec![("velocity", zeros())]
            }
            OptimizerSpec::Adam { .. } => vec![("m", zeros()), ("v", zeros())],
        };
        Optimizer {
            spec: spec.clone(),
            slots,
            steps: 0,
        }
    }

    /// Applies one update with rate `lr` (η_t, or γ_t for LARS).
    pub fn step(&mut self, params: &mut [Tensor], grads: &[Tensor], lr: f64) {
        self.steps += 1;
        match self.spec {
            OptimizerSpec::Momentum {
                momentum,
                weight_decay,
            } => {
                let v = &mut self.slots[0].1;
                for ((x, g), v) in params.iter_mut().zip(grads).zip(v.iter_mut()) {
                    momentum_update(x, v, g, momentum, weight_decay, lr);
                }
            }
            OptimizerSpec::Lars {
                momentum,
                weight_decay,
                trust,
            } => {
                let v = &mut self.slots[0].1;
                for ((x, g), v) in params.iter_mut().zip(grads).zip(v.iter_mut()) {
                    let xn = x.norm().double_value(&[]);
                    let gn = g.norm().double_value(&[]);
                    let local = if xn > 0.0 && gn > 0.0 {
                        lr * trust * xn / (gn + weight_decay * xn)
                    } else {
                        lr
                    };
                    momentum_update(x, v, g, momentum, weight_decay, local);
                }
            }
            OptimizerSpec::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let t = self.steps as i32;
                let (c1, c2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
                let (ms, vs) = self.slots.split_at_mut(1);
                for (((x, g), m), v) in params
                    .iter_mut()
                    .zip(grads)
                    .zip(ms[0].1.iter_mut())
                    .zip(vs[0].1.iter_mut())
                {
                    let g = g + &*x * weight_decay;
                    *m = &*m * beta1 + &g * (1.0 - beta1);
                    *v = &*v * beta2 + g.square() * (1.0 - beta2);
                    let denom = crate::kernels::sqrt(&(&*v / c2)) + eps;
                    let _ = x.g_sub_(&((&*m / c1) / denom * lr));
                }
            }
        }
    }
}

fn momentum_update(x: &mut Tensor, v: &mut Tensor, g: &Tensor, m: f64, wd: f64, lr: f64) {
    let d = if wd == 0.0 {
        g.shallow_clone()
    } else {
        g + &*x * wd
    };
    *v = &*v * m - d * lr;
    let _ = x.g_add_(v);
}
