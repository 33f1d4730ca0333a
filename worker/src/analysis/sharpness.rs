//! Keskar et al.'s ε-sharpness (metric 2.1, A = I): φ(x, ε) = 100 · (max over the box
//! C_ε = {y : |y_i| ≤ ε(|x_i| + 1)} of f(x + y) - f(x)) / (1 + f(x)).
//!
//! The paper maximises with L-BFGS-B; here projected sign-gradient ascent (the
//! adversarial-example method, which needs only gradients): from a fixed pseudo-random point
//! of the box, y ← clip(y + α · r ⊙ sign ∇f(x + y)) with r_i = ε(|x_i| + 1). The best value
//! seen is kept, so more steps never lower it.

use super::{Objective, uniform};

/// What the ascent found for one ε.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EpsilonSharpness {
    pub epsilon: f64,
    /// φ(x, ε), in percent of 1 + f(x).
    pub sharpness: f64,
    /// f(x) and the largest f(x + y) seen in the box.
    pub loss: f64,
    pub max_loss: f64,
    pub steps: usize,
}

/// Fraction of the box's half-width each ascent step moves.
pub const STEP_FRACTION: f64 = 0.25;

pub fn epsilon_sharpness(
    obj: &dyn Objective,
    x: &[f32],
    epsilon: f64,
    steps: usize,
    seed: u64,
) -> EpsilonSharpness {
    let radius: Vec<f64> = x
        .iter()
        .map(|&x| epsilon * (x.abs() as f64 + 1.0))
        .collect();
    let mut y: Vec<f64> = uniform(x.len(), seed)
        .iter()
        .zip(&radius)
        .map(|(u, r)| u * r)
        .collect();
    let loss = obj.loss(x);
    let mut max_loss = loss;
    let mut grad = vec![0f32; x.len()];
    let mut point = vec![0f32; x.len()];
    for step in 0..=steps {
        for ((p, &x), y) in point.iter_mut().zip(x).zip(&y) {
            *p = (x as f64 + y) as f32;
        }
        let value = if step < steps {
            obj.loss_and_gradient(&point, &mut grad)
        } else {
            obj.loss(&point)
        };
        max_loss = max_loss.max(value);
        if step == steps {
            break;
        }
        for ((y, r), g) in y.iter_mut().zip(&radius).zip(&grad) {
            let direction = if *g > 0.0 {
                1.0
            } else if *g < 0.0 {
                -1.0
            } else {
                0.0
            };
            *y = (*y + STEP_FRACTION * r * direction).clamp(-r, *r);
        }
    }
    EpsilonSharpness {
        epsilon,
        sharpness: 100.0 * (max_loss - loss) / (1.0 + loss),
        loss,
        max_loss,
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::quadratic::Quadratic;

    #[test]
    fn the_ascent_reaches_the_corner_that_maximises_a_convex_quadratic() {
        // f = ½ Σ a_i (x_i - c_i)² at x = c: the maximum over the box is at a corner,
        // ½ Σ a_i r_i² with r_i = ε(|c_i| + 1).
        let a = [4.0, 1.0, 0.25];
        let c = [0.5, -2.0, 0.0];
        let f = Quadratic {
            a: (0..3)
                .map(|i| (0..3).map(|j| if i == j { a[i] } else { 0.0 }).collect())
                .collect(),
            c: c.to_vec(),
        };
        let x: Vec<f32> = c.iter().map(|&c| c as f32).collect();
        let epsilon = 1e-2;
        let found = epsilon_sharpness(&f, &x, epsilon, 20, 3);
        let corner: f64 = (0..3)
            .map(|i| 0.5 * a[i] * (epsilon * (c[i].abs() + 1.0)).powi(2))
            .sum();
        assert!(found.loss.abs() < 1e-12);
        // Up to the rounding of x + y to f32 (the objective takes f32 points).
        assert!(
            (found.max_loss - corner).abs() < 1e-4 * corner,
            "{found:?} vs {corner}"
        );
        assert!((found.sharpness - 100.0 * corner).abs() < 1e-2 * corner);
        // A wider box is sharper; no steps still sees the random start.
        assert!(epsilon_sharpness(&f, &x, 2.0 * epsilon, 20, 3).sharpness > found.sharpness);
        assert!(epsilon_sharpness(&f, &x, epsilon, 0, 3).max_loss <= found.max_loss);
    }
}
