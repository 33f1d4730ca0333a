//! gnc's portable linear layers against libtorch's: the same function (to float32 rounding)
//! and the same gradients through a graph cut at every layer, including a hidden layer's
//! input gradient and two passes over the same weights (noise enhancement's objective).

use gnc_worker::kernels::fingerprint::det;
use gnc_worker::kernels::linear::{Tape, forward, gradients, gradients_and_norms};
use gnc_worker::tree::Part;
use tch::{Kind, Tensor};

/// A 3-layer ReLU network's objective over `passes` batches (two: 0.7·L(x1) + 0.3·L(x2)), its
/// 6 parameters, and the portable layers' tape.
fn network(portable: bool, passes: usize) -> (Tensor, Vec<Tensor>, Tape) {
    let params: Vec<Tensor> = [
        det(&[40, 30], 1, 0.4),
        det(&[40], 2, 0.1),
        det(&[24, 40], 3, 0.4),
        det(&[24], 4, 0.1),
        det(&[10, 24], 5, 0.4),
        det(&[10], 6, 0.1),
    ]
    .into_iter()
    .map(|t| t.set_requires_grad(true))
    .collect();
    let mut tape = Tape::default();
    let mut loss = |x: &Tensor, y: &Tensor| {
        let mut h = x.shallow_clone();
        for l in 0..3 {
            let (w, b) = (&params[2 * l], &params[2 * l + 1]);
            h = if portable {
                forward(&h, w, b, (2 * l, 2 * l + 1), Some(&mut tape))
            } else {
                h.linear(w, Some(b))
            };
            if l < 2 {
                h = h.relu();
            }
        }
        h.log_softmax(-1, Kind::Float).nll_loss(y)
    };
    let labels =
        |salt: i64| Tensor::from_slice(&(0..16).map(|i| (i * salt) % 10).collect::<Vec<i64>>());
    let l1 = loss(&det(&[16, 30], 7, 2.0), &labels(3));
    let objective = match passes {
        1 => l1,
        2 => l1 * 0.7 + loss(&det(&[16, 30], 8, 2.0), &labels(7)) * 0.3,
        _ => unreachable!("one or two passes"),
    };
    (objective, params, tape)
}

/// The gradients of the two-pass objective with respect to the 6 parameters.
fn grads(portable: bool) -> Vec<Tensor> {
    let (objective, params, tape) = network(portable, 2);
    if portable {
        gradients(&objective, &params, tape)
    } else {
        Tensor::run_backward(&[objective], &params, false, false)
    }
}

#[test]
fn portable_gradients_equal_libtorch_ones_to_rounding() {
    let (ours, theirs) = (grads(true), grads(false));
    for (k, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a.size(), b.size(), "parameter {k}");
        let scale = b.abs().max().double_value(&[]);
        let err = (a - b).abs().max().double_value(&[]);
        assert!(scale > 1e-3, "parameter {k} has a trivial gradient");
        assert!(
            err <= 1e-5 * scale,
            "parameter {k}: max error {err} at scale {scale}"
        );
    }
}

#[test]
fn a_layer_whose_output_is_unused_gets_zero_gradients() {
    let w = det(&[5, 4], 1, 1.0).set_requires_grad(true);
    let b = det(&[5], 2, 1.0).set_requires_grad(true);
    let c = det(&[3], 3, 1.0).set_requires_grad(true);
    let mut tape = Tape::default();
    let _unused = forward(&det(&[2, 4], 4, 1.0), &w, &b, (0, 1), Some(&mut tape));
    let objective = (&c * &c).sum(Kind::Float);
    let g = gradients(&objective, &[w, b, c.shallow_clone()], tape);
    assert_eq!(g[0].abs().max().double_value(&[]), 0.0);
    assert_eq!(g[1].abs().max().double_value(&[]), 0.0);
    assert!(g[2].allclose(&(&c * 2.0), 0.0, 0.0, false));
}

/// A weight gradient used by one layer keeps its product's values and has its norm taken right
/// after the product; one used by two passes is summed as a tensor. Either way the norms are
/// libtorch's of the final gradients, bit for bit (each run records them in its noise norm).
#[test]
fn norms_taken_while_in_cache_are_libtorchs_norms_of_the_final_gradients() {
    for passes in [1, 2] {
        let (objective, params, tape) = network(true, passes);
        let (parts, norms) = gradients_and_norms(&objective, &params, tape);
        let as_values = parts
            .iter()
            .filter(|p| matches!(p, Part::Values(..)))
            .count();
        assert_eq!(as_values, [3, 0][passes - 1], "{passes} passes");
        for (k, (part, norm)) in parts.into_iter().zip(norms).enumerate() {
            let reference = part.into_tensor().norm();
            assert_eq!(
                norm.double_value(&[]).to_bits(),
                reference.double_value(&[]).to_bits(),
                "{passes} passes, parameter {k}"
            );
        }
    }
}
