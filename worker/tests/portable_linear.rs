//! gnc's portable linear layers against libtorch's: the same function (to float32 rounding)
//! and the same gradients through a graph cut at every layer, including a hidden layer's
//! input gradient and two passes over the same weights (noise enhancement's objective); and
//! the layers' own ReLU, with libtorch's ReLU's bits.

use gnc_worker::kernels::fingerprint::det;
use gnc_worker::kernels::linear::{Activation, Tape, forward, gradients, gradients_and_norms};
use gnc_worker::tree::Part;
use tch::{Kind, Tensor};

/// How a network's layers are computed.
#[derive(Clone, Copy, PartialEq)]
enum Layers {
    Libtorch,
    /// gnc's products, libtorch's ReLU between them (autograd between every two layers).
    Portable,
    /// gnc's products with their own ReLU (no libtorch between layers).
    PortableFused,
}

/// An MLP's parameters for layer widths `widths` (input first), each requiring grad: per layer
/// a weight `[out, in]` of values up to `scale` and a bias of values up to 0.1, salted from
/// `salt` on in canonical order.
fn mlp_params(widths: &[i64], salt: u64, scale: f64) -> Vec<Tensor> {
    widths
        .windows(2)
        .zip((salt..).step_by(2))
        .flat_map(|(w, s)| [det(&[w[1], w[0]], s, scale), det(&[w[1]], s + 1, 0.1)])
        .map(|t| t.set_requires_grad(true))
        .collect()
}

/// A 3-layer ReLU network's objective over `passes` batches (two: 0.7·L(x1) + 0.3·L(x2)), its
/// 6 parameters, and the portable layers' tape.
fn network(layers: Layers, passes: usize) -> (Tensor, Vec<Tensor>, Tape) {
    let params = mlp_params(&[30, 40, 24, 10], 1, 0.4);
    let mut tape = Tape::default();
    let mut loss = |x: &Tensor, y: &Tensor| {
        let mut h = x.shallow_clone();
        for l in 0..3 {
            let (w, b) = (&params[2 * l], &params[2 * l + 1]);
            let params = (2 * l, 2 * l + 1);
            let relu = l < 2;
            h = match layers {
                Layers::Libtorch => h.linear(w, Some(b)),
                Layers::Portable => {
                    forward(&h, w, b, Activation::Identity, params, Some(&mut tape))
                }
                Layers::PortableFused => {
                    let act = [Activation::Identity, Activation::Relu][relu as usize];
                    forward(&h, w, b, act, params, Some(&mut tape))
                }
            };
            if relu && layers != Layers::PortableFused {
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
fn grads(layers: Layers) -> Vec<Tensor> {
    let (objective, params, tape) = network(layers, 2);
    match layers {
        Layers::Libtorch => Tensor::run_backward(&[objective], &params, false, false),
        _ => gradients(&objective, &params, tape),
    }
}

fn bits(t: &Tensor) -> Vec<u32> {
    Vec::<f32>::try_from(t.flatten(0, -1))
        .expect("f32 values")
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

#[test]
fn portable_gradients_equal_libtorch_ones_to_rounding() {
    let (ours, theirs) = (grads(Layers::Portable), grads(Layers::Libtorch));
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
    let h = det(&[2, 4], 4, 1.0);
    let _unused = forward(&h, &w, &b, Activation::Identity, (0, 1), Some(&mut tape));
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
        let (objective, params, tape) = network(Layers::PortableFused, passes);
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

/// The layers' own ReLU, with ∂h handed from layer to layer, gives the bits of libtorch's ReLU
/// between the layers and autograd through it: the objective and every gradient, with one
/// pass and two (whose second pass starts a new chain of layers).
#[test]
fn fused_relu_layers_give_the_bits_of_libtorchs_relu_between_them() {
    for passes in [1, 2] {
        let (ob_fused, params_fused, tape_fused) = network(Layers::PortableFused, passes);
        let (ob, params, tape) = network(Layers::Portable, passes);
        assert_eq!(bits(&ob_fused), bits(&ob), "{passes} passes: objective");
        let fused = gradients(&ob_fused, &params_fused, tape_fused);
        let unfused = gradients(&ob, &params, tape);
        for (k, (a, b)) in fused.iter().zip(&unfused).enumerate() {
            assert_eq!(bits(a), bits(b), "{passes} passes, parameter {k}");
        }
    }
}

/// At the ReLU's edge cases: NaN passes with its payload and so does its gradient; negatives
/// (-∞ and denormals included) give +0.0 and a +0.0 gradient; zeros give a +0.0 gradient. The
/// weight is zero throughout, so each pre-activation is its bias. (A pre-activation is never
/// -0.0: each product's chain starts at +0.0, and +0.0 + -0.0 is +0.0.)
#[test]
fn fused_relu_has_libtorchs_bits_at_nans_negatives_and_zeros() {
    let b_values: Vec<f32> = vec![
        -0.0,
        0.0,
        f32::from_bits(0x7fc0_0123),
        f32::from_bits(0xffc0_0456),
        -1.5,
        2.5,
        f32::NEG_INFINITY,
        f32::INFINITY,
        -1e-40,
        1e-40,
    ];
    let outputs = b_values.len() as i64;
    let run = |fused: bool| {
        let w = Tensor::full([outputs, 3], -0.0, (Kind::Float, tch::Device::Cpu))
            .set_requires_grad(true);
        let b = Tensor::from_slice(&b_values).set_requires_grad(true);
        let h = det(&[4, 3], 1, 1.0).abs().set_requires_grad(true);
        let mut tape = Tape::default();
        let act = [Activation::Identity, Activation::Relu][fused as usize];
        let mut y = forward(&h, &w, &b, act, (0, 1), Some(&mut tape));
        if !fused {
            y = y.relu();
        }
        let seed = det(&[4, outputs], 2, 3.0);
        let objective = (&y * &seed).sum(Kind::Float);
        let g = gradients(&objective, &[w, b], tape);
        (bits(&y), bits(&g[0]), bits(&g[1]))
    };
    let (fused, unfused) = (run(true), run(false));
    assert_eq!(fused.0, unfused.0, "outputs");
    assert_eq!(fused.1, unfused.1, "weight gradient");
    assert_eq!(fused.2, unfused.2, "bias gradient");
    // The cases are there: NaN payloads in the output, whose gradients pass; zero gradients
    // where the output is zero.
    assert_eq!(fused.0[2], 0x7fc0_0123);
    assert_eq!(fused.0[3], 0xffc0_0456);
    assert!(f32::from_bits(fused.2[2]).abs() > 0.0);
    assert_eq!(fused.2[0], 0.0f32.to_bits());
    assert_eq!(fused.2[4], 0.0f32.to_bits());
}

/// The hand-off where it meets other gradients: a ReLU layer's output also read by the
/// objective directly (a second reader, whose gradient autograd brings first), and two layers
/// with no activation between them. Against the same layers with every hand-off and fusion
/// prevented (libtorch's ReLU, each layer's input a view, which is not the output leaf): the
/// objective and every gradient bit for bit. (That reference crosses the one ReLU node from two
/// segments, the objective's and the second layer's: the sweep must keep the graph.)
#[test]
fn handed_on_gradients_sum_with_other_readers_to_the_same_bits() {
    let run = |fused: bool| {
        let params = mlp_params(&[12, 20, 16, 10], 11, 0.5);
        let mut tape = Tape::default();
        let x = det(&[8, 12], 17, 2.0);
        let layer = |h: &Tensor, l: usize, act, tape: &mut Tape| {
            let (w, b) = (&params[2 * l], &params[2 * l + 1]);
            forward(h, w, b, act, (2 * l, 2 * l + 1), Some(tape))
        };
        let (y1, y3) = if fused {
            let y1 = layer(&x, 0, Activation::Relu, &mut tape);
            let y2 = layer(&y1, 1, Activation::Identity, &mut tape);
            (
                y1.shallow_clone(),
                layer(&y2, 2, Activation::Identity, &mut tape),
            )
        } else {
            let y1 = layer(&x, 0, Activation::Identity, &mut tape).relu();
            let y2 = layer(&y1.view([8, 20]), 1, Activation::Identity, &mut tape);
            let y3 = layer(&y2.view([8, 16]), 2, Activation::Identity, &mut tape);
            (y1, y3)
        };
        let labels = Tensor::from_slice(&(0..8).map(|i| (i * 3) % 10).collect::<Vec<i64>>());
        let objective = y3.log_softmax(-1, Kind::Float).nll_loss(&labels)
            + (&y1 * det(&[8, 20], 18, 1.0)).sum(Kind::Float) * 0.5;
        let g = gradients(&objective, &params, tape);
        (bits(&objective), g.iter().map(bits).collect::<Vec<_>>())
    };
    let (fused, plain) = (run(true), run(false));
    assert_eq!(fused.0, plain.0, "objective");
    for (k, (a, b)) in fused.1.iter().zip(&plain.1).enumerate() {
        assert_eq!(a, b, "parameter {k}");
    }
}
