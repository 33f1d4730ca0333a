//! Learning-rate schedules (GNC Table 4, Fig. 6; §A.4–A.5).

use gnc_contract::manifest::LossWindow;
use gnc_proto::{Decay, LossTrigger, ScheduleSpec};

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

/// The factor on the schedule's rate: ½ once the loss trigger has halved it.
pub fn trigger_factor(window: &LossWindow) -> f64 {
    if window.halved_at.is_some() { 0.5 } else { 1.0 }
}

/// Iteration `iteration`'s loss into the trigger's window (NE §3): once the mean of the last
/// `trigger.window` losses is at most `halve_below` the rate is halved from the next iteration
/// on, and once it is below `stop_below` the run ends after this iteration. Each happens once.
pub fn observe_loss(window: &mut LossWindow, trigger: &LossTrigger, iteration: u64, loss: f64) {
    window.recent.push(loss);
    if window.recent.len() > trigger.window {
        window.recent.remove(0);
    }
    if window.recent.len() < trigger.window {
        return;
    }
    let mean = window.recent.iter().sum::<f64>() / trigger.window as f64;
    // Counted as iterations completed, as the records and checkpoints count them.
    if window.halved_at.is_none() && mean <= trigger.halve_below {
        window.halved_at = Some(iteration + 1);
    }
    if window.converged_at.is_none() && mean < trigger.stop_below {
        window.converged_at = Some(iteration + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(decay: Decay) -> ScheduleSpec {
        ScheduleSpec {
            loss_trigger: None,
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

    #[test]
    fn the_loss_trigger_halves_then_stops_on_the_window_mean_once_each() {
        let trigger = LossTrigger {
            halve_below: 1.0,
            stop_below: 0.5,
            window: 2,
        };
        let mut w = LossWindow::default();
        // Means of consecutive pairs: -, 1.5, 1.0 (iteration 2: halve after 3 iterations),
        // 0.75, 0.45 (iteration 4: stop after 5), …
        for (t, loss) in [2.0, 1.0, 1.0, 0.5, 0.4, 3.0, 0.1].into_iter().enumerate() {
            observe_loss(&mut w, &trigger, t as u64, loss);
            if t == 1 {
                assert_eq!(trigger_factor(&w), 1.0);
            }
        }
        assert_eq!(w.halved_at, Some(3));
        assert_eq!(w.converged_at, Some(5));
        assert_eq!(w.recent, [3.0, 0.1]);
        assert_eq!(trigger_factor(&w), 0.5);
    }
}
