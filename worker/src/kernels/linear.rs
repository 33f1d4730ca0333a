//! Fully connected layers on the portable product ([`super::gemm`]), inside libtorch's autograd.
//!
//! libtorch cannot run a kernel of ours as part of its graph, so a portable linear layer cuts
//! the graph: its output is a fresh leaf `y` that requires grad, and the layer is recorded on a
//! [`Tape`]. [`gradients`] then differentiates segment by segment, from the objective back:
//! autograd gives ∂objective/∂y for the newest layer; the layer's own backward (three portable
//! products) gives ∂W, ∂b and ∂h; ∂h continues through autograd from `h` to the previous cut as
//! the gradient of `sum(h ⊙ ∂h)` (whose gradient with respect to `h` is `∂h` exactly), and so on.
//! Every parameter's gradient is the sum of its segments' contributions, added in the fixed
//! order of the sweep.
//!
//! The definitions, for a batch of n rows (`h`: n × in, `W`: out × in, `y`: n × out):
//! `y[r][o] = Σ_i h[r][i] W[o][i] + b[o]`; `∂W[o][i] = Σ_r ∂y[r][o] h[r][i]`;
//! `∂b[o] = Σ_r ∂y[r][o]` (in row order); `∂h[r][i] = Σ_o ∂y[r][o] W[o][i]`; each Σ one fma
//! chain in index order, as [`super::gemm`] defines.

use std::ops::Deref;
use std::sync::Arc;

use tch::{Kind, Tensor};

use gnc_kernels::tensor::written;

use super::buffers::{buffer, recycle, values};
use crate::tree::Part;

use super::gemm::{Strided, gemm, matmul};

/// One portable linear layer of a forward pass, as its backward needs it.
pub struct LinearRecord {
    /// The layer's input in the graph (it requires grad unless it is the data).
    input: Tensor,
    /// Its values, row-major n × in.
    h: Vec<f32>,
    /// The weight's values, row-major out × in.
    w: WeightValues,
    /// Canonical indexes of the weight and the bias among the pass's parameters.
    weight: usize,
    bias: usize,
    /// The leaf that stands for the output.
    output: Tensor,
    rows: usize,
    inputs: usize,
    outputs: usize,
}

/// A layer's weight as values, row-major out × in: the worker's own (GNC makes each worker's,
/// a copy is made of a tensor's), handed back to the buffer pool after its backward; or the
/// iteration's, shared by every worker that computes at the parameters themselves (one copy
/// per iteration instead of one per worker).
pub enum WeightValues {
    Own(Vec<f32>),
    Shared(Arc<Vec<f32>>),
}

impl Deref for WeightValues {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match self {
            WeightValues::Own(v) => v,
            WeightValues::Shared(v) => v,
        }
    }
}

impl WeightValues {
    /// Hands the values back to the pool if they are the worker's own.
    fn recycle(self) {
        if let WeightValues::Own(v) = self {
            recycle(v);
        }
    }
}

/// The portable layers of one or more forward passes, in the order they ran.
#[derive(Default)]
pub struct Tape(Vec<LinearRecord>);

impl Tape {
    pub fn append(&mut self, mut other: Tape) {
        self.0.append(&mut other.0);
    }
}

/// `y = h Wᵀ + b` for `h` of shape `[n, in]`. The forward pass alone when `tape` is `None`
/// (inference); otherwise the output is a leaf that requires grad and the layer is recorded.
pub fn forward(
    h: &Tensor,
    w: &Tensor,
    b: &Tensor,
    params: (usize, usize),
    tape: Option<&mut Tape>,
) -> Tensor {
    let outputs = w.size()[0] as usize;
    forward_values(h, WeightValues::Own(values(w)), outputs, b, params, tape)
}

/// [`forward`] with the weight given by its values, row-major `outputs × in` (GNC makes each
/// worker's weights as values, the baseline shares the iteration's, and they need no tensor:
/// see [`gradients`]).
pub fn forward_values(
    h: &Tensor,
    wv: WeightValues,
    outputs: usize,
    b: &Tensor,
    (weight, bias): (usize, usize),
    tape: Option<&mut Tape>,
) -> Tensor {
    let (rows, inputs) = h.size2().expect("a linear layer's input is [n, features]");
    let (rows, inputs) = (rows as usize, inputs as usize);
    assert_eq!(wv.len(), outputs * inputs, "the weight is outputs × inputs");
    assert_eq!(b.numel(), outputs, "the bias has one value per output");
    let hv = values(h);
    let bv = values(b);
    // yᵀ = W hᵀ: the large operand W is `a`, read in place; h is the small `b`, read through
    // its transpose's strides into the product's packed panels (no copy of ours).
    let mut yt = buffer(outputs * rows);
    gemm(
        Strided::rows(&wv, outputs, inputs),
        Strided::rows(&hv, rows, inputs).t(),
        &mut yt,
    );
    let y = written(&[rows as i64, outputs as i64], |y| {
        for (r, row) in y.chunks_exact_mut(outputs).enumerate() {
            for (o, (v, &b)) in row.iter_mut().zip(&bv).enumerate() {
                *v = yt[o * rows + r] + b;
            }
        }
    });
    for v in [yt, bv] {
        recycle(v);
    }
    match tape {
        None => {
            recycle(hv);
            wv.recycle();
            y
        }
        Some(tape) => {
            let output = y.set_requires_grad(true);
            tape.0.push(LinearRecord {
                input: h.shallow_clone(),
                h: hv,
                w: wv,
                weight,
                bias,
                output: output.shallow_clone(),
                rows,
                inputs,
                outputs,
            });
            output
        }
    }
}

/// `t` = the transpose of `v`, a row-major `rows × cols` matrix.
fn transpose_into(v: &[f32], rows: usize, cols: usize, t: &mut [f32]) {
    for (r, row) in v.chunks_exact(cols).enumerate() {
        for (c, &x) in row.iter().enumerate() {
            t[c * rows + r] = x;
        }
    }
}

/// ∂W = dyᵀ h into `w` (row-major out × in): dy is the small operand, h is read in place.
fn weight_gradient(rec: &LinearRecord, dy: &[f32], w: &mut [f32]) {
    matmul(
        Strided::rows(dy, rec.rows, rec.outputs).t(),
        &rec.h,
        rec.inputs,
        w,
    );
}

/// ∂h as a tensor, or `None` for the first layer, whose input is the data (no gradient flows
/// there). ∂hᵀ = Wᵀ dyᵀ, so the large W is `a`, read in place (k-major), and the small dy is
/// packed; each element is the same chain over o as in ∂h = dy W (fma's product commutes
/// exactly). The transpose back is written straight into the tensor.
fn input_gradient(rec: &LinearRecord, dy: &[f32]) -> Option<Tensor> {
    let (n, i, o) = (rec.rows, rec.inputs, rec.outputs);
    rec.input.requires_grad().then(|| {
        let mut ht = buffer(i * n);
        gemm(
            Strided::rows(&rec.w, o, i).t(),
            Strided::rows(dy, n, o).t(),
            &mut ht,
        );
        let h = written(&[n as i64, i as i64], |h| transpose_into(&ht, i, n, h));
        recycle(ht);
        h
    })
}

/// ∂b: each output's column of dy summed in row order from +0.0.
fn bias_gradient(rec: &LinearRecord, dy: &[f32]) -> Tensor {
    written(&[rec.outputs as i64], |b| {
        b.fill(0.0);
        for row in dy.chunks_exact(rec.outputs) {
            for (acc, &g) in b.iter_mut().zip(row) {
                *acc += g;
            }
        }
    })
}

/// The gradient of `objective` with respect to `weights` (the leaves of the pass, in canonical
/// order), through the portable layers on `tape` and autograd between them. A weight the
/// objective does not depend on gets zeros. The weights of the layers on the tape are not
/// differentiated by autograd (their gradients come from the tape), so they may be given as
/// empty placeholders.
pub fn gradients(objective: &Tensor, weights: &[Tensor], tape: Tape) -> Vec<Tensor> {
    sweep(objective, weights, tape, false)
        .0
        .into_iter()
        .map(Part::into_tensor)
        .collect()
}

/// [`gradients`] as the tree sums them, and libtorch's 2-norm of each (`Tensor::norm`, whose
/// bits every run records through its noise norm): a portable layer's weight gradient that
/// came whole from its layer stays the values its product wrote (no tensor is made for one
/// worker's gradient), and its norm is taken as soon as it is final, while the product's
/// output is still in cache; every other gradient is a tensor.
pub fn gradients_and_norms(
    objective: &Tensor,
    weights: &[Tensor],
    tape: Tape,
) -> (Vec<Part>, Vec<Tensor>) {
    sweep(objective, weights, tape, true)
}

/// The sweep behind [`gradients`]; with `norms`, also each gradient's norm (else none).
fn sweep(
    objective: &Tensor,
    weights: &[Tensor],
    tape: Tape,
    norms: bool,
) -> (Vec<Part>, Vec<Tensor>) {
    let records = tape.0;
    let nw = weights.len();
    let on_tape = |k: usize| records.iter().any(|r| r.weight == k);
    // Autograd differentiates with respect to every other weight and every cut.
    let slots: Vec<usize> = (0..nw)
        .filter(|&k| !on_tape(k))
        .chain((0..records.len()).map(|j| nw + j))
        .collect();
    let inputs: Vec<Tensor> = slots
        .iter()
        .map(|&k| match k.checked_sub(nw) {
            None => weights[k].shallow_clone(),
            Some(j) => records[j].output.shallow_clone(),
        })
        .collect();
    // A gradient so far is a tensor (`acc`) or a weight gradient's values (`raw`), never both.
    let mut acc: Vec<Option<Tensor>> = (0..nw + records.len()).map(|_| None).collect();
    let mut raw: Vec<Option<(Vec<f32>, Vec<i64>)>> = (0..nw).map(|_| None).collect();
    let mut early_norm: Vec<Option<Tensor>> = (0..nw).map(|_| None).collect();
    let add = |acc: &mut Vec<Option<Tensor>>, raw: &mut Vec<Option<_>>, k: usize, g| {
        // A second contribution to a gradient held as values: the sum is a tensor.
        let so_far = acc[k].take().or_else(|| {
            raw.get_mut(k)
                .and_then(Option::take)
                .map(|(v, shape): (Vec<f32>, Vec<i64>)| Part::values(v, shape).into_tensor())
        });
        acc[k] = Some(match so_far {
            None => g,
            Some(sum) => sum + g,
        });
    };
    let autograd = |acc: &mut Vec<Option<Tensor>>, raw: &mut Vec<Option<_>>, root: &Tensor| {
        for (k, g) in Tensor::run_backward(&[root], &inputs, false, false)
            .into_iter()
            .enumerate()
        {
            if g.defined() {
                add(acc, raw, slots[k], g);
            }
        }
    };
    autograd(&mut acc, &mut raw, objective);
    // Whether a record is its weight's oldest, so its contribution (records are swept newest
    // first) is the weight's last.
    let last: Vec<bool> = (0..records.len())
        .map(|j| records[..j].iter().all(|r| r.weight != records[j].weight))
        .collect();
    // Each record's buffers go back to the pool as soon as they are read for the last time, so
    // the next layer's weight gradient (a layer of the same size) is written into memory that
    // is still in cache.
    for (j, rec) in records.into_iter().enumerate().rev() {
        let dy = match acc[nw + j].take() {
            Some(g) => values(&g),
            None => vec![0.0; rec.rows * rec.outputs],
        };
        // The weight's first contribution stays values; a later one is added as a tensor.
        let shape = [rec.outputs as i64, rec.inputs as i64];
        if acc[rec.weight].is_none() && raw[rec.weight].is_none() {
            let mut w = buffer(rec.outputs * rec.inputs);
            weight_gradient(&rec, &dy, &mut w);
            // Final if this is the weight's last contribution: take its norm while in cache.
            if norms && last[j] {
                early_norm[rec.weight] = Some(gnc_kernels::tensor::norm(&w));
            }
            raw[rec.weight] = Some((w, shape.to_vec()));
        } else {
            let w = written(&shape, |w| weight_gradient(&rec, &dy, w));
            add(&mut acc, &mut raw, rec.weight, w);
        }
        add(&mut acc, &mut raw, rec.bias, bias_gradient(&rec, &dy));
        let dh = input_gradient(&rec, &dy);
        recycle(dy);
        let LinearRecord { input, h, w, .. } = rec;
        recycle(h);
        w.recycle();
        if let Some(dh) = dh {
            autograd(&mut acc, &mut raw, &(&input * dh).sum(Kind::Float));
        }
    }
    let parts: Vec<Part> = acc
        .into_iter()
        .zip(raw)
        .zip(weights)
        .map(|((g, v), w)| match (g, v) {
            (_, Some((v, shape))) => Part::values(v, shape),
            (Some(g), None) => Part::Tensor(g),
            (None, None) => Part::Tensor(w.zeros_like()),
        })
        .collect();
    let norms = if norms {
        parts
            .iter()
            .zip(early_norm)
            .map(|(part, early)| early.unwrap_or_else(|| part.norm()))
            .collect()
    } else {
        Vec::new()
    };
    (parts, norms)
}
