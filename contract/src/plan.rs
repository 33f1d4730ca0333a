//! What a run is, in numbers, before any tensor exists: the data's shape, the network's
//! parameters, the iterations. The worker's trainer and the supervisor both build it here —
//! the trainer from the examples it loaded, the supervisor from the data files' headers — so
//! the bundle the supervisor sizes the shared memory for is the one the workers fill.

use gnc_proto::{JobSpec, SpecError, ValidSpec};

use crate::DataError;
use crate::architecture::{Architecture, ModelError};
use crate::data_files::DataShape;

/// Why a run cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("model.path: {0}")]
    Model(#[from] ModelError),
}

/// A job's shapes and iteration counts.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPlan {
    pub data: DataShape,
    pub architecture: Architecture,
    /// floor(N / B).
    pub iterations_per_epoch: u64,
    /// Epochs × iterations per epoch.
    pub total_iterations: u64,
}

impl RunPlan {
    /// Plans `spec` from the headers of its data files (reads no examples).
    pub fn read(spec: &ValidSpec) -> Result<RunPlan, PlanError> {
        let data = DataShape::read(&spec.data)?;
        RunPlan::new(spec, data)
    }

    /// Plans `spec` for data of this shape; refuses a large batch B = b·M larger than the
    /// training split, which would make an epoch of no iterations.
    pub fn new(spec: &JobSpec, data: DataShape) -> Result<RunPlan, PlanError> {
        let p = &spec.parallel;
        let iterations_per_epoch = iterations_per_epoch(data.train, p.workers, p.small_batch);
        if iterations_per_epoch == 0 {
            return Err(SpecError::Invalid {
                key: "parallel.small_batch".into(),
                message: format!(
                    "the large batch B = b * M = {} exceeds the {} training examples",
                    spec.large_batch(),
                    data.train
                ),
            }
            .into());
        }
        Ok(RunPlan {
            architecture: Architecture::of(&spec.model, &data.example, data.classes)?,
            data,
            iterations_per_epoch,
            total_iterations: spec.schedule.epochs as u64 * iterations_per_epoch,
        })
    }

    /// Floats in one logical worker's flattened gradient bundle.
    pub fn bundle_len(&self) -> usize {
        crate::protocol::bundle_len(&self.architecture.bundle_shapes())
    }
}

/// floor(N / B): iterations in one epoch of `examples` with `workers` × `small_batch` each.
pub fn iterations_per_epoch(examples: usize, workers: usize, small_batch: usize) -> u64 {
    (examples / (workers * small_batch)) as u64
}
