//! The loss on the line through two points (Keskar et al.'s Fig. 3: from a small-batch to a
//! large-batch minimiser and beyond).

use gnc_proto::LinePoint;

use super::Objective;

/// f((1 - α) from + α to) for each α: α = 0 is `from`, α = 1 is `to`.
pub fn losses_along(
    obj: &dyn Objective,
    from: &[f32],
    to: &[f32],
    alphas: &[f64],
) -> Vec<LinePoint> {
    alphas
        .iter()
        .map(|&alpha| {
            let point: Vec<f32> = from
                .iter()
                .zip(to)
                .map(|(&a, &b)| ((1.0 - alpha) * a as f64 + alpha * b as f64) as f32)
                .collect();
            LinePoint {
                alpha,
                loss: obj.loss(&point),
            }
        })
        .collect()
}

/// `n + 1` evenly spaced α from `lo` to `hi`.
pub fn alphas(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    (0..=n)
        .map(|i| lo + (hi - lo) * i as f64 / n.max(1) as f64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::quadratic::Quadratic;

    #[test]
    fn the_line_through_a_quadratic_is_the_parabola_it_should_be() {
        let f = Quadratic {
            a: vec![vec![2.0, 0.0], vec![0.0, 8.0]],
            c: vec![0.0, 0.0],
        };
        let (from, to) = ([1.0f32, 0.0], [0.0f32, 1.0]);
        let line = losses_along(&f, &from, &to, &alphas(-1.0, 2.0, 6));
        assert_eq!(line.len(), 7);
        for p in &line {
            // x = (1 - α, α): f = (1 - α)² + 4α².
            let expected = (1.0 - p.alpha).powi(2) + 4.0 * p.alpha.powi(2);
            assert!((p.loss - expected).abs() < 1e-5, "{p:?}");
        }
        assert_eq!(line[2].alpha, 0.0);
        assert_eq!(line[2].loss, f.loss(&from));
    }
}
