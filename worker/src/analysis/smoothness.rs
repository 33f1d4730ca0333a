//! Santurkar et al.'s smoothness indicators along the gradient, as the GNC paper measures them
//! (§3.3, Fig. 5, §A.6): from x, steps of lengths s evenly spaced in [η/2, 2η] along -g; at
//! each x_s = x - s g the loss and the gradient; loss stability is the range of the losses,
//! gradient predictiveness the range of ‖∇f(x_s) - ∇f(x)‖, and β-smoothness the largest
//! ‖∇f(x) - ∇f(x_s)‖ / ‖x - x_s‖.

use gnc_proto::Smoothness;

/// `n` step lengths evenly spaced in [η/2, 2η] (§A.6: eight).
pub fn steps(lr: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|j| lr * (0.5 + 1.5 * j as f64 / (n - 1).max(1) as f64))
        .collect()
}

/// The indicators at `x` along `-g` (g = ∇f(x)), with `at(y)` giving f(y) and ∇f(y). The
/// distances are those of the f32 points actually evaluated.
pub fn along_gradient<E>(
    x: &[f32],
    g: &[f32],
    steps: &[f64],
    mut at: impl FnMut(&[f32]) -> Result<(f64, Vec<f32>), E>,
) -> Result<Smoothness, E> {
    let mut losses = Vec::with_capacity(steps.len());
    let mut changes = Vec::with_capacity(steps.len());
    let mut beta = 0.0f64;
    for &s in steps {
        let y: Vec<f32> = x
            .iter()
            .zip(g)
            .map(|(&x, &g)| (x as f64 - s * g as f64) as f32)
            .collect();
        let (loss, gy) = at(&y)?;
        let change = distance(g, &gy);
        let moved = distance(x, &y);
        if moved > 0.0 {
            beta = beta.max(change / moved);
        }
        losses.push(loss);
        changes.push(change);
    }
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        [lo, hi]
    };
    let [lo, hi] = range(&losses);
    Ok(Smoothness {
        steps: steps.to_vec(),
        loss_range: hi - lo,
        gradient_change_range: range(&changes),
        losses,
        gradient_changes: changes,
        beta,
    })
}

/// ‖a - b‖, accumulated in f64.
pub fn distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// cos(a, b), accumulated in f64 (GNC Fig. 3b–c: the full gradient's predictiveness).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&a, &b)| a as f64 * b as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Objective;
    use crate::analysis::quadratic::Quadratic;

    /// f(x) = ½ xᵀAx with A = diag(4, 1): along -g from x, the loss is a parabola in s and the
    /// gradient changes by s A g, so β = ‖Ag‖ / ‖g‖ at every step and the loss range is known.
    #[test]
    fn a_quadratic_has_its_known_indicators() {
        let q = Quadratic {
            a: vec![vec![4.0, 0.0], vec![0.0, 1.0]],
            c: vec![0.0, 0.0],
        };
        let x = [1.0f32, 2.0];
        let mut g = [0f32; 2];
        q.loss_and_gradient(&x, &mut g);
        assert_eq!(g, [4.0, 2.0]);
        let s = steps(0.1, 8);
        assert_eq!(s.len(), 8);
        assert!((s[0] - 0.05).abs() < 1e-15 && (s[7] - 0.2).abs() < 1e-15);
        let r = along_gradient(&x, &g, &s, |y| {
            let mut gy = vec![0f32; 2];
            let loss = q.loss_and_gradient(y, &mut gy);
            Ok::<_, ()>((loss, gy))
        })
        .unwrap();
        // ‖Ag‖/‖g‖ = ‖(16, 2)‖ / ‖(4, 2)‖.
        let beta = (16f64.powi(2) + 4.0).sqrt() / (16f64 + 4.0).sqrt();
        assert!((r.beta - beta).abs() < 1e-5, "{} vs {beta}", r.beta);
        // f(x - s g) = ½ (4 (1 - 4s)² + (2 - 2s)²).
        let f = |s: f64| 0.5 * (4.0 * (1.0 - 4.0 * s).powi(2) + (2.0 - 2.0 * s).powi(2));
        for (&si, &loss) in s.iter().zip(&r.losses) {
            assert!((loss - f(si)).abs() < 1e-5);
        }
        let lo = s.iter().map(|&s| f(s)).fold(f64::INFINITY, f64::min);
        let hi = s.iter().map(|&s| f(s)).fold(f64::NEG_INFINITY, f64::max);
        assert!((r.loss_range - (hi - lo)).abs() < 1e-5);
        // The gradient change grows with s: ‖s A g‖.
        assert!((r.gradient_change_range[0] - 0.05 * (16f64.powi(2) + 4.0).sqrt()).abs() < 1e-5);
        assert!((r.gradient_change_range[1] - 0.2 * (16f64.powi(2) + 4.0).sqrt()).abs() < 1e-5);
    }

    #[test]
    fn cosine_of_known_vectors() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - 0.5f64.sqrt()).abs() < 1e-12);
        assert!((cosine(&[1.0, 2.0], &[-2.0, -4.0]) + 1.0).abs() < 1e-12);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 3.0]), 0.0);
    }
}
