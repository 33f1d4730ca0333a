//! What gnc's supervisor and its worker processes share, in a crate without libtorch, so the
//! supervisor (`gncd`, `gncctl`) links none: the worker command line ([`args`]), the segment
//! names, control words and exit codes ([`protocol`]), checkpoint and stop requests
//! ([`request`]) and requests from outside a run ([`interrupts`]), what a run reports to its
//! watcher ([`observer`]), the result file ([`summary`]), checkpoint manifests ([`manifest`]),
//! the output directory's lock ([`output_lock`]), the progress files of ranks across hosts
//! ([`heartbeat`]), and the run plan — parameter shapes from the model spec, example counts
//! from the data files' headers, iteration counts ([`plan`], [`architecture`],
//! [`data_files`]). Both sides build these only here, so they cannot drift apart.

pub mod architecture;
pub mod args;
pub mod atomic;
pub mod data_files;
pub mod heartbeat;
pub mod interrupts;
pub mod manifest;
pub mod observer;
pub mod output_lock;
pub mod plan;
pub mod protocol;
pub mod request;
pub mod summary;
pub mod tensor_files;

use std::path::PathBuf;

pub use summary::RunSummary;

/// A data set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("data file {0} is missing (run `make data` to fetch the data sets)")]
    Missing(PathBuf),
    #[error("cannot read data file {0}: {1}")]
    Io(PathBuf, String),
    #[error("data file {0} is not valid: {1}")]
    Format(PathBuf, String),
    #[error("data spec: {0}")]
    Spec(String),
}

/// A checkpoint could not be written or used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint file {0}: {1}")]
    Io(PathBuf, String),
    #[error("checkpoint {0} is damaged: {1}")]
    Format(PathBuf, String),
    #[error(
        "checkpoint {path} belongs to another job spec (spec hash {found}, this job's is \
         {expected}); use another output_dir or remove the old run"
    )]
    SpecMismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("checkpoint lacks tensor {0}")]
    Missing(String),
    #[error("checkpoint has tensor {0}, which this job does not")]
    Unexpected(String),
    #[error("checkpoint tensor {name} has shape {found:?}, this job needs {expected:?}")]
    Shape {
        name: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
}
