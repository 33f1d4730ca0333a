//! The one start-up of a worker process that trains a block of logical workers, whatever
//! carries its reduction (shared memory on one machine, MPI across hosts): the spec's level
//! pinned before any tensor exists, the trainer on the process's device, the transport opened
//! (it maps or joins whatever carries the reduction), the state — fresh, or the block's part of
//! a checkpoint — and the run loop. Transports differ only in how they are opened.

use std::path::Path;

use gnc_contract::observer::Unobserved;
use gnc_proto::ValidSpec;
use gnc_tree::Block;

use super::WorkerError;
use super::ckpt;
use crate::EngineError;
use crate::device::Device;
use crate::engine::Trainer;
use crate::run_loop::{self, Course, Transport};

/// What a worker process is asked to train.
pub struct Part<'a> {
    pub spec: &'a ValidSpec,
    pub device: Device,
    /// Its logical workers.
    pub block: Block,
    /// The job's output directory (records, checkpoints).
    pub out: &'a Path,
    /// Resume from the checkpoint after this many iterations.
    pub resume_from: Option<u64>,
    /// Stop (with a checkpoint) once this many iterations are complete.
    pub stop_after: Option<u64>,
}

/// Trains `part` to its end (or its stop), over the transport `open` makes for the trainer.
pub fn train_part<T: Transport>(
    part: &Part,
    open: impl FnOnce(&Trainer) -> Result<T, T::Error>,
) -> Result<(), T::Error>
where
    T::Error: From<EngineError> + From<WorkerError>,
{
    crate::pin::pin_process_environment(part.spec.reproducibility).map_err(EngineError::Config)?;
    // One compute thread per process: the processes are the parallelism.
    let mut trainer = Trainer::on(part.spec, 1, part.device)?;
    let mut transport = open(&trainer)?;
    let mut state = trainer.fresh_state();
    if let Some(iteration) = part.resume_from {
        ckpt::resume(&trainer, &mut state, part.out, iteration, part.block)?;
    }
    let course = Course {
        out: part.out,
        stop_after: part.stop_after,
        resumed: part.resume_from.is_some(),
    };
    // Progress goes to the supervisor through the transport, not to an observer.
    run_loop::run(
        &mut trainer,
        &mut state,
        &mut transport,
        &course,
        &mut Unobserved,
    )?;
    Ok(())
}
