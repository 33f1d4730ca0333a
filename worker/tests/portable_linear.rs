//! gnc's portable linear layers against libtorch's: the same function (to float32 rounding)
//! and the same gradients through a graph cut at every layer, including a hidden layer's
//! input gradient and two passes over the same weights (noise enhancement's objective).

use gnc_worker::kernels::fingerprint::det;
use gnc_worker::kernels::linear::{Tape, forward, gradients};
use tch::{Kind, Tensor};

/// A 3-layer ReLU network on two batches, objective 0.7·L(x1) + 0.3·L(x2); its gradients
/// with respect to the 6 parameters.
fn grads(portable: bool) -> Vec<Tensor> {
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
    let l2 = loss(&det(&[16, 30], 8, 2.0), &labels(7));
    let objective = l1 * 0.7 + l2 * 0.3;
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
