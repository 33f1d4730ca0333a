//! One logical worker's contribution to an iteration, and a block of workers run in order.
//!
//! A worker's contribution is a [`Bundle`] in a fixed layout — its gradient (one tensor per
//! parameter), the mean and variance of each BatchNorm layer over its small batch, its loss and
//! the squared norm of its gradient — so that one tree reduction combines all of them.

use std::ops::Range;
use std::sync::Arc;

use tch::{Kind, Tensor};

use crate::data::{self, Augment, Examples, order::EpochOrder};
use crate::device::Device;
use crate::kernels;
use crate::kernels::buffers::values;
use crate::methods::Perturbation;
use crate::model::{BatchNorm, Model, ParamCursor};
use crate::state::SavedGradient;
use crate::tree::{Bundle, Part, TreeSum};

/// A worker's gradient kept for GNC while the tree sum may still read the same values.
type Kept = Vec<Arc<Vec<f32>>>;

/// The second, independent batch of noise enhancement (NE Eq. 6): the gradient becomes
/// α g_B + (1 - α) g_B'.
pub struct SecondBatch<'a> {
    pub order: &'a EpochOrder,
    pub alpha: f64,
}

/// Everything a block of logical workers needs for one iteration; cheap to build per thread.
pub struct BlockTask<'a> {
    pub model: &'a dyn Model,
    pub params: Vec<Tensor>,
    pub perturbation: Box<dyn Perturbation>,
    pub train: &'a Examples,
    pub order: &'a EpochOrder,
    pub second: Option<SecondBatch<'a>>,
    pub augment: Option<Augment>,
    /// Index of the iteration within its epoch.
    pub k: u64,
    pub workers: Range<usize>,
    /// Previous gradients g_i(t-1) of these workers, when the method uses them.
    pub previous: Previous<'a>,
    /// Whether to return this iteration's per-worker gradients (GNC needs them next time).
    pub keep_grads: bool,
}

/// Where a block's workers' previous gradients come from.
pub enum Previous<'a> {
    /// The state's own, moved out of it: the iteration consumes them (GNC reuses their
    /// buffers for the workers' weights).
    Taken(Vec<Option<SavedGradient>>),
    /// The state's, copied one worker at a time as it is reached: computations on copies
    /// (diagnostics), which leave the state as it was.
    Copied(&'a [Option<SavedGradient>]),
}

impl Previous<'_> {
    /// The `j`-th worker's of the block.
    fn get(&mut self, j: usize) -> Option<SavedGradient> {
        match self {
            Previous::Taken(grads) => grads[j].take(),
            Previous::Copied(grads) => grads[j].clone(),
        }
    }
}

/// What a block hands back: its tree sum and, for GNC, each worker's gradient.
pub struct BlockResult {
    pub workers: Range<usize>,
    pub sum: Bundle,
    pub grads: Vec<Option<SavedGradient>>,
}

/// Where each part sits in a worker's bundle.
#[derive(Debug, Clone, Copy)]
pub struct BundleLayout {
    pub params: usize,
    pub bn_layers: usize,
}

impl BundleLayout {
    pub fn bn_mean(&self, layer: usize) -> usize {
        self.params + 2 * layer
    }
    pub fn bn_var(&self, layer: usize) -> usize {
        self.params + 2 * layer + 1
    }
    pub fn loss(&self) -> usize {
        self.params + 2 * self.bn_layers
    }
    pub fn grad_sq(&self) -> usize {
        self.loss() + 1
    }
}

/// Mean cross-entropy of one small batch with the weights `weights` hands out, and the
/// BatchNorm statistics of the pass.
fn loss_of(
    model: &dyn Model,
    weights: &mut ParamCursor,
    x: &Tensor,
    y: &Tensor,
) -> (Tensor, Vec<(Tensor, Tensor)>) {
    let mut bn = BatchNorm::train();
    let logits = model.forward_with(weights, &mut bn, x);
    let loss = logits.log_softmax(-1, Kind::Float).nll_loss(y);
    (loss, bn.into_stats())
}

impl BlockTask<'_> {
    fn batch(&self, order: &EpochOrder, worker: usize) -> (Tensor, Tensor) {
        let device = Device::of(&self.params[0]);
        data::gather(
            self.train,
            order.worker_batch(self.k, worker),
            self.augment,
            device,
        )
    }

    /// Gradient, BatchNorm statistics and loss of one logical worker, in the bundle's layout,
    /// and its gradient as values when the method keeps it. Consumes its previous gradient
    /// (GNC makes the worker's weights from it and reuses its buffers).
    fn worker(&self, worker: usize, prev_grad: Option<SavedGradient>) -> (Vec<Part>, Option<Kept>) {
        let (x, y) = self.batch(self.order, worker);
        let mut cursor = self.perturbation.cursor(&self.params, worker, prev_grad);
        let (loss, stats) = loss_of(self.model, &mut cursor, &x, &y);
        let (weights, mut tape) = cursor.into_made();
        let objective = match &self.second {
            None => loss.shallow_clone(),
            Some(second) => {
                let (x2, y2) = self.batch(second.order, worker);
                let mut cursor2 = ParamCursor::new(&weights);
                let (loss2, _) = loss_of(self.model, &mut cursor2, &x2, &y2);
                tape.append(cursor2.into_tape());
                &loss * second.alpha + loss2 * (1.0 - second.alpha)
            }
        };
        let (grads, norms) = kernels::linear::gradients_and_norms(&objective, &weights, tape);
        // Kept values are the leaf's own (shared, not copied); a tensor's are copied out.
        let kept = self.keep_grads.then(|| {
            grads
                .iter()
                .map(|g| match g {
                    Part::Values(v, _) => Arc::clone(v),
                    Part::Tensor(t) => Arc::new(values(t)),
                })
                .collect()
        });
        let grad_sq = Tensor::stack(&norms, 0).square().sum(Kind::Float).view([1]);
        let mut leaf = grads;
        for (mean, var) in stats {
            leaf.push(Part::Tensor(mean));
            leaf.push(Part::Tensor(var));
        }
        leaf.push(Part::Tensor(loss.detach().view([1])));
        leaf.push(Part::Tensor(grad_sq));
        (leaf, kept)
    }

    /// Runs the block's workers in index order, folding their bundles in tree order.
    pub fn run(mut self) -> BlockResult {
        tch::set_num_threads(1);
        let mut previous = std::mem::replace(&mut self.previous, Previous::Taken(Vec::new()));
        let mut sum = TreeSum::new();
        let mut grads = Vec::with_capacity(self.workers.len());
        for (j, worker) in self.workers.clone().enumerate() {
            let (leaf, g) = self.worker(worker, previous.get(j));
            sum.push(leaf);
            grads.push(g);
        }
        let sum = sum.finish().expect("a block has at least one worker");
        // The tree has let go of every leaf: each kept gradient's values are its own again.
        let grads = grads
            .into_iter()
            .map(|g| {
                g.map(|parts| {
                    parts
                        .into_iter()
                        .map(|v| Arc::try_unwrap(v).expect("the tree holds no leaf once finished"))
                        .collect()
                })
            })
            .collect();
        BlockResult {
            workers: self.workers.clone(),
            sum,
            grads,
        }
    }
}
