//! The kernel fingerprint: SHA-256 prefixes of the results of every kernel gnc's training
//! arithmetic uses, on inputs made from integer arithmetic alone (the same on every machine).
//! Two machines that print the same hashes for a kernel compute it bit for bit alike, so a
//! machine whose kernels differ is told which one, not only that a final hash moved.
//!
//! The libtorch kernels are computed exactly as `../shared/repro/kernel_fingerprint.py`
//! computes them, so their hashes compare with that script's output on other machines. The
//! linear layers and square roots are gnc's own at the portable level (`kernels`), and are
//! named `gnc …`.

use gnc_proto::repro::Level;
use sha2::{Digest, Sha256};
use tch::{Kind, Reduction, Tensor};

use super::linear;

/// One kernel's name and the hashes of its results (output, then gradients).
pub type Entry = (String, Vec<String>);

/// The portable level's fingerprint on the reference machines, kernel by kernel. The libtorch
/// kernels' values are those of the Intel Xeon (family 6, model 207) file in
/// `../shared/repro/` for `MKL_CBWR=AVX2,STRICT`, which AMD EPYC (family 25, model 1) machines
/// also compute; gnc's kernels are defined by their source (fma chains, IEEE square roots).
pub const PORTABLE_REFERENCE: &[(&str, &[&str])] = &[
    (
        "gnc linear 32x784->500 fwd,dx,dw,db",
        &[
            "306db544dd911d18",
            "c748f077d77fef05",
            "f6bd77701d729bfc",
            "1e2ab4fe80c9b045",
        ],
    ),
    (
        "conv2d 3x3 16->32 fwd,dx,dk",
        &["f7fa030629b7edf7", "e08a1c4c1a64a8ff", "dfadfb30f71699d5"],
    ),
    (
        "batch_norm train fwd,dx,dg,db",
        &[
            "01fe85323408ca69",
            "97141a524fa8c9f5",
            "7d685103188a0c2a",
            "72f441f0e17e7133",
        ],
    ),
    (
        "max_pool2d fwd,dx",
        &["d3126afc4e6d0c99", "6a56a80734a6b1fd"],
    ),
    (
        "cross_entropy fwd,dx",
        &["6b397d0c878a669d", "d73c8fcd5c5afa39"],
    ),
    ("gnc sqrt|x|", &["bfd437e4900d9a74"]),
    ("relu", &["67112290c9421b8f"]),
    ("sum", &["4fd7e6314666c7be"]),
    ("norm", &["eff0546b1eaa2463"]),
    ("mean", &["e9162293db6d2c4d"]),
];

/// A float32 tensor from a multiplicative hash of the element index: no libm, no RNG.
pub fn det(shape: &[i64], salt: u64, scale: f64) -> Tensor {
    let n: i64 = shape.iter().product();
    let v: Vec<f32> = (0..n as u64)
        .map(|i| {
            let h = (i + salt * 1_000_003).wrapping_mul(2_654_435_761) % (1 << 32);
            ((h as f64 / 4_294_967_296.0 - 0.5) * scale) as f32
        })
        .collect();
    Tensor::from_slice(&v).view(shape)
}

fn fp(t: &Tensor) -> String {
    let v = super::buffers::values(&t.detach());
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    hex::encode(Sha256::digest(&bytes))[..16].to_string()
}

/// Output and input gradients of `f` at `xs`, the output's gradient seeded like the script's.
fn grads(f: impl Fn(&[Tensor]) -> Tensor, xs: &[Tensor]) -> Vec<String> {
    let xs: Vec<Tensor> = xs
        .iter()
        .map(|x| x.copy().set_requires_grad(true))
        .collect();
    let y = f(&xs);
    let seed = det(&y.size(), 99, 1.0);
    let g = Tensor::run_backward(&[(&y * seed).sum(Kind::Float)], &xs, false, false);
    std::iter::once(fp(&y)).chain(g.iter().map(fp)).collect()
}

/// The portable linear layer through gnc's own forward and backward (the tape), as training
/// runs it; `x`'s gradient comes from the sweep that hands ∂h on to autograd.
fn gnc_linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Vec<String> {
    let leaves: Vec<Tensor> = [x, w, b]
        .iter()
        .map(|t| t.copy().set_requires_grad(true))
        .collect();
    // x * 1 puts x behind an autograd node, as a hidden layer's input is.
    let h = &leaves[0] * 1.0;
    let mut tape = linear::Tape::default();
    let y = linear::forward(
        &h,
        &leaves[1],
        &leaves[2],
        linear::Activation::Identity,
        (1, 2),
        Some(&mut tape),
    );
    let seed = det(&y.size(), 99, 1.0);
    let g = linear::gradients(&(&y * seed).sum(Kind::Float), &leaves, tape);
    std::iter::once(fp(&y)).chain(g.iter().map(fp)).collect()
}

/// Every kernel's hashes at `level` (the process must be pinned to it).
pub fn compute(level: Level) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let (a, w, b) = (
        det(&[32, 784], 1, 1.0),
        det(&[500, 784], 2, 0.1),
        det(&[500], 3, 0.1),
    );
    out.push(match level {
        Level::Portable => (
            "gnc linear 32x784->500 fwd,dx,dw,db".into(),
            gnc_linear(&a, &w, &b),
        ),
        Level::Native => (
            "linear 32x784->500 fwd,dx,dw,db".into(),
            grads(|t| t[0].linear(&t[1], Some(&t[2])), &[a, w, b]),
        ),
    });
    let (img, k) = (det(&[8, 16, 14, 14], 6, 1.0), det(&[32, 16, 3, 3], 7, 0.2));
    out.push((
        "conv2d 3x3 16->32 fwd,dx,dk".into(),
        grads(
            |t| t[0].conv2d(&t[1], None::<Tensor>, [1, 1], [1, 1], [1, 1], 1),
            &[img, k],
        ),
    ));
    let c = det(&[8, 32, 14, 14], 8, 1.0);
    let (g, bb) = (det(&[32], 9, 0.5) + 1.0, det(&[32], 10, 0.1));
    out.push((
        "batch_norm train fwd,dx,dg,db".into(),
        grads(
            |t| {
                t[0].batch_norm(
                    Some(&t[1]),
                    Some(&t[2]),
                    None::<&Tensor>,
                    None::<&Tensor>,
                    true,
                    0.1,
                    1e-5,
                    true,
                )
            },
            &[c.shallow_clone(), g, bb],
        ),
    ));
    out.push((
        "max_pool2d fwd,dx".into(),
        grads(
            |t| t[0].max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false),
            &[c],
        ),
    ));
    let logits = det(&[32, 10], 11, 4.0).set_requires_grad(true);
    let labels = Tensor::from_slice(&(0..32).map(|i| i * 7 % 10).collect::<Vec<i64>>());
    let l = logits.cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, -100, 0.0);
    let dl = Tensor::run_backward(&[&l], &[&logits], false, false);
    out.push(("cross_entropy fwd,dx".into(), vec![fp(&l), fp(&dl[0])]));
    let v = det(&[4096], 12, 8.0);
    let sqrt = match level {
        Level::Portable => ("gnc sqrt|x|", super::sqrt(&v.abs())),
        Level::Native => ("sqrt|x|", v.abs().sqrt()),
    };
    out.push((sqrt.0.into(), vec![fp(&sqrt.1)]));
    for (name, t) in [
        ("relu", v.relu()),
        ("sum", v.sum(Kind::Float)),
        ("norm", v.norm()),
        ("mean", v.mean(Kind::Float)),
    ] {
        out.push((name.into(), vec![fp(&t)]));
    }
    out
}

/// The kernels whose hashes differ from `reference`, each with both sets of hashes.
pub fn differences(actual: &[Entry], reference: &[(&str, &[&str])]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, want) in reference {
        match actual.iter().find(|(n, _)| n == name) {
            None => out.push(format!("{name}: not computed")),
            Some((_, got)) if got.iter().map(String::as_str).ne(want.iter().copied()) => {
                out.push(format!(
                    "{name}: this machine {}, reference {}",
                    got.join(" "),
                    want.join(" ")
                ))
            }
            Some(_) => {}
        }
    }
    out
}
