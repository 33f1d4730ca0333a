//! The engine's GNC and RNC iterations against an independent float64 reference written in
//! plain Rust (no libtorch): forward and backward of a tiny MLP by hand, the filter-wise
//! perturbations of Eq. 5 and Eq. 6, the mean over logical workers and the momentum update.
//! Batches, initial weights and RNC's uniform draws are inputs taken from the engine; all
//! arithmetic is redone here.

// The reference spells out the index arithmetic of the math on purpose, so it can be read
// against the paper line by line.
#![allow(clippy::needless_range_loop)]

use gnc_proto::{JobSpec, ValidSpec};
use gnc_worker::data::{self, order::EpochOrder};
use gnc_worker::engine::Trainer;
use gnc_worker::methods::rnc_noise;
use gnc_worker::rng::Purpose;
use tch::Tensor;

const M: usize = 4;
const B: usize = 3;
const ALPHA: f64 = 2.0;
const LR: f64 = 0.2;
const MOMENTUM: f64 = 0.9;
const DECAY: f64 = 0.01;

fn spec(method: &str) -> ValidSpec {
    let text = format!(
        r#"
name = "reference"
seed = 11
output_dir = "unused"
[data]
dataset = "teacher-student"
teacher_student = {{ train_examples = 48, test_examples = 8, input_dim = 5, classes = 3, teacher_hidden = 6 }}
[model]
kind = "mlp"
hidden = [4]
[parallel]
workers = {M}
small_batch = {B}
[method]
{method}
[optimizer]
kind = "momentum"
momentum = {MOMENTUM}
weight_decay = {DECAY}
[schedule]
epochs = 1
base_lr = {LR}
"#
    );
    JobSpec::from_toml(&text, "reference")
        .unwrap()
        .validated()
        .unwrap()
}

/// A matrix (rows × cols) or a vector (rows × 1) of f64, row-major.
#[derive(Clone, Debug)]
struct Mat {
    rows: usize,
    cols: usize,
    v: Vec<f64>,
    is_vector: bool,
}

impl Mat {
    fn from_tensor(t: &Tensor) -> Mat {
        let size = t.size();
        let v: Vec<f32> = Vec::try_from(&t.flatten(0, -1)).unwrap();
        let (rows, cols, is_vector) = match size.len() {
            1 => (size[0] as usize, 1, true),
            _ => (size[0] as usize, size[1] as usize, false),
        };
        Mat {
            rows,
            cols,
            v: v.into_iter().map(f64::from).collect(),
            is_vector,
        }
    }
    fn zeros_like(&self) -> Mat {
        Mat {
            v: vec![0.0; self.v.len()],
            ..self.clone()
        }
    }
    /// Filters of Eq. 5/6: rows of a matrix; a vector is one filter.
    fn filters(&self) -> Vec<std::ops::Range<usize>> {
        if self.is_vector {
            std::iter::once(0..self.v.len()).collect()
        } else {
            (0..self.rows)
                .map(|r| r * self.cols..(r + 1) * self.cols)
                .collect()
        }
    }
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

type Params = Vec<Mat>; // [W0, b0, W1, b1]

/// Loss and gradient of the 2-layer ReLU MLP on one small batch, by hand.
fn grad(p: &Params, xs: &[Vec<f64>], ys: &[usize]) -> (f64, Params) {
    let (w0, b0, w1, b1) = (&p[0], &p[1], &p[2], &p[3]);
    let mut g: Params = p.iter().map(Mat::zeros_like).collect();
    let n = xs.len() as f64;
    let mut loss = 0.0;
    for (x, &y) in xs.iter().zip(ys) {
        let pre: Vec<f64> = (0..w0.rows)
            .map(|j| {
                b0.v[j]
                    + (0..w0.cols)
                        .map(|k| w0.v[j * w0.cols + k] * x[k])
                        .sum::<f64>()
            })
            .collect();
        let h: Vec<f64> = pre.iter().map(|v| v.max(0.0)).collect();
        let z: Vec<f64> = (0..w1.rows)
            .map(|c| {
                b1.v[c]
                    + (0..w1.cols)
                        .map(|j| w1.v[c * w1.cols + j] * h[j])
                        .sum::<f64>()
            })
            .collect();
        let zmax = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = zmax + z.iter().map(|v| (v - zmax).exp()).sum::<f64>().ln();
        loss += (lse - z[y]) / n;
        let dz: Vec<f64> = (0..z.len())
            .map(|c| ((z[c] - lse).exp() - if c == y { 1.0 } else { 0.0 }) / n)
            .collect();
        for c in 0..w1.rows {
            g[3].v[c] += dz[c];
            for j in 0..w1.cols {
                g[2].v[c * w1.cols + j] += dz[c] * h[j];
            }
        }
        for j in 0..w0.rows {
            if pre[j] <= 0.0 {
                continue;
            }
            let dh: f64 = (0..w1.rows).map(|c| w1.v[c * w1.cols + j] * dz[c]).sum();
            g[1].v[j] += dh;
            for k in 0..w0.cols {
                g[0].v[j * w0.cols + k] += dh * x[k];
            }
        }
    }
    (loss, g)
}

/// x - α η ‖x^(p)‖ ω^(p) / (‖ω^(p)‖ if normalised) for every filter p.
fn perturb(p: &Params, omega: &Params, normalise: bool) -> Params {
    p.iter()
        .zip(omega)
        .map(|(x, w)| {
            let mut out = x.clone();
            for f in x.filters() {
                let scale = ALPHA * LR * norm(&x.v[f.clone()]);
                let div = if normalise {
                    norm(&w.v[f.clone()])
                } else {
                    1.0
                };
                for i in f {
                    out.v[i] = x.v[i] - scale * w.v[i] / div;
                }
            }
            out
        })
        .collect()
}

enum Noise {
    Gnc,
    Rnc,
}

/// Runs `iterations` of the engine and of the reference; returns (engine, reference) params.
fn run_both(method: &str, noise: Noise, iterations: u64) -> (Params, Params) {
    let spec = spec(method);
    let mut trainer = Trainer::new(&spec, 1).unwrap();
    let mut state = trainer.fresh_state();
    let mut x: Params = state.params.iter().map(Mat::from_tensor).collect();
    let mut v: Params = x.iter().map(Mat::zeros_like).collect();
    let set = data::load(&spec.data, spec.seed).unwrap();
    let example = |i: u32| -> Vec<f64> {
        set.train
            .example(i as usize)
            .iter()
            .map(|&f| f as f64)
            .collect()
    };
    let mut prev: Option<(Vec<Params>, Params)> = None;
    for t in 0..iterations {
        trainer.step(&mut state).unwrap();
        let order = EpochOrder::new(spec.seed, Purpose::DataOrder, 0, set.train.len(), M, B);
        let mut grads = Vec::new();
        for w in 0..M {
            let weights = match (&noise, &prev) {
                (Noise::Gnc, None) => x.clone(),
                (Noise::Gnc, Some((g_prev, mean_prev))) => {
                    // Eq. 4: ω_i = g_i(t-1) - g~(t-1).
                    let omega: Params = g_prev[w]
                        .iter()
                        .zip(mean_prev)
                        .map(|(g, m)| Mat {
                            v: g.v.iter().zip(&m.v).map(|(a, b)| a - b).collect(),
                            ..g.clone()
                        })
                        .collect();
                    perturb(&x, &omega, false)
                }
                (Noise::Rnc, _) => {
                    let omega: Params = state
                        .params
                        .iter()
                        .enumerate()
                        .map(|(k, like)| Mat::from_tensor(&rnc_noise(spec.seed, t, w, k, like)))
                        .collect();
                    perturb(&x, &omega, true)
                }
            };
            let batch = order.worker_batch(t, w);
            let xs: Vec<Vec<f64>> = batch.iter().map(|&i| example(i)).collect();
            let ys: Vec<usize> = batch
                .iter()
                .map(|&i| set.train.labels[i as usize] as usize)
                .collect();
            grads.push(grad(&weights, &xs, &ys).1);
        }
        let mean: Params = (0..x.len())
            .map(|k| Mat {
                v: (0..x[k].v.len())
                    .map(|i| grads.iter().map(|g| g[k].v[i]).sum::<f64>() / M as f64)
                    .collect(),
                ..x[k].clone()
            })
            .collect();
        for k in 0..x.len() {
            for i in 0..x[k].v.len() {
                v[k].v[i] = MOMENTUM * v[k].v[i] - LR * (mean[k].v[i] + DECAY * x[k].v[i]);
                x[k].v[i] += v[k].v[i];
            }
        }
        prev = Some((grads, mean));
    }
    let engine = state.params.iter().map(Mat::from_tensor).collect();
    (engine, x)
}

/// Largest |engine - reference| relative to the largest |reference| of each tensor.
fn max_relative_error(a: &Params, b: &Params) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let scale = y.v.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
            x.v.iter()
                .zip(&y.v)
                .fold(0f64, |m, (p, q)| m.max((p - q).abs()))
                / scale
        })
        .fold(0.0, f64::max)
}

#[test]
fn gnc_iterations_match_the_float64_reference() {
    gnc_worker::pin::pin_process_environment(Default::default()).unwrap();
    let method = format!("kind = \"gnc\"\nalpha = {ALPHA}");
    let (engine, reference) = run_both(&method, Noise::Gnc, 3);
    let err = max_relative_error(&engine, &reference);
    assert!(
        err < 2e-5,
        "GNC differs from the float64 reference by {err}"
    );
    // The noise must matter at this α, or the comparison above would prove nothing.
    let (baseline, _) = run_both("kind = \"baseline\"", Noise::Gnc, 3);
    let effect = max_relative_error(&baseline, &reference);
    assert!(
        effect > 1e-3,
        "GNC's noise changed the weights by only {effect}"
    );
}

#[test]
fn rnc_iterations_match_the_float64_reference() {
    gnc_worker::pin::pin_process_environment(Default::default()).unwrap();
    let method = format!("kind = \"rnc\"\nalpha = {ALPHA}");
    let (engine, reference) = run_both(&method, Noise::Rnc, 2);
    let err = max_relative_error(&engine, &reference);
    assert!(
        err < 2e-5,
        "RNC differs from the float64 reference by {err}"
    );
    let (baseline, _) = run_both("kind = \"baseline\"", Noise::Rnc, 2);
    assert!(max_relative_error(&baseline, &reference) > 1e-3);
}

/// Σ_i ω_i = 0 (Eq. 4): the engine's GNC perturbations x_i - x = -s ⊙ ω_i of all logical
/// workers cancel up to float32 rounding.
#[test]
fn gnc_noise_sums_to_zero_over_workers() {
    use gnc_worker::kernels::buffers::values;
    use gnc_worker::methods::{GncPerturbation, Perturbation};
    use gnc_worker::tree::{Part, TreeSum};
    let workers = 16;
    let shapes: [&[i64]; 2] = [&[6, 5], &[6]];
    let params: Vec<Tensor> = shapes.iter().map(|s| random(1, s, 1.0)).collect();
    let grads: Vec<Vec<Tensor>> = (0..workers)
        .map(|w| shapes.iter().map(|s| random(100 + w, s, 3.0)).collect())
        .collect();
    let mut sum = TreeSum::new();
    for g in &grads {
        sum.push(g.iter().map(|t| Part::Tensor(t.shallow_clone())).collect());
    }
    let mean: Vec<Tensor> = sum
        .finish()
        .unwrap()
        .iter()
        .map(|t| t / workers as f64)
        .collect();
    let perturbation = GncPerturbation::new(&params, 0.5, 0.1, Some(&mean));
    for (k, x) in params.iter().enumerate() {
        let deltas: Vec<Tensor> = (0..workers as usize)
            .map(|w| {
                // The cursor consumes the previous gradient (it reuses its buffers).
                let prev = grads[w].iter().map(values).collect();
                let mut cursor = perturbation.cursor(&params, w, Some(prev));
                let weights: Vec<Tensor> = params.iter().map(|_| cursor.next()).collect();
                &weights[k].detach() - x
            })
            .collect();
        let total = deltas.iter().fold(Tensor::zeros_like(x), |a, d| a + d);
        let magnitude: f64 = deltas
            .iter()
            .map(|d| d.abs().sum(tch::Kind::Double).double_value(&[]))
            .sum();
        let residual = total.abs().max().double_value(&[]);
        assert!(magnitude > 1.0, "the perturbations are not trivially zero");
        assert!(
            residual < 1e-6 * magnitude,
            "Σ ω_i = {residual} for parameter {k}"
        );
    }
}

/// GNC makes each worker's weights from values, element by element (methods::GncWeights); they
/// must be bit for bit what libtorch's `base.addcmul(neg_scale, prev)` gives (which rounds
/// once: a fused multiply-add), for a matrix with a scale per row and a vector with one.
#[test]
fn gnc_weights_from_values_match_libtorch_addcmul() {
    use gnc_worker::kernels::buffers::values;
    use gnc_worker::methods::{GncPerturbation, Perturbation, filter_norms};
    use gnc_worker::model::ParamCursor;
    let shapes: [&[i64]; 2] = [&[37, 53], &[37]];
    let params: Vec<Tensor> = shapes.iter().map(|s| random(1, s, 1.0)).collect();
    let mean: Vec<Tensor> = shapes.iter().map(|s| random(2, s, 3.0)).collect();
    let prev: Vec<Tensor> = shapes.iter().map(|s| random(3, s, 3.0)).collect();
    let (alpha, lr) = (0.5, 0.1);
    let perturbation = GncPerturbation::new(&params, alpha, lr, Some(&mean));
    let mut cursor = perturbation.cursor(&params, 0, Some(prev.iter().map(values).collect()));
    let mut differing = 0;
    for (k, x) in params.iter().enumerate() {
        let made = values(&cursor.next().detach());
        let neg_scale = filter_norms(x) * (-alpha * lr);
        let base = x - &neg_scale * &mean[k];
        let want = values(&base.addcmul(&neg_scale, &prev[k]));
        differing += made
            .iter()
            .zip(&want)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
    }
    let _ = ParamCursor::into_made(cursor);
    assert_eq!(differing, 0, "elements that differ from libtorch's addcmul");
}

/// A tensor of `shape` with values uniform on ±scale, drawn from `seed`.
fn random(seed: u64, shape: &[i64], scale: f32) -> Tensor {
    let mut s = gnc_worker::rng::Stream::new(seed, Purpose::Init, &[]);
    let mut v = vec![0f32; shape.iter().product::<i64>() as usize];
    s.fill_uniform(&mut v, -scale, scale);
    Tensor::from_slice(&v).view(shape)
}
