//! Loss and accuracy of the current model on a data split (BatchNorm in inference mode).

use tch::{Kind, Tensor};

use crate::data::{Examples, gather};
use crate::device::Device;
use crate::model::{BatchNorm, Model};

const EVAL_BATCH: usize = 500;

/// Mean cross-entropy and accuracy over the first `limit` examples. Batches are summed in
/// order in f64, so the result is deterministic.
pub fn evaluate(
    model: &dyn Model,
    params: &[Tensor],
    running: &[(Tensor, Tensor)],
    examples: &Examples,
    limit: usize,
) -> (f64, f64) {
    let n = limit.min(examples.len());
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let indices: Vec<u32> = (0..n as u32).collect();
    let device = Device::of(&params[0]);
    let (mut loss_sum, mut correct) = (0f64, 0i64);
    tch::no_grad(|| {
        for chunk in indices.chunks(EVAL_BATCH) {
            let (x, y) = gather(examples, chunk, None, device);
            let logits = model.forward(params, &mut BatchNorm::eval(running), &x);
            let loss = logits
                .log_softmax(-1, Kind::Float)
                .nll_loss(&y)
                .double_value(&[]);
            loss_sum += loss * chunk.len() as f64;
            correct += logits
                .argmax(-1, false)
                .eq_tensor(&y)
                .sum(Kind::Int64)
                .int64_value(&[]);
        }
    });
    (loss_sum / n as f64, correct as f64 / n as f64)
}
