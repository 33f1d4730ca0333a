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
//! A layer may apply a ReLU to its output ([`Activation::Relu`]), with libtorch's bits: the
//! output leaf is then the ReLU's, and the layer's backward masks ∂y as libtorch's ReLU
//! backward does. And when a layer's input is the previous layer's output itself (an MLP), the
//! layer's ∂h is handed straight to that layer as a contribution to its ∂y, with the same bits
//! as the autograd segment in between would give (the gradient of `sum(h ⊙ ∂h)` with respect
//! to the leaf `h` is `1 · ∂h`), and the layer reads that layer's output values instead of
//! copying them out of the tensor: consecutive portable layers run without libtorch between
//! them.
//!
//! The definitions, for a batch of n rows (`h`: n × in, `W`: out × in, `y`: n × out):
//! `y[r][o] = Σ_i h[r][i] W[o][i] + b[o]`; `∂W[o][i] = Σ_r ∂y[r][o] h[r][i]`;
//! `∂b[o] = Σ_r ∂y[r][o]` (in row order); `∂h[r][i] = Σ_o ∂y[r][o] W[o][i]`; each Σ one fma
//! chain in index order, as [`super::gemm`] defines.

use std::ops::Deref;
use std::sync::Arc;

use tch::{Kind, Tensor};

use gnc_kernels::tensor::{from_values, written};
use gnc_kernels::transpose;

use super::buffers::{buffer, recycle, release, values};
use crate::tree::Part;

use super::gemm::{Strided, gemm, matmul};

/// What a layer applies to its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Identity,
    /// libtorch's ReLU (`clamp_min(0)`): x < 0 gives +0.0, anything else (-0.0 and NaN with
    /// its payload included) passes unchanged. Its backward gives +0.0 where the output is
    /// <= 0 and the incoming gradient elsewhere (NaN outputs included), as libtorch's
    /// `threshold_backward(∂y, y, 0)` does.
    Relu,
}

impl Activation {
    fn apply(self, y: &mut [f32]) {
        if self == Activation::Relu {
            for v in y {
                if *v < 0.0 {
                    *v = 0.0;
                }
            }
        }
    }

    /// `g` (the gradient with respect to the output `y`) as the gradient before the activation.
    fn backward(self, y: &[f32], g: &mut [f32]) {
        if self == Activation::Relu {
            for (g, &y) in g.iter_mut().zip(y) {
                if y <= 0.0 {
                    *g = 0.0;
                }
            }
        }
    }
}

/// One portable linear layer of a forward pass, as its backward needs it.
pub struct LinearRecord {
    /// The layer's input in the graph (it requires grad unless it is the data).
    input: Tensor,
    /// Whether `input` is the previous record's output leaf itself, so its ∂h goes straight
    /// to that record.
    follows: bool,
    /// Its values, row-major n × in (the previous record's `y` when it follows it).
    h: Arc<Vec<f32>>,
    /// The weight's values, row-major out × in.
    w: WeightValues,
    /// Canonical indexes of the weight and the bias among the pass's parameters.
    weight: usize,
    bias: usize,
    /// The leaf that stands for the output, after the activation.
    output: Tensor,
    /// Its values, row-major n × out.
    y: Arc<Vec<f32>>,
    activation: Activation,
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

/// The weight and bias of a layer: the weight's values, its number of rows, and the bias.
pub struct Weights<'a> {
    pub w: WeightValues,
    pub outputs: usize,
    pub b: &'a Tensor,
}

/// `y = act(h Wᵀ + b)` for `h` of shape `[n, in]`. The forward pass alone when `tape` is
/// `None` (inference); otherwise the output is a leaf that requires grad and the layer is
/// recorded.
pub fn forward(
    h: &Tensor,
    w: &Tensor,
    b: &Tensor,
    activation: Activation,
    params: (usize, usize),
    tape: Option<&mut Tape>,
) -> Tensor {
    let weights = Weights {
        w: WeightValues::Own(values(w)),
        outputs: w.size()[0] as usize,
        b,
    };
    forward_values(h, weights, activation, params, tape)
}

/// Whether `h` is `output` itself (or a shallow clone of it): a leaf that requires grad over
/// the same memory with the same geometry. (gnc's models never make a second leaf over a
/// layer's output memory, the one thing this would mistake for it.)
fn is_output(h: &Tensor, output: &Tensor) -> bool {
    h.is_leaf()
        && h.requires_grad()
        && h.data_ptr() == output.data_ptr()
        && h.size() == output.size()
        && h.stride() == output.stride()
}

/// [`forward`] with the weight given by its values, row-major `outputs × in` (GNC makes each
/// worker's weights as values, the baseline shares the iteration's, and they need no tensor:
/// see [`gradients`]).
pub fn forward_values(
    h: &Tensor,
    Weights { w: wv, outputs, b }: Weights,
    activation: Activation,
    (weight, bias): (usize, usize),
    tape: Option<&mut Tape>,
) -> Tensor {
    let (rows, inputs) = h.size2().expect("a linear layer's input is [n, features]");
    let (rows, inputs) = (rows as usize, inputs as usize);
    assert_eq!(wv.len(), outputs * inputs, "the weight is outputs × inputs");
    assert_eq!(b.numel(), outputs, "the bias has one value per output");
    // The previous layer's output values, if `h` is that layer's output leaf.
    let previous = tape
        .as_deref()
        .and_then(|t| t.0.last())
        .filter(|prev| is_output(h, &prev.output))
        .map(|prev| Arc::clone(&prev.y));
    let follows = previous.is_some();
    let hv = previous.unwrap_or_else(|| Arc::new(values(h)));
    let bv = values(b);
    // yᵀ = W hᵀ: the large operand W is `a`, read in place; h's values (the previous layer's,
    // or copied out of the tensor) are the small `b`, read through their transpose's strides
    // into the product's packed panels.
    let mut yt = buffer(outputs * rows);
    gemm(
        Strided::rows(&wv, outputs, inputs),
        Strided::rows(&hv, rows, inputs).t(),
        &mut yt,
    );
    // The output as values (read by the next layer if it follows this one, and by this layer's
    // ReLU backward; 4 bytes per output, kept whether or not they are), then copied into the
    // tensor the graph goes on with. The transpose moves 8 × 8 blocks in registers, and the
    // bias and activation run along rows.
    let mut yv = buffer(rows * outputs);
    transpose(&yt, outputs, rows, &mut yv);
    for row in yv.chunks_exact_mut(outputs) {
        for (v, &b) in row.iter_mut().zip(&bv) {
            *v += b;
        }
        activation.apply(row);
    }
    let y = from_values(&yv, &[rows as i64, outputs as i64]);
    for v in [yt, bv] {
        recycle(v);
    }
    match tape {
        None => {
            release(hv);
            recycle(yv);
            wv.recycle();
            y
        }
        Some(tape) => {
            let output = y.set_requires_grad(true);
            tape.0.push(LinearRecord {
                input: h.shallow_clone(),
                follows,
                h: hv,
                w: wv,
                weight,
                bias,
                output: output.shallow_clone(),
                y: Arc::new(yv),
                activation,
                rows,
                inputs,
                outputs,
            });
            output
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

/// ∂h, row-major n × in, or `None` for the first layer, whose input is the data (no gradient
/// flows there). ∂hᵀ = Wᵀ dyᵀ, so the large W is `a`, read in place (k-major), and the small dy
/// is packed; each element is the same chain over o as in ∂h = dy W (fma's product commutes
/// exactly). The transpose back is written straight into the tensor, or into values when it
/// goes to the previous layer.
fn input_gradient(rec: &LinearRecord, dy: &[f32]) -> Option<Part> {
    let (n, i, o) = (rec.rows, rec.inputs, rec.outputs);
    rec.input.requires_grad().then(|| {
        let mut ht = buffer(i * n);
        gemm(
            Strided::rows(&rec.w, o, i).t(),
            Strided::rows(dy, n, o).t(),
            &mut ht,
        );
        let shape = [n as i64, i as i64];
        let h = if rec.follows {
            let mut h = buffer(n * i);
            transpose(&ht, i, n, &mut h);
            Part::values(h, shape.to_vec())
        } else {
            Part::Tensor(written(&shape, |h| transpose(&ht, i, n, h)))
        };
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
    // The gradient so far of each weight, then of each record's output: its first
    // contribution as it came (a weight gradient's or a handed-over ∂h's values stay values),
    // a sum of several as a tensor, added in the order they came.
    let mut acc: Vec<Option<Part>> = (0..nw + records.len()).map(|_| None).collect();
    let mut early_norm: Vec<Option<Tensor>> = (0..nw).map(|_| None).collect();
    let add = |acc: &mut Vec<Option<Part>>, k: usize, g: Part| {
        acc[k] = Some(match acc[k].take() {
            None => g,
            Some(sum) => Part::Tensor(sum.into_tensor() + g.into_tensor()),
        });
    };
    // The graph is kept through every segment's backward: two segments may cross the same
    // libtorch node (a ReLU's output read by two layers, or by a layer and the objective), and
    // the first would otherwise free what the node saved for the second.
    let autograd = |acc: &mut Vec<Option<Part>>, root: &Tensor| {
        for (k, g) in Tensor::run_backward(&[root], &inputs, true, false)
            .into_iter()
            .enumerate()
        {
            if g.defined() {
                add(acc, slots[k], Part::Tensor(g));
            }
        }
    };
    autograd(&mut acc, objective);
    // Whether a record is its weight's oldest, so its contribution (records are swept newest
    // first) is the weight's last.
    let last: Vec<bool> = (0..records.len())
        .map(|j| records[..j].iter().all(|r| r.weight != records[j].weight))
        .collect();
    // Each record's buffers go back to the pool as soon as they are read for the last time, so
    // the next layer's weight gradient (a layer of the same size) is written into memory that
    // is still in cache.
    for (j, rec) in records.into_iter().enumerate().rev() {
        let mut dy = match acc[nw + j].take() {
            Some(Part::Tensor(g)) => values(&g),
            Some(Part::Values(v, _)) => {
                Arc::try_unwrap(v).expect("a handed-over ∂h is the sweep's alone")
            }
            None => vec![0.0; rec.rows * rec.outputs],
        };
        rec.activation.backward(&rec.y, &mut dy);
        // The weight's first contribution stays values; a later one is added as a tensor.
        let shape = [rec.outputs as i64, rec.inputs as i64];
        if acc[rec.weight].is_none() {
            let mut w = buffer(rec.outputs * rec.inputs);
            weight_gradient(&rec, &dy, &mut w);
            // Final if this is the weight's last contribution: take its norm while in cache.
            if norms && last[j] {
                early_norm[rec.weight] = Some(gnc_kernels::tensor::norm(&w));
            }
            acc[rec.weight] = Some(Part::values(w, shape.to_vec()));
        } else {
            let w = written(&shape, |w| weight_gradient(&rec, &dy, w));
            add(&mut acc, rec.weight, Part::Tensor(w));
        }
        add(&mut acc, rec.bias, Part::Tensor(bias_gradient(&rec, &dy)));
        let dh = input_gradient(&rec, &dy);
        recycle(dy);
        let LinearRecord {
            input,
            follows,
            h,
            w,
            y,
            ..
        } = rec;
        release(h);
        release(y);
        w.recycle();
        match dh {
            // The previous record's output is this layer's input itself: no autograd between.
            Some(dh) if follows => add(&mut acc, nw + j - 1, dh),
            Some(dh) => autograd(&mut acc, &(&input * dh.into_tensor()).sum(Kind::Float)),
            None => {}
        }
    }
    let parts: Vec<Part> = acc
        .into_iter()
        .take(nw)
        .zip(weights)
        .map(|(g, w)| g.unwrap_or_else(|| Part::Tensor(w.zeros_like())))
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
