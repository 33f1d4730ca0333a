//! A model's training loss as an [`Objective`]: the mean cross-entropy over a fixed set of
//! training examples, at any parameter vector.
//!
//! BatchNorm layers use the run's running statistics (evaluation mode), so the loss is a
//! function of the parameters alone, the same however the examples are split into chunks for
//! memory. Chunks are added in order, so every value is deterministic at the run's level.

use tch::{Kind, Tensor};

use super::Objective;
use crate::data::{self, Examples};
use crate::device::Device;
use crate::kernels;
use crate::model::{BatchNorm, Model, ParamCursor};

/// Examples per forward pass.
pub const CHUNK: usize = 512;

pub struct ModelObjective<'a> {
    model: &'a dyn Model,
    shapes: Vec<Vec<i64>>,
    running: &'a [(Tensor, Tensor)],
    /// The examples, in chunks of at most [`CHUNK`].
    chunks: Vec<(Tensor, Tensor)>,
    examples: usize,
}

impl<'a> ModelObjective<'a> {
    /// The loss over the first `examples` examples of `train` (all, if fewer).
    pub fn new(
        model: &'a dyn Model,
        running: &'a [(Tensor, Tensor)],
        train: &Examples,
        examples: usize,
    ) -> Self {
        let examples = examples.min(train.len());
        let indices: Vec<u32> = (0..examples as u32).collect();
        let chunks = indices
            .chunks(CHUNK)
            .map(|chunk| data::gather(train, chunk, None, Device::CPU))
            .collect();
        ModelObjective {
            model,
            shapes: model.params().iter().map(|p| p.shape.clone()).collect(),
            running,
            chunks,
            examples,
        }
    }

    pub fn examples(&self) -> usize {
        self.examples
    }

    /// `x` as the model's parameter tensors.
    fn tensors(&self, x: &[f32]) -> Vec<Tensor> {
        unflatten(x, &self.shapes)
    }

    /// Σ over the chunk's examples of the cross-entropy, divided by all the examples.
    fn chunk_loss(&self, cursor: &mut ParamCursor, x: &Tensor, y: &Tensor) -> Tensor {
        let mut bn = BatchNorm::eval(self.running);
        let logits = self.model.forward_with(cursor, &mut bn, x);
        let n = y.size()[0] as f64;
        logits.log_softmax(-1, Kind::Float).nll_loss(y) * (n / self.examples as f64)
    }
}

impl Objective for ModelObjective<'_> {
    fn dim(&self) -> usize {
        self.shapes
            .iter()
            .map(|s| s.iter().product::<i64>() as usize)
            .sum()
    }

    fn loss(&self, x: &[f32]) -> f64 {
        let params = self.tensors(x);
        let _no_grad = tch::no_grad_guard();
        self.chunks
            .iter()
            .map(|(xs, ys)| {
                self.chunk_loss(&mut ParamCursor::new(&params), xs, ys)
                    .double_value(&[])
            })
            .sum()
    }

    fn loss_and_gradient(&self, x: &[f32], grad: &mut [f32]) -> f64 {
        grad.fill(0.0);
        let mut loss = 0.0;
        for (xs, ys) in &self.chunks {
            let mut cursor = ParamCursor::leaves(self.tensors(x));
            let objective = self.chunk_loss(&mut cursor, xs, ys);
            let (weights, tape) = cursor.into_made();
            let grads = kernels::linear::gradients(&objective, &weights, tape);
            loss += objective.double_value(&[]);
            let mut offset = 0;
            for g in grads {
                let n = g.numel();
                let mut values = vec![0f32; n];
                g.contiguous().copy_data(&mut values, n);
                for (out, v) in grad[offset..offset + n].iter_mut().zip(values) {
                    *out += v;
                }
                offset += n;
            }
        }
        loss
    }
}

/// A flat vector in canonical order as tensors of `shapes` (on the CPU).
pub fn unflatten(x: &[f32], shapes: &[Vec<i64>]) -> Vec<Tensor> {
    let mut offset = 0;
    shapes
        .iter()
        .map(|shape| {
            let n = shape.iter().product::<i64>() as usize;
            let t = Tensor::from_slice(&x[offset..offset + n]).view(shape.as_slice());
            offset += n;
            t
        })
        .collect()
}

/// The parameters as one flat vector, in canonical order.
pub fn flatten(params: &[Tensor]) -> Vec<f32> {
    let n: usize = params.iter().map(Tensor::numel).sum();
    let mut out = vec![0f32; n];
    crate::distributed::flat::flatten_into(params, &mut out);
    out
}
