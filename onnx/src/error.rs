//! Why an ONNX file cannot be trained; every message names the file, and the node where there
//! is one.

use std::path::PathBuf;

use crate::op::SUPPORTED_OPS;

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot read the model file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path} is not an ONNX model (the protobuf does not decode: {message})")]
    Decode { path: PathBuf, message: String },
    #[error(
        "{path}: node {node:?} has op type {op_type}, which gnc cannot train; supported: {}",
        SUPPORTED_OPS.join(", ")
    )]
    Unsupported {
        path: PathBuf,
        node: String,
        op_type: String,
    },
    /// A node gnc offers, used in a way it cannot train (an attribute, an input).
    #[error("{path}: node {node:?} ({op_type}): {message}")]
    Node {
        path: PathBuf,
        node: String,
        op_type: String,
        message: String,
    },
    /// The graph as a whole (inputs, outputs, shapes).
    #[error("{path}: {message}")]
    Graph { path: PathBuf, message: String },
}
