//! The gnc training engine: data, models, methods (baseline, GNC, RNC, GNCtoRNC, noise
//! enhancement), optimisers, schedules, the fixed-tree reduction over logical workers,
//! checkpoints and metrics. See DESIGN.md §3 for the math and §4 for the determinism contract.

pub mod analysis;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod diagnostics;
pub mod distributed;
pub mod driver;
pub mod engine;
pub mod eval;
pub mod hash;
pub mod kernels;
pub mod methods;
pub mod metrics_log;
pub mod model;
pub mod optim;
pub mod pin;
pub mod rng;
pub mod run_loop;
pub mod schedule;
pub mod state;
pub mod step;
pub mod tensor_file;
pub mod tree;

use std::path::PathBuf;

pub use driver::{RunOptions, train};
pub use gnc_contract::observer::Observer;
pub use gnc_contract::{CheckpointError, DataError, RunSummary};

/// Why a training run stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Spec(#[from] gnc_proto::SpecError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{0}: {1}")]
    Io(PathBuf, String),
    #[error(
        "training diverged at iteration {iteration}: loss is {loss}; {}",
        kept_checkpoint(*last_checkpoint)
    )]
    Diverged {
        iteration: u64,
        loss: f64,
        /// Iterations completed by the newest checkpoint on disk, if any.
        last_checkpoint: Option<u64>,
    },
    #[error("{0}")]
    Config(String),
    #[error("a compute thread failed: {0}")]
    Thread(String),
}

fn kept_checkpoint(last: Option<u64>) -> String {
    match last {
        Some(k) => format!("the last good checkpoint (iteration {k}) is kept"),
        None => "no checkpoint had been written yet".into(),
    }
}
