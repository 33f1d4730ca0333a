//! A `gnc-worker` process over shared memory: its start (parent, device, spec, layout), then
//! [`super::start::train_part`] over [`ShmTransport`] — the cross-block sum done by the
//! shared-memory all-reduce, and the files (metrics, evaluation, checkpoint manifest, result)
//! left to process 0.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gnc_proto::JobSpec;
use gnc_shm::{ControlBlock, Segment, ShardedReducer, SlotArray};
use gnc_tree::{Block, validate_layout};
use nix::sys::signal::Signal;

use super::WorkerError;
use super::ckpt::{self, ControlWords, Share};
use super::flat::{Unflatten, flatten_into};
use super::hooks::Hooks;
use super::start::{Part, train_part};
use crate::device::Device;
use crate::engine::{Prepared, Trainer};
use crate::run_loop::Transport;
use crate::state::TrainState;
use crate::tree::Bundle;
use gnc_contract::args::WorkerArgs;
use gnc_contract::protocol::{self, GENERATION_WORD, begun_word, done_word};
use gnc_contract::request::{self, Action};

/// Asks the kernel to SIGKILL us when the supervisor dies, then checks it has not already.
fn die_with_parent(parent_pid: u32) -> Result<(), WorkerError> {
    nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL)).map_err(WorkerError::DeathSignal)?;
    let parent = nix::unistd::getppid().as_raw();
    if parent != parent_pid as i32 {
        return Err(WorkerError::ParentGone {
            expected: parent_pid,
            found: parent,
        });
    }
    Ok(())
}

/// The generation's segments, opened and checked against what this worker expects.
struct Segments {
    control: ControlBlock,
    block_sums: Arc<SlotArray>,
    shards: Arc<SlotArray>,
}

impl Segments {
    fn open(args: &WorkerArgs, len: usize) -> Result<Segments, WorkerError> {
        let (job, g, p) = (&args.shm_job, args.generation, args.blocks.0.len());
        let control = ControlBlock::open(
            &protocol::name(job, g, protocol::CONTROL),
            protocol::control_words(p),
        )?;
        let (sums_spec, shards_spec) = protocol::reduction_specs(job, g, p, len);
        let array = |what, spec| -> Result<Arc<SlotArray>, WorkerError> {
            let segment = Segment::open(&protocol::name(job, g, what), &spec)?;
            SlotArray::new(segment)
                .map(Arc::new)
                .map_err(|e| WorkerError::Reduce(e.into()))
        };
        Ok(Segments {
            control,
            block_sums: array(protocol::BLOCK_SUMS, sums_spec)?,
            shards: array(protocol::SHARDS, shards_spec)?,
        })
    }

    fn check_generation(&self, ours: u64) -> Result<(), WorkerError> {
        match self.control.load(GENERATION_WORD) {
            found if found == ours => Ok(()),
            found => Err(WorkerError::GenerationChanged { ours, found }),
        }
    }
}

/// Runs this worker's part of the job to the end (or to `--stop-after`).
pub fn run(args: &WorkerArgs) -> Result<(), WorkerError> {
    die_with_parent(args.parent_pid)?;
    args.device.available()?;
    let spec = JobSpec::load_for_worker(&args.spec)
        .map_err(|e| WorkerError::Spec(args.spec.clone(), e.to_string()))?;
    let blocks = args.blocks.0.clone();
    validate_layout(spec.parallel.workers, &blocks)?;
    let block = *blocks.get(args.process).ok_or(WorkerError::NoSuchProcess {
        process: args.process,
        processes: blocks.len(),
    })?;
    let part = Part {
        spec: &spec,
        device: Device::new(args.device),
        block,
        out: &args.out,
        resume_from: args.resume_from,
        stop_after: args.stop_after,
    };
    train_part(&part, |trainer| ShmTransport::open(args, trainer, blocks))
}

/// This process's place in a group of worker processes over shared memory: its block of
/// logical workers, the generation's segments and the sharded all-reduce over them.
pub struct ShmTransport {
    process: usize,
    blocks: Vec<Block>,
    generation: u64,
    peer_timeout: Duration,
    segments: Segments,
    reducer: ShardedReducer,
    shapes: Vec<Vec<i64>>,
    hooks: Hooks,
}

impl ShmTransport {
    fn open(
        args: &WorkerArgs,
        trainer: &Trainer,
        blocks: Vec<Block>,
    ) -> Result<ShmTransport, WorkerError> {
        let (p, g) = (args.process, args.generation);
        let shapes = trainer.bundle_shapes();
        let len = protocol::bundle_len(&shapes);
        let segments = Segments::open(args, len)?;
        segments.check_generation(g)?;
        let reducer = ShardedReducer::new(
            p,
            trainer.spec().parallel.workers,
            &blocks,
            len,
            segments.block_sums.clone(),
            segments.shards.clone(),
        )
        .map_err(|e| WorkerError::from_reduce(e, &blocks, g))?;
        Ok(ShmTransport {
            process: p,
            generation: g,
            peer_timeout: Duration::from_millis(args.peer_timeout_ms),
            segments,
            reducer,
            shapes,
            hooks: Hooks::from_env(p, g),
            blocks,
        })
    }
}

impl Transport for ShmTransport {
    type Error = WorkerError;

    fn parallelism(&self, _trainer: &Trainer) -> usize {
        // One compute thread in each worker process.
        self.blocks.len()
    }

    fn writes_records(&self) -> bool {
        self.process == 0
    }

    fn boundary(&mut self, t: u64) -> Result<Option<Action>, WorkerError> {
        self.hooks.iteration_begins(t);
        self.segments.check_generation(self.generation)?;
        Ok(request::at_boundary(&self.segments.control, t))
    }

    fn begin(&mut self, t: u64) {
        self.segments.control.store(begun_word(self.process), t + 1);
    }

    fn reduce(
        &mut self,
        trainer: &Trainer,
        state: &mut TrainState,
        prepared: &Prepared,
    ) -> Result<Bundle, WorkerError> {
        let bundle = trainer.compute_block(state, prepared, self.blocks[self.process])?;
        // The reduced shards go from shared memory straight into the tensors `finish` takes.
        let mut total = Unflatten::new(&self.shapes, trainer.device());
        self.reducer
            .all_reduce(
                state.iteration,
                |slot| flatten_into(&bundle, slot),
                |range, shard| total.push(range, shard),
                self.peer_timeout,
            )
            .map_err(|e| WorkerError::from_reduce(e, &self.blocks, self.generation))?;
        Ok(total.finish())
    }

    fn complete(&mut self, done: u64) {
        self.segments.control.store(done_word(self.process), done);
    }

    fn checkpoint(
        &mut self,
        trainer: &Trainer,
        state: &TrainState,
        out: &Path,
    ) -> Result<(), WorkerError> {
        let barrier = ControlWords {
            process: self.process,
            blocks: &self.blocks,
            control: &self.segments.control,
            peer_timeout: self.peer_timeout,
            hooks: &self.hooks,
        };
        let share = Share {
            process: self.process,
            blocks: &self.blocks,
            generation: self.generation,
            barrier: &barrier,
        };
        ckpt::write(trainer, state, out, &share)
    }
}
