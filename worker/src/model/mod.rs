//! Networks written as pure functions of their parameters.
//!
//! A model is a description (shapes, how to initialise, how to compute) holding no tensors, so
//! one instance serves every compute thread; each logical worker passes in its own (perturbed)
//! parameter tensors. Parameters are listed in a fixed canonical order that checkpoints, the
//! reduction and the hash all follow.

mod mlp;
mod onnx;
mod resnet;
mod vgg;

use std::sync::Arc;

use gnc_contract::architecture::Architecture;
pub use gnc_contract::architecture::{Init, ParamSpec};
use gnc_proto::ModelSpec;
use tch::{Kind, Tensor};

use crate::device::Device;
use crate::kernels::{
    self,
    linear::{Activation, Tape, WeightValues, Weights},
};
use crate::methods::GncWeights;
use crate::rng::{Purpose, Stream};
use crate::state::SavedGradient;

pub use mlp::Mlp;
pub use onnx::OnnxNet;
pub use resnet::Resnet;
pub use vgg::Vgg;

/// Batch normalisation state of a forward pass.
pub enum BatchNorm<'a> {
    /// Normalise over the batch and record each layer's batch mean and unbiased variance.
    Train { stats: Vec<(Tensor, Tensor)> },
    /// Normalise with the given running statistics, one (mean, var) per layer.
    Eval {
        running: &'a [(Tensor, Tensor)],
        next: usize,
    },
}

pub const BN_EPS: f64 = 1e-5;

impl BatchNorm<'_> {
    pub fn train() -> BatchNorm<'static> {
        BatchNorm::Train { stats: Vec::new() }
    }

    pub fn eval(running: &[(Tensor, Tensor)]) -> BatchNorm<'_> {
        BatchNorm::Eval { running, next: 0 }
    }

    /// Applies one BatchNorm layer with affine parameters `weight`, `bias`.
    pub fn apply(&mut self, x: &Tensor, weight: &Tensor, bias: &Tensor) -> Tensor {
        self.apply_with_eps(x, weight, bias, BN_EPS)
    }

    /// [`BatchNorm::apply`] with `eps` added to the variance (a model file's own).
    pub fn apply_with_eps(
        &mut self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        eps: f64,
    ) -> Tensor {
        match self {
            BatchNorm::Train { stats } => {
                // Momentum 1 makes libtorch write exactly this batch's mean and unbiased
                // variance into the buffers; the engine combines them over logical workers in
                // the fixed tree (DESIGN.md §3, BatchNorm).
                let c = weight.size()[0];
                let mean = Tensor::zeros([c], (Kind::Float, x.device()));
                let var = Tensor::zeros([c], (Kind::Float, x.device()));
                let y = x.batch_norm(
                    Some(weight),
                    Some(bias),
                    Some(&mean),
                    Some(&var),
                    true,
                    1.0,
                    eps,
                    false,
                );
                stats.push((mean, var));
                y
            }
            BatchNorm::Eval { running, next } => {
                let (mean, var) = &running[*next];
                *next += 1;
                x.batch_norm(
                    Some(weight),
                    Some(bias),
                    Some(mean),
                    Some(var),
                    false,
                    0.0,
                    eps,
                    false,
                )
            }
        }
    }

    /// The recorded per-layer (mean, var) of a training pass.
    pub fn into_stats(self) -> Vec<(Tensor, Tensor)> {
        match self {
            BatchNorm::Train { stats } => stats,
            BatchNorm::Eval { .. } => Vec::new(),
        }
    }
}

/// Hands out parameters in canonical order during a forward pass.
pub struct ParamCursor<'a> {
    source: Source<'a>,
    next: usize,
    /// The leaves handed out so far (Leaves and Gnc), in canonical order.
    made: Vec<Tensor>,
    /// The portable linear layers of the pass that need a backward ([`ParamCursor::linear`]).
    tape: Tape,
}

enum Source<'a> {
    /// These tensors, as they are (inference, or a second pass over weights already made).
    Given(&'a [Tensor]),
    /// Fresh leaf tensors that require grad, handed out as they are; with their values too
    /// where the iteration shares them (`methods::Unperturbed`), which the portable linear
    /// layers then read instead of copying each weight out of its tensor per worker.
    Leaves(Vec<Tensor>, Option<&'a [Arc<Vec<f32>>]>),
    /// GNC (methods/gnc.rs): parameter k is base_k + neg_scale_k ⊙ g_k(t-1), made from g_k(t-1)
    /// (consumed) when the pass first asks for it, as a fresh leaf that requires grad, or as
    /// values for a portable linear layer. Made layer by layer, it is still in cache when the
    /// layer reads it.
    Gnc {
        weights: &'a GncWeights,
        prev: SavedGradient,
    },
}

impl<'a> ParamCursor<'a> {
    pub fn new(params: &'a [Tensor]) -> Self {
        ParamCursor {
            source: Source::Given(params),
            next: 0,
            made: Vec::new(),
            tape: Tape::default(),
        }
    }

    /// Leaves to differentiate with respect to: each is made a leaf that requires grad.
    pub fn leaves(weights: Vec<Tensor>) -> Self {
        Self::leaves_with(weights, None)
    }

    /// [`ParamCursor::leaves`] whose values are also given, one row-major `Vec` per weight
    /// (the same values as the tensors'), for the portable linear layers to read in place.
    pub fn leaves_with_values(weights: Vec<Tensor>, values: &'a [Arc<Vec<f32>>]) -> Self {
        assert_eq!(weights.len(), values.len(), "one values per weight");
        Self::leaves_with(weights, Some(values))
    }

    fn leaves_with(weights: Vec<Tensor>, values: Option<&'a [Arc<Vec<f32>>]>) -> Self {
        ParamCursor {
            made: Vec::with_capacity(weights.len()),
            source: Source::Leaves(
                weights
                    .into_iter()
                    .map(|w| w.set_requires_grad(true))
                    .collect(),
                values,
            ),
            next: 0,
            tape: Tape::default(),
        }
    }

    /// GNC's x_i = base + neg_scale ⊙ g_i(t-1), made lazily from `prev`.
    pub fn gnc(weights: &'a GncWeights, prev: SavedGradient) -> Self {
        ParamCursor {
            made: Vec::with_capacity(prev.len()),
            source: Source::Gnc { weights, prev },
            next: 0,
            tape: Tape::default(),
        }
    }

    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Tensor {
        let k = self.next;
        self.next += 1;
        match &mut self.source {
            Source::Given(params) => params[k].shallow_clone(),
            Source::Leaves(leaves, _) => {
                self.made.push(leaves[k].shallow_clone());
                leaves[k].shallow_clone()
            }
            Source::Gnc { weights, prev } => {
                let x = weights.make(k, std::mem::take(&mut prev[k]));
                let w = weights
                    .device
                    .floats(&x, weights.shape(k))
                    .set_requires_grad(true);
                kernels::buffers::recycle(x);
                self.made.push(w.shallow_clone());
                w
            }
        }
    }

    /// A fully connected layer `h Wᵀ + b` with the next two parameters (W, then b): libtorch's
    /// at the native level, gnc's portable product at the portable level (recorded for the
    /// backward when W requires grad; see [`kernels::linear`]).
    pub fn linear(&mut self, h: &Tensor) -> Tensor {
        self.linear_with(h, Activation::Identity)
    }

    /// `relu(h Wᵀ + b)`: [`ParamCursor::linear`] and libtorch's ReLU, the same bits; at the
    /// portable level the ReLU is the layer's own, so that an MLP's layers run one after the
    /// other with no libtorch between them (see [`kernels::linear`]).
    pub fn linear_relu(&mut self, h: &Tensor) -> Tensor {
        self.linear_with(h, Activation::Relu)
    }

    fn linear_with(&mut self, h: &Tensor, activation: Activation) -> Tensor {
        let k = self.next;
        if let (true, Source::Gnc { weights, prev }) = (kernels::portable(), &mut self.source) {
            // The worker's weights go from its saved gradient straight into the buffer the
            // product reads; the weight needs no tensor, as autograd does not differentiate
            // it (kernels::linear::gradients), so an empty one holds its place.
            let outputs = weights.shape(k)[0] as usize;
            let w = WeightValues::Own(weights.make(k, std::mem::take(&mut prev[k])));
            self.next += 1;
            self.made.push(Tensor::new());
            let b = &self.next();
            let tape = Some(&mut self.tape);
            let weights = Weights { w, outputs, b };
            return kernels::linear::forward_values(h, weights, activation, (k, k + 1), tape);
        }
        let shared = match &self.source {
            Source::Leaves(_, Some(values)) => Some(values[k].clone()),
            _ => None,
        };
        let (w, b) = (self.next(), self.next());
        if !kernels::portable() {
            let y = h.linear(&w, Some(&b));
            return match activation {
                Activation::Identity => y,
                Activation::Relu => y.relu(),
            };
        }
        if let Some(wv) = shared {
            // A leaf: its gradient comes from the tape, so the layer is always recorded.
            let outputs = w.size()[0] as usize;
            let tape = Some(&mut self.tape);
            let weights = Weights {
                w: WeightValues::Shared(wv),
                outputs,
                b: &b,
            };
            return kernels::linear::forward_values(h, weights, activation, (k, k + 1), tape);
        }
        let tape = w.requires_grad().then_some(&mut self.tape);
        kernels::linear::forward(h, &w, &b, activation, (k, k + 1), tape)
    }

    /// The portable layers recorded so far, for [`kernels::linear::gradients`].
    pub fn into_tape(self) -> Tape {
        self.tape
    }

    /// The leaves the pass used, in canonical order (to differentiate with respect to), and
    /// its portable layers; all of the leaves, or this panics.
    pub fn into_made(self) -> (Vec<Tensor>, Tape) {
        let expected = match &self.source {
            Source::Given(_) => 0,
            Source::Leaves(leaves, _) => leaves.len(),
            Source::Gnc { prev, .. } => prev.len(),
        };
        {
            assert_eq!(
                self.made.len(),
                expected,
                "the forward pass used every parameter"
            );
        }
        (self.made, self.tape)
    }
}

/// A network.
pub trait Model: Send + Sync {
    /// Its parameters and BatchNorm layers, as shapes.
    fn architecture(&self) -> &Architecture;
    /// Logits for a batch `x` of shape `[n, example shape...]`, taking each parameter from `p`
    /// (in canonical order) when the pass reaches it.
    fn forward_with(&self, p: &mut ParamCursor, bn: &mut BatchNorm, x: &Tensor) -> Tensor;

    /// Parameters in canonical order.
    fn params(&self) -> &[ParamSpec] {
        &self.architecture().params
    }

    /// Channels of each BatchNorm layer, in the order the forward pass applies them.
    fn bn_channels(&self) -> &[i64] {
        &self.architecture().bn_channels
    }

    /// Logits for a batch `x` of shape `[n, example shape...]`.
    fn forward(&self, params: &[Tensor], bn: &mut BatchNorm, x: &Tensor) -> Tensor {
        self.forward_with(&mut ParamCursor::new(params), bn, x)
    }
}

/// Builds the network a spec asks for, of that spec's `architecture` ([`Architecture::of`]).
pub fn build(spec: &ModelSpec, architecture: Architecture) -> Box<dyn Model> {
    match spec {
        ModelSpec::Mlp { hidden, .. } => Box::new(Mlp::new(architecture, hidden.len() + 1)),
        ModelSpec::Vgg {
            channels,
            convs_per_stage,
            ..
        } => Box::new(Vgg::new(architecture, channels.len(), *convs_per_stage)),
        ModelSpec::Resnet { depth, .. } => Box::new(Resnet::new(architecture, (depth - 2) / 6)),
        ModelSpec::Onnx { .. } => Box::new(OnnxNet::new(architecture)),
    }
}

/// Initial parameters, drawn on the CPU from counter-based streams (one per parameter), so
/// they do not depend on libtorch's generator or the device (DESIGN.md §4.4).
pub fn init_params(model: &dyn Model, seed: u64, device: Device) -> Vec<Tensor> {
    model
        .params()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut values = vec![0f32; p.numel()];
            match p.init {
                Init::Uniform { bound } => {
                    Stream::new(seed, Purpose::Init, &[i as u64]).fill_uniform(
                        &mut values,
                        -bound as f32,
                        bound as f32,
                    );
                }
                Init::Zeros => {}
                Init::Ones => values.fill(1.0),
                Init::File => values.copy_from_slice(&file_graph(model).params[i].values),
            }
            device.floats(&values, &p.shape)
        })
        .collect()
}

/// Initial running statistics: mean 0, variance 1 per BatchNorm layer, or the model file's
/// when the run starts from its values.
pub fn init_running_stats(model: &dyn Model, device: Device) -> Vec<(Tensor, Tensor)> {
    if model.architecture().init == gnc_proto::WeightInit::File {
        return file_graph(model)
            .batch_norms
            .iter()
            .map(|b| {
                let shape = [b.channels];
                (
                    device.floats(&b.running_mean, &shape),
                    device.floats(&b.running_var, &shape),
                )
            })
            .collect();
    }
    model
        .bn_channels()
        .iter()
        .map(|&c| (device.zeros(&[c]), device.ones(&[c])))
        .collect()
}

/// The graph whose values a model with `init = "file"` starts from.
fn file_graph(model: &dyn Model) -> &gnc_onnx::Graph {
    model
        .architecture()
        .onnx
        .as_deref()
        .expect("init = \"file\" is valid for ONNX models only, which hold their graph")
}
