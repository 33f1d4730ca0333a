//! A lowered graph: nodes in execution order over value slots, its parameters in canonical
//! order, its BatchNorm layers and its constants.

use std::path::Path;

use prost::Message;

use crate::error::OnnxError;
use crate::op::Op;
use crate::proto::ModelProto;

/// What a node reads: a value computed earlier (slot 0 is the graph's input) or a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    Value(usize),
    Constant(usize),
}

/// One operation; its result goes to value slot `output`.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The ONNX node's name (or its first output's, where it has none), for messages.
    pub name: String,
    pub op: Op,
    pub inputs: Vec<Operand>,
    pub output: usize,
}

/// A constant operand (a scalar of GELU's decomposition, a bias added to a product).
#[derive(Debug, Clone, PartialEq)]
pub struct Constant {
    pub shape: Vec<i64>,
    pub values: Vec<f32>,
}

/// What a parameter is to its layer: how it is drawn when the job does not start from the
/// file's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A layer's weight, drawn uniformly from its fans (He or Glorot).
    Weight { fan_in: i64, fan_out: i64 },
    /// A layer's bias or a BatchNorm's shift: 0.
    Zero,
    /// A BatchNorm's scale: 1.
    One,
}

/// A trainable tensor, in gnc's layout (a fully connected weight as `[out, in]`, whichever way
/// the file stores it), with the file's values in that layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// The initializer's name in the file.
    pub name: String,
    pub shape: Vec<i64>,
    pub kind: ParamKind,
    pub values: Vec<f32>,
}

/// A BatchNorm layer's channels and the file's running statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormLayer {
    pub channels: i64,
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
}

/// A network gnc can train, read from an ONNX file.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// The input's shape after the batch dimension (`[C, H, W]`, `[D]`).
    pub example_shape: Vec<i64>,
    /// The width of the single output: the classes of the softmax cross-entropy gnc adds.
    pub outputs: i64,
    pub nodes: Vec<Node>,
    /// Value slots: 0 is the input, each node writes one.
    pub values: usize,
    /// The slot of the graph's output.
    pub output: usize,
    pub params: Vec<Param>,
    pub batch_norms: Vec<BatchNormLayer>,
    pub constants: Vec<Constant>,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
}

impl Graph {
    /// Reads and lowers the ONNX model at `path`.
    pub fn load(path: &Path) -> Result<Graph, OnnxError> {
        let bytes = std::fs::read(path).map_err(|e| OnnxError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Graph::from_bytes(&bytes, path)
    }

    /// Lowers the ONNX model in `bytes`; `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Graph, OnnxError> {
        let model = ModelProto::decode(bytes).map_err(|e| OnnxError::Decode {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let graph = model.graph.ok_or_else(|| OnnxError::Graph {
            path: path.to_path_buf(),
            message: "the model has no graph".into(),
        })?;
        let mut lowered = crate::lower::lower(&graph, path)?;
        lowered.sha256 = crate::sha256_hex(bytes);
        Ok(lowered)
    }

    /// How many parameters (scalars) the network trains.
    pub fn parameter_count(&self) -> usize {
        self.params.iter().map(|p| p.values.len()).sum()
    }
}
