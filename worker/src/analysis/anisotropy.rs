//! Anisotropy of the noise the workers inject (GNC §3.2, Fig. 4a): for one layer, with the M
//! workers' noise vectors ω_i and their mean ω̄, Ω = [ω_1 - ω̄, …, ω_M - ω̄] and
//! Σ = (1/M) Ω Ωᵀ; the condition number κ = λ_max(Σ) / λ_min*(Σ), λ_min* the second-smallest
//! eigenvalue (Ω has rank at most M - 1, so the smallest is 0; in general the smallest
//! numerically nonzero one, as a layer of l < M values has fewer). Σ is l × l with l ≫ M, so its
//! nonzero eigenvalues are taken from the M × M Gram matrix (1/M) ΩᵀΩ, which has the same.
//! A large κ is noise concentrated in few directions; isotropic noise has κ near 1.

/// Eigenvalues at most this fraction of the largest count as zero (the noise is f32).
pub const RANK_TOLERANCE: f64 = 1e-6;

pub use gnc_proto::LayerAnisotropy;

/// (1/M) ΩᵀΩ for the M columns `noise` (each a worker's ω for one layer), centred on their
/// mean; accumulated in f64. The centred columns are formed on the fly, pair by pair, rather
/// than kept: M f64 copies of a large layer would be gigabytes at M = 256.
pub fn gram(noise: &[&[f32]]) -> Vec<Vec<f64>> {
    let m = noise.len();
    let l = noise.first().map_or(0, |c| c.len());
    let mean: Vec<f64> = (0..l)
        .map(|j| noise.iter().map(|c| c[j] as f64).sum::<f64>() / m as f64)
        .collect();
    let mut g = vec![vec![0.0; m]; m];
    for i in 0..m {
        for j in i..m {
            let d: f64 = noise[i]
                .iter()
                .zip(noise[j])
                .zip(&mean)
                .map(|((&a, &b), mu)| (a as f64 - mu) * (b as f64 - mu))
                .sum();
            g[i][j] = d / m as f64;
            g[j][i] = d / m as f64;
        }
    }
    g
}

/// The eigenvalues of a symmetric matrix, ascending (cyclic Jacobi rotations until the
/// off-diagonal part is negligible: exact to rounding, fine for the M × M of a job).
pub fn symmetric_eigenvalues(mut a: Vec<Vec<f64>>) -> Vec<f64> {
    let n = a.len();
    let off = |a: &Vec<Vec<f64>>| -> f64 {
        (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum()
    };
    let scale: f64 = a
        .iter()
        .flatten()
        .map(|x| x * x)
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        if off(&a) <= 1e-30 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q] == 0.0 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                // The smaller root of t² + 2θt - 1 = 0: the rotation of at most 45°.
                let sign = if theta >= 0.0 { 1.0 } else { -1.0 };
                let t = sign / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // A ← Jᵀ A J: columns p and q, then rows p and q.
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                let (row_p, row_q) = (a[p].clone(), a[q].clone());
                for (k, (apk, aqk)) in row_p.into_iter().zip(row_q).enumerate() {
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
            }
        }
    }
    let mut eigenvalues: Vec<f64> = (0..n).map(|i| a[i][i]).collect();
    eigenvalues.sort_by(f64::total_cmp);
    eigenvalues
}

/// κ and the spectrum of one layer's noise (`noise`: one slice per worker, M ≥ 3).
pub fn layer(name: &str, noise: &[&[f32]]) -> LayerAnisotropy {
    let eigenvalues = symmetric_eigenvalues(gram(noise));
    // Ω has rank at most min(l, M - 1), less where the noise has structure (a softmax
    // layer's bias gradients sum to zero); the other eigenvalues are zeros up to rounding of
    // the f32 noise. The paper's λ_min* (the second-smallest, for l ≥ M of full rank) is the
    // smallest of the numerically nonzero ones.
    let largest = eigenvalues.last().copied().unwrap_or(0.0);
    let first = eigenvalues.partition_point(|&e| e <= RANK_TOLERANCE * largest);
    let nonzero = &eigenvalues[first..];
    let lambda_max = nonzero.last().copied().unwrap_or(f64::NAN);
    let lambda_min_star = nonzero.first().copied().unwrap_or(f64::NAN);
    let at = |p: f64| {
        let rank = ((p * nonzero.len() as f64).ceil() as usize).clamp(1, nonzero.len().max(1));
        nonzero.get(rank - 1).copied().unwrap_or(f64::NAN)
    };
    LayerAnisotropy {
        layer: name.to_string(),
        kappa: lambda_max / lambda_min_star,
        lambda_max,
        lambda_min_star,
        rank: nonzero.len(),
        percentiles: [at(0.1), at(0.5), at(0.9)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_finds_the_eigenvalues_of_a_known_symmetric_matrix() {
        // Q diag(1, 4, 9) Qᵀ with Q a rotation about the z axis by 30° then about x by 45°.
        let (c1, s1) = (3f64.sqrt() / 2.0, 0.5);
        let (c2, s2) = (2f64.sqrt() / 2.0, 2f64.sqrt() / 2.0);
        let rz = [[c1, -s1, 0.0], [s1, c1, 0.0], [0.0, 0.0, 1.0]];
        let rx = [[1.0, 0.0, 0.0], [0.0, c2, -s2], [0.0, s2, c2]];
        let q: Vec<Vec<f64>> = (0..3)
            .map(|i| {
                (0..3)
                    .map(|j| (0..3).map(|k| rx[i][k] * rz[k][j]).sum())
                    .collect()
            })
            .collect();
        let d = [1.0, 4.0, 9.0];
        let a: Vec<Vec<f64>> = (0..3)
            .map(|i| {
                (0..3)
                    .map(|j| (0..3).map(|k| q[i][k] * d[k] * q[j][k]).sum())
                    .collect()
            })
            .collect();
        let found = symmetric_eigenvalues(a);
        for (f, e) in found.iter().zip(d) {
            assert!((f - e).abs() < 1e-10, "{found:?}");
        }
    }

    #[test]
    fn kappa_of_constructed_noise_is_the_ratio_of_its_spread() {
        // Four workers: ω_i = mean + a·e1·s_i + b·e2·t_i with Σ s_i = Σ t_i = 0 and s ⟂ t, so
        // Σ has eigenvalues a²|s|²/M and b²|t|²/M (and zeros).
        let (a, b) = (3.0f32, 0.5f32);
        let s = [1.0f32, -1.0, 1.0, -1.0];
        let t = [1.0f32, 1.0, -1.0, -1.0];
        let noise: Vec<Vec<f32>> = (0..4)
            .map(|i| vec![7.0 + a * s[i], -2.0 + b * t[i], 0.25])
            .collect();
        let views: Vec<&[f32]> = noise.iter().map(Vec::as_slice).collect();
        let found = layer("w", &views);
        let (big, small) = ((a * a) as f64 * 4.0 / 4.0, (b * b) as f64 * 4.0 / 4.0);
        // The Gram matrix has rank 2: eigenvalues 0, 0, small, big.
        assert_eq!(found.rank, 2, "{found:?}");
        assert!((found.lambda_max - big).abs() < 1e-9, "{found:?}");
        assert!((found.lambda_min_star - small).abs() < 1e-9, "{found:?}");
        assert!(
            (found.kappa - big / small).abs() < 1e-9 * found.kappa,
            "{found:?}"
        );
        assert!((found.percentiles[2] - big).abs() < 1e-9, "{found:?}");
        // Three workers spanning two directions: κ = big / small exactly.
        let three: Vec<Vec<f32>> = vec![vec![1.0, 0.0], vec![-1.0, 0.5], vec![0.0, -0.5]];
        let views: Vec<&[f32]> = three.iter().map(Vec::as_slice).collect();
        let found = layer("w", &views);
        let eig = symmetric_eigenvalues(gram(&views));
        assert!(eig[0].abs() < 1e-12);
        assert!(
            (found.kappa - eig[2] / eig[1]).abs() < 1e-9 * found.kappa,
            "{found:?}"
        );
        // Isotropic noise: equal spread in orthogonal centred directions gives κ = 1.
        let iso: Vec<Vec<f32>> = vec![
            vec![1.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![0.0, 0.0, 1.0],
        ];
        let views: Vec<&[f32]> = iso.iter().map(Vec::as_slice).collect();
        assert!((layer("w", &views).kappa - 1.0).abs() < 1e-9);
        // A layer of one value (l = 1) over four workers: one eigenvalue is nonzero, so κ = 1,
        // not a ratio to a rounding error.
        let bias: Vec<Vec<f32>> = vec![vec![1.0], vec![-2.0], vec![0.5], vec![0.25]];
        let views: Vec<&[f32]> = bias.iter().map(Vec::as_slice).collect();
        let found = layer("b", &views);
        assert_eq!(found.kappa, 1.0, "{found:?}");
    }
}
