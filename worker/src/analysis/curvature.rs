//! The largest eigenvalue of the Hessian at a point, by power iteration.

use super::{Objective, dot, norm, uniform};

/// What the power iteration found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TopEigenvalue {
    /// The Rayleigh quotient vᵀHv of the last iterate (unit v).
    pub value: f64,
    /// The quotient after each iteration.
    pub history: Vec<f64>,
    /// ‖Hv - λv‖ / ‖Hv‖ at the last iterate: near 0 once v is an eigenvector.
    pub residual: f64,
    /// The largest ‖Hv‖ of the first third of the products: an estimate (from below) of the
    /// largest eigenvalue magnitude, by which H was shifted.
    pub spectral_radius: f64,
    /// The finite-difference step h (in parameter space).
    pub step: f64,
}

/// Hv ≈ (∇f(x + hv) - ∇f(x - hv)) / 2h: exact for a quadratic, error O(h²) otherwise.
pub fn hessian_vector(obj: &dyn Objective, x: &[f32], v: &[f64], h: f64) -> Vec<f64> {
    let n = obj.dim();
    let shifted = |sign: f64| -> Vec<f32> {
        x.iter()
            .zip(v)
            .map(|(&x, v)| (x as f64 + sign * h * v) as f32)
            .collect()
    };
    let (mut plus, mut minus) = (vec![0f32; n], vec![0f32; n]);
    obj.loss_and_gradient(&shifted(1.0), &mut plus);
    obj.loss_and_gradient(&shifted(-1.0), &mut minus);
    plus.iter()
        .zip(&minus)
        .map(|(p, m)| (*p as f64 - *m as f64) / (2.0 * h))
        .collect()
}

/// The largest (most positive) eigenvalue, from a fixed pseudo-random start (`seed`), with at
/// most `iterations` Hessian-vector products in all. Plain power iteration finds the
/// eigenvalue of largest *magnitude*, which away from a minimum may be negative, and which
/// oscillates where +λ and -λ are both eigenvalues. So a third of the products estimate the
/// spectral radius ρ (the largest ‖Hv‖ seen), and the rest iterate on H + ρI, whose
/// eigenvalues are λ + ρ ≥ 0, largest for the largest λ; each step's estimate is the
/// Rayleigh quotient vᵀHv. Stops once it changes by less than `tolerance` (relative).
pub fn top_eigenvalue(
    obj: &dyn Objective,
    x: &[f32],
    iterations: usize,
    tolerance: f64,
    h: f64,
    seed: u64,
) -> TopEigenvalue {
    let unit = |v: Vec<f64>| {
        let length = norm(&v);
        if length > 0.0 {
            v.iter().map(|x| x / length).collect()
        } else {
            v
        }
    };
    let start = unit(uniform(obj.dim(), seed));
    let mut v = start.clone();
    let mut radius: f64 = 0.0;
    let estimating = iterations.div_ceil(3);
    for _ in 0..estimating {
        let hv = hessian_vector(obj, x, &v, h);
        radius = radius.max(norm(&hv));
        v = unit(hv);
    }
    // From the start again: the first pass's v may have lost every other direction.
    v = start;
    let mut history = Vec::with_capacity(iterations);
    let mut residual = f64::NAN;
    for _ in estimating..iterations {
        let hv = hessian_vector(obj, x, &v, h);
        let lambda = dot(&v, &hv);
        residual = hv
            .iter()
            .zip(&v)
            .map(|(w, v)| (w - lambda * v).powi(2))
            .sum::<f64>()
            .sqrt()
            / norm(&hv).max(f64::MIN_POSITIVE);
        let converged = history
            .last()
            .is_some_and(|&last: &f64| (lambda - last).abs() <= tolerance * lambda.abs());
        history.push(lambda);
        if converged {
            break;
        }
        v = unit(hv.iter().zip(&v).map(|(w, v)| w + radius * v).collect());
    }
    TopEigenvalue {
        value: history.last().copied().unwrap_or(f64::NAN),
        history,
        residual,
        spectral_radius: radius,
        step: h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::quadratic::Quadratic;

    /// A symmetric matrix with eigenvalues 5, 2, 1 and -0.5 (Q diag Qᵀ, Q a rotation).
    fn known() -> Quadratic {
        let eig = [5.0, 2.0, 1.0, -0.5];
        let (c, s) = (0.6f64, 0.8f64);
        // Q: rotations in the (0,1) and (2,3) planes, then a swap mixing the pairs.
        let q = [
            [c, -s, 0.0, 0.0],
            [s, c, 0.0, 0.0],
            [0.0, 0.0, c, s],
            [0.0, 0.0, -s, c],
        ];
        let mix = |v: [f64; 4]| {
            [
                (v[0] + v[2]) / 2f64.sqrt(),
                v[1],
                (v[0] - v[2]) / 2f64.sqrt(),
                v[3],
            ]
        };
        let cols: Vec<[f64; 4]> = (0..4)
            .map(|j| mix([q[0][j], q[1][j], q[2][j], q[3][j]]))
            .collect();
        let a = (0..4)
            .map(|i| {
                (0..4)
                    .map(|j| (0..4).map(|k| cols[k][i] * eig[k] * cols[k][j]).sum())
                    .collect()
            })
            .collect();
        Quadratic {
            a,
            c: vec![0.3, -1.0, 2.0, 0.5],
        }
    }

    #[test]
    fn power_iteration_finds_the_largest_eigenvalue_of_a_known_quadratic() {
        let f = known();
        let x: Vec<f32> = vec![1.0, 0.0, -1.0, 2.0];
        let top = top_eigenvalue(&f, &x, 200, 1e-10, 1e-2, 7);
        assert!((top.value - 5.0).abs() < 1e-4, "{top:?}");
        assert!(top.residual < 1e-2, "{top:?}");
        assert!(
            top.history.len() < 200,
            "converged early: {}",
            top.history.len()
        );
        // The same start gives the same answer, bit for bit.
        assert_eq!(top, top_eigenvalue(&f, &x, 200, 1e-10, 1e-2, 7));
    }

    #[test]
    fn the_most_positive_eigenvalue_is_found_where_a_negative_one_is_larger_or_as_large() {
        let diagonal = |d: &[f64]| Quadratic {
            a: (0..d.len())
                .map(|i| {
                    (0..d.len())
                        .map(|j| if i == j { d[i] } else { 0.0 })
                        .collect()
                })
                .collect(),
            c: vec![0.0; d.len()],
        };
        for (eigenvalues, top) in [(vec![2.0, -5.0, 0.5], 2.0), (vec![3.0, -3.0, 1.0], 3.0)] {
            let f = diagonal(&eigenvalues);
            let found = top_eigenvalue(&f, &[0.0; 3], 300, 1e-9, 1e-2, 11);
            assert!(
                (found.value - top).abs() < 1e-3,
                "{eigenvalues:?}: {found:?}"
            );
            let magnitude = eigenvalues.iter().fold(0f64, |m, e| m.max(e.abs()));
            assert!(found.spectral_radius <= magnitude + 1e-6, "{found:?}");
        }
    }

    #[test]
    fn a_hessian_vector_product_of_a_quadratic_is_the_matrix_times_the_vector() {
        let f = known();
        let v = [0.5, -0.25, 1.0, 0.0];
        let hv = hessian_vector(&f, &[0.0; 4], &v, 1e-2);
        for (i, row) in f.a.iter().enumerate() {
            let expected: f64 = row.iter().zip(&v).map(|(a, v)| a * v).sum();
            assert!(
                (hv[i] - expected).abs() < 1e-4,
                "{i}: {} vs {expected}",
                hv[i]
            );
        }
    }
}
