//! The operations a lowered graph is made of: each one gnc computes with its own kernels.

/// The ONNX op types gnc trains (Dropout is the identity: gnc's randomness is its own, and the
/// GNC papers' networks have none).
pub const SUPPORTED_OPS: &[&str] = &[
    "Gemm",
    "MatMul (+ Add of a bias)",
    "Conv",
    "BatchNormalization",
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "Gelu",
    "Erf",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "ReduceMean",
    "Flatten",
    "Reshape",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Concat",
    "Identity",
    "Dropout",
    "Constant",
];

/// One 2-D window's geometry (pooling and convolution), each as (height, width).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub kernel: [i64; 2],
    pub stride: [i64; 2],
    /// Symmetric zero padding (ONNX's begin and end pads must agree).
    pub padding: [i64; 2],
    pub dilation: [i64; 2],
}

/// (Identity and Dropout need no op: their output names their input's value.)
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `h Wᵀ + b` with the next two parameters, W as `[out, in]` (Gemm, or MatMul + Add).
    Linear,
    /// 2-D convolution with the next parameter as its weight `[out, in / groups, kh, kw]`, and
    /// the one after as its bias when `bias`.
    Conv {
        window: Window,
        groups: i64,
        bias: bool,
    },
    /// BatchNorm over the channels (dim 1), per logical worker, with the next two parameters
    /// (scale, shift) and the next BatchNorm layer's running statistics.
    BatchNorm {
        eps: f64,
    },
    Relu,
    LeakyRelu {
        alpha: f64,
    },
    Sigmoid,
    Tanh,
    /// `approximate = "tanh"` when `tanh`.
    Gelu {
        tanh: bool,
    },
    Erf,
    MaxPool {
        window: Window,
        ceil: bool,
    },
    AveragePool {
        window: Window,
        ceil: bool,
        count_include_pad: bool,
    },
    GlobalAveragePool,
    /// Mean over `axes` (never the batch's), as ONNX's ReduceMean.
    ReduceMean {
        axes: Vec<i64>,
        keepdims: bool,
    },
    /// Everything after the batch dimension into one (ONNX Flatten with axis 1).
    Flatten,
    /// To `[n, dims...]` for a batch of n; 0 copies the input's dimension, -1 is inferred.
    Reshape {
        dims: Vec<i64>,
    },
    Add,
    Sub,
    Mul,
    Div,
    /// Along `axis` (never the batch's; negative counts from the end).
    Concat {
        axis: i64,
    },
}
