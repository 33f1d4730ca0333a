//! The gradient noise scale B_simple = tr(Σ) / |G|² (McCandlish et al. 2018, "An Empirical
//! Model of Large-Batch Training", §2.2 and App. A), from what every iteration already
//! reduces: the M workers' gradients g_i, each the mean over b examples, give
//! S = (1/M) Σ |g_i|² and L = |g̃|² with g̃ = (1/M) Σ g_i. Unbiased estimates:
//!
//! - |G|² ≈ (M L - S) / (M - 1) (= the mean of g_i · g_j over pairs i ≠ j);
//! - tr(Σ) ≈ b M (S - L) / (M - 1) (= b × the sample variance of the g_i; Σ is the
//!   per-example covariance).
//!
//! Each is noisy on one iteration; their ratio is taken over a window of iterations (the
//! sums of each, then the ratio), as the paper does. With GNC or RNC each g_i is taken at the
//! worker's perturbed weights, so the estimate includes the perturbation's effect.

/// (|G|² estimate, tr(Σ) estimate) from S, L, the small batch b and M; `None` for M = 1.
pub fn estimates(mean_sq: f64, total_sq: f64, b: usize, m: usize) -> Option<(f64, f64)> {
    if m < 2 {
        return None;
    }
    let m = m as f64;
    let grad_sq = (m * total_sq - mean_sq) / (m - 1.0);
    let trace = b as f64 * m * (mean_sq - total_sq) / (m - 1.0);
    Some((grad_sq, trace))
}

/// B_simple over a window: Σ tr(Σ) / Σ |G|² (`None` where the |G|² sum is not positive).
pub fn b_simple(window: impl IntoIterator<Item = (f64, f64)>) -> Option<f64> {
    let (g, t) = window
        .into_iter()
        .fold((0.0, 0.0), |(g, t), (gi, ti)| (g + gi, t + ti));
    (g > 0.0).then(|| t / g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimates_are_the_pairwise_and_sample_variance_formulas() {
        // Four workers' gradients in 3 dimensions.
        let g = [
            [1.0, 2.0, -1.0],
            [0.5, 1.0, 0.0],
            [2.0, 2.5, -0.5],
            [1.5, 0.5, -1.5],
        ];
        let (m, b) = (g.len(), 8);
        let dot = |a: &[f64; 3], c: &[f64; 3]| a.iter().zip(c).map(|(x, y)| x * y).sum::<f64>();
        let mean: [f64; 3] =
            std::array::from_fn(|k| g.iter().map(|v| v[k]).sum::<f64>() / m as f64);
        let s = g.iter().map(|v| dot(v, v)).sum::<f64>() / m as f64;
        let l = dot(&mean, &mean);
        let (grad_sq, trace) = estimates(s, l, b, m).unwrap();
        let mut pairs = 0.0;
        for i in 0..m {
            for j in 0..m {
                if i != j {
                    pairs += dot(&g[i], &g[j]);
                }
            }
        }
        assert!((grad_sq - pairs / (m * (m - 1)) as f64).abs() < 1e-12);
        let variance: f64 = g
            .iter()
            .map(|v| (0..3).map(|k| (v[k] - mean[k]).powi(2)).sum::<f64>())
            .sum::<f64>()
            / (m - 1) as f64;
        assert!((trace - b as f64 * variance).abs() < 1e-12);
        assert_eq!(estimates(s, l, b, 1), None);
        assert_eq!(b_simple([(2.0, 10.0), (2.0, 30.0)]), Some(10.0));
        assert_eq!(b_simple([(-1.0, 10.0)]), None);
    }
}
