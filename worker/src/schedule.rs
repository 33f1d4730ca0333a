//! Learning-rate schedules (GNC Table 4, Fig. 6; §A.4–A.5).

use gnc_proto::{Decay, ScheduleSpec};

/// η_t as a function of the iteration, for a training of `iterations_per_epoch` × epochs.
#[derive(Debug, Clone)]
pub struct Schedule {
    spec: ScheduleSpec,
    iterations_per_epoch: u64,
}

impl Schedule {
    pub fn new(spec: &ScheduleSpec, iterations_per_epoch: u64) -> Schedule {
        Schedule {
            spec: spec.clone(),
            iterations_per_epoch,
        }
    }

    pub fn iterations_per_epoch(&self) -> u64 {
        self.iterations_per_epoch
    }

    pub fn total_iterations(&self) -> u64 {
        self.spec.epochs as u64 * self.iterations_per_epoch
    }

    /// Fractional epoch at the start of iteration `t` (t counts from 0).
    pub fn epoch(&self, t: u64) -> f64 {
        t as f64 / self.iterations_per_epoch as f64
    }

    /// The rate for iteration `t`:
    /// - warmup (epoch e < W): linear from `warmup_start_lr` at e = 0 towards `base_lr` at e = W;
    /// - step: `base_lr` × factor^(number of milestones ≤ e);
    /// - polynomial: `base_lr` (1 - s)^power with s = (t - t_W) / (T - t_W), t_W the first
    ///   iteration after warmup, then ÷ `collapse_divisor` from `collapse_epoch` on.
    pub fn lr(&self, t: u64) -> f64 {
        let s = &self.spec;
        let e = self.epoch(t);
        if e < s.warmup_epochs {
            return s.warmup_start_lr + (s.base_lr - s.warmup_start_lr) * e / s.warmup_epochs;
        }
        match &s.decay {
            Decay::Constant => s.base_lr,
            Decay::Step { milestones, factor } => {
                let passed = milestones.iter().filter(|&&m| e >= m).count();
                s.base_lr * factor.powi(passed as i32)
            }
            Decay::Polynomial {
                power,
                collapse_epoch,
                collapse_divisor,
            } => {
                let t_w = (s.warmup_epochs * self.iterations_per_epoch as f64).ceil();
                let span = (self.total_iterations() as f64 - t_w).max(1.0);
                let progress = ((t as f64 - t_w) / span).clamp(0.0, 1.0);
                let lr = s.base_lr * (1.0 - progress).powf(*power);
                match collapse_epoch {
                    Some(c) if e >= *c => lr / collapse_divisor,
                    _ => lr,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(decay: Decay) -> ScheduleSpec {
        ScheduleSpec {
            epochs: 160,
            base_lr: 6.4,
            warmup_epochs: 10.0,
            warmup_start_lr: 0.025,
            decay,
        }
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12 * b.abs().max(1.0), "{a} != {b}");
    }

    #[test]
    fn cifar_step_schedule_of_table_4_by_hand() {
        // 10 iterations per epoch; GNC Table 4, CIFAR, B = 8192.
        let s = Schedule::new(
            &spec(Decay::Step {
                milestones: vec![80.0, 120.0],
                factor: 0.1,
            }),
            10,
        );
        close(s.lr(0), 0.025);
        // Halfway through warmup: 0.025 + (6.4 - 0.025) * 5 / 10.
        close(s.lr(50), 3.2125);
        close(s.lr(99), 0.025 + 6.375 * 9.9 / 10.0);
        close(s.lr(100), 6.4);
        close(s.lr(799), 6.4);
        close(s.lr(800), 0.64);
        close(s.lr(1200), 0.064);
        close(s.lr(1599), 0.064);
    }

    #[test]
    fn polynomial_with_final_collapse_by_hand() {
        // GNC §A.5: power 2, ÷5 after epoch 80; here 90 epochs of 10 iterations, 5 of warmup.
        let mut sp = spec(Decay::Polynomial {
            power: 2.0,
            collapse_epoch: Some(80.0),
            collapse_divisor: 5.0,
        });
        sp.epochs = 90;
        sp.warmup_epochs = 5.0;
        sp.warmup_start_lr = 1.0;
        sp.base_lr = 23.0;
        let s = Schedule::new(&sp, 10);
        close(s.lr(0), 1.0);
        close(s.lr(50), 23.0);
        // t = 475: progress (475 - 50) / 850 = 0.5 → 23 * 0.25.
        close(s.lr(475), 5.75);
        // t = 800: progress 750 / 850, then ÷5.
        close(s.lr(800), 23.0 * (100.0f64 / 850.0).powi(2) / 5.0);
        close(s.lr(799), 23.0 * (101.0f64 / 850.0).powi(2));
    }
}
