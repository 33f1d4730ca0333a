//! Checkpoints of a multi-process run. Each process holds the previous gradients of its own
//! block only, so every process writes those to a part file and announces it through its
//! transport's [`PartsBarrier`] (a control word in shared memory, a barrier over MPI); process
//! 0 then names every part, with its hash, in a manifest written after the main file (the rest
//! of the state, identical in every process). A crash before the manifest leaves the previous
//! checkpoint the newest complete one. Loading merges the parts, so any process count (or the
//! in-process engine) resumes any checkpoint.

use std::path::Path;
use std::time::{Duration, Instant};

use gnc_shm::ControlBlock;
use gnc_tree::Block;

use super::WorkerError;
use super::hooks::Hooks;
use gnc_contract::manifest;
use gnc_contract::protocol::{CHECKPOINT_WORD, part_word};

use crate::checkpoint;
use crate::engine::Trainer;
use crate::state::TrainState;

/// Prefix of the tensors that only the hosting process has.
const PREV_GRAD: &str = "prev_grad/";

/// How the processes learn that every part of a checkpoint is durable.
pub trait PartsBarrier {
    /// Called by every process once its part of checkpoint `iteration` is durable; returns in
    /// process 0 once every process's part is.
    fn part_durable(&self, iteration: u64) -> Result<(), WorkerError>;

    /// Process 0, once the manifest of checkpoint `iteration` is durable.
    fn checkpoint_complete(&self, _iteration: u64) {}
}

/// Who this process is, for writing its share of a checkpoint.
pub struct Share<'a> {
    pub process: usize,
    pub blocks: &'a [Block],
    pub generation: u64,
    pub barrier: &'a dyn PartsBarrier,
}

/// The shared-memory barrier: part words in the control block, which the supervisor watches.
pub struct ControlWords<'a> {
    pub process: usize,
    pub blocks: &'a [Block],
    pub control: &'a ControlBlock,
    pub peer_timeout: Duration,
    pub hooks: &'a Hooks,
}

impl PartsBarrier for ControlWords<'_> {
    fn part_durable(&self, iteration: u64) -> Result<(), WorkerError> {
        self.hooks.part_written(iteration);
        // Release: the part is durable (fsync'd, renamed, directory fsync'd) before process 0
        // can see this value.
        self.control.store(part_word(self.process), iteration);
        if self.process == 0 {
            self.wait_for_parts(iteration)?;
        }
        Ok(())
    }

    fn checkpoint_complete(&self, iteration: u64) {
        // Release: the manifest is durable before the supervisor can see this value.
        self.control.store(CHECKPOINT_WORD, iteration + 1);
    }
}

/// Writes this process's share of the checkpoint of `state` (all of it, for process 0).
pub fn write(
    trainer: &Trainer,
    state: &TrainState,
    out: &Path,
    share: &Share<'_>,
) -> Result<(), WorkerError> {
    let spec = trainer.spec();
    let dir = out.join("checkpoints");
    let iteration = state.iteration;
    let (part, main): (Vec<_>, Vec<_>) = state
        .to_named(trainer.model().params())
        .into_iter()
        .partition(|(name, _)| name.starts_with(PREV_GRAD));
    let block = share.blocks[share.process];
    checkpoint::write_part(&dir, iteration, block, &part).map_err(crate::EngineError::from)?;
    share.barrier.part_durable(iteration)?;
    if share.process != 0 {
        return Ok(());
    }
    let parts = share
        .blocks
        .iter()
        .map(|&b| checkpoint::part_ref(&dir, iteration, b))
        .collect::<Result<Vec<_>, _>>()
        .map_err(crate::EngineError::from)?;
    let manifest = trainer.manifest(state, share.generation, parts);
    checkpoint::write(&dir, manifest, &main, spec.checkpoint.keep)
        .map_err(crate::EngineError::from)?;
    share.barrier.checkpoint_complete(iteration);
    Ok(())
}

impl ControlWords<'_> {
    fn wait_for_parts(&self, iteration: u64) -> Result<(), WorkerError> {
        let started = Instant::now();
        for (peer, &(lo, hi)) in self.blocks.iter().enumerate() {
            // Acquire (in load): pairs with the peer's Release store above.
            while self.control.load(part_word(peer)) < iteration {
                if started.elapsed() > self.peer_timeout {
                    return Err(WorkerError::PeerTimeout {
                        peer,
                        lo,
                        hi,
                        what: "write its checkpoint part for",
                        iteration,
                        waited: started.elapsed(),
                    });
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    }
}

/// Loads checkpoint `iteration` into `state` (a fresh state), keeping only the previous
/// gradients of `block`.
pub fn resume(
    trainer: &Trainer,
    state: &mut TrainState,
    out: &Path,
    iteration: u64,
    block: Block,
) -> Result<(), WorkerError> {
    let file = manifest::manifest_file(&out.join("checkpoints"), iteration);
    let loaded =
        checkpoint::read(&file, &trainer.spec().spec_hash()).map_err(crate::EngineError::from)?;
    state
        .restore(trainer.model().params(), loaded)
        .map_err(crate::EngineError::from)?;
    for (w, g) in state.prev_grads.iter_mut().enumerate() {
        if !(block.0..block.1).contains(&w) {
            *g = None;
        }
    }
    Ok(())
}
