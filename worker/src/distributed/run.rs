//! The worker's iteration loop: the in-process engine's [`crate::driver::train`], with the
//! cross-block sum done by the shared-memory all-reduce, and the files (metrics, evaluation,
//! checkpoint manifest, result) left to process 0.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gnc_proto::{EvalRecord, JobSpec, MetricRecord};
use gnc_shm::tree::{validate_layout, Block};
use gnc_shm::{ControlBlock, Segment, ShardedReducer, SlotArray};
use nix::sys::signal::Signal;

use super::ckpt::{self, Share};
use super::flat::{flatten_into, Unflatten};
use super::hooks::Hooks;
use super::WorkerError;
use crate::driver::{check_finite, conclude};
use crate::engine::Trainer;
use crate::metrics_log::MetricsLog;
use crate::EngineError;
use gnc_contract::args::WorkerArgs;
use gnc_contract::protocol::{self, begun_word, done_word, GENERATION_WORD};
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

fn load_spec(path: &Path) -> Result<JobSpec, WorkerError> {
    let bad = |m: String| WorkerError::Spec(path.to_path_buf(), m);
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let spec: JobSpec = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    spec.validate().map_err(EngineError::from)?;
    Ok(spec)
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
    let spec = load_spec(&args.spec)?;
    // Before any tensor exists: the spec's reproducibility level.
    crate::pin::pin_process_environment(spec.reproducibility).map_err(EngineError::Config)?;
    let blocks: &[Block] = &args.blocks.0;
    let m = spec.parallel.workers;
    validate_layout(m, blocks)?;
    let p = args.process;
    let block = *blocks.get(p).ok_or(WorkerError::NoSuchProcess {
        process: p,
        processes: blocks.len(),
    })?;
    let (g, out) = (args.generation, args.out.as_path());
    let peer_timeout = Duration::from_millis(args.peer_timeout_ms);

    let mut trainer = Trainer::new(&spec, 1)?;
    let shapes = trainer.bundle_shapes();
    let len = protocol::bundle_len(&shapes);
    let segments = Segments::open(args, len)?;
    segments.check_generation(g)?;
    let mut reducer = ShardedReducer::new(
        p,
        m,
        blocks,
        len,
        segments.block_sums.clone(),
        segments.shards.clone(),
    )
    .map_err(|e| WorkerError::from_reduce(e, blocks, g))?;
    let hooks = Hooks::from_env(p, g);

    let mut state = trainer.fresh_state();
    if let Some(iteration) = args.resume_from {
        ckpt::resume(&trainer, &spec, &mut state, out, iteration, block)?;
    }
    let metrics_path = out.join("metrics.jsonl");
    let mut log = match (p, args.resume_from) {
        (0, Some(_)) => Some(MetricsLog::resume(&metrics_path, state.iteration)?),
        (0, None) => Some(MetricsLog::create(&metrics_path)?),
        _ => None,
    };

    let schedule = trainer.schedule().clone();
    let total = schedule.total_iterations();
    let stop = args.stop_after.unwrap_or(total).min(total);
    let share = Share {
        spec: &spec,
        process: p,
        blocks,
        control: &segments.control,
        generation: g,
        peer_timeout,
        hooks: &hooks,
    };
    let started = Instant::now();
    // A resumed run starts from a checkpoint on disk; a fresh one has none yet.
    let mut last_checkpoint = (state.iteration > 0).then_some(state.iteration);
    let mut last_eval: Option<EvalRecord> = None;
    while state.iteration < stop {
        let t = state.iteration;
        hooks.iteration_begins(t);
        segments.check_generation(g)?;
        if let Some(action) = request::at_boundary(&segments.control, t) {
            if last_checkpoint != Some(t) {
                ckpt::write(&trainer, &state, out, &share, spec.checkpoint.keep)?;
                last_checkpoint = Some(t);
            }
            if action == Action::Stop {
                break;
            }
        }
        segments.control.store(begun_word(p), t + 1);

        let prepared = trainer.prepare(&mut state);
        let mut sums = trainer.compute_blocks(&mut state, &prepared, &[block])?;
        let (_, bundle) = sums.pop().expect("one block, one sum");
        // The reduced shards go from shared memory straight into the tensors `finish` takes.
        let mut total = Unflatten::new(&shapes);
        reducer
            .all_reduce(
                t,
                |slot| flatten_into(&bundle, slot),
                |range, shard| total.push(range, shard),
                peer_timeout,
            )
            .map_err(|e| WorkerError::from_reduce(e, blocks, g))?;
        drop(bundle);
        let record = trainer.finish(&mut state, prepared, total.finish());
        check_finite(&record, last_checkpoint)?;

        let done = state.iteration;
        if let Some(log) = &mut log {
            log.write(&MetricRecord::Iter(record))?;
            if trainer.eval_due(done) {
                let eval = trainer.evaluate(&state);
                log.write(&MetricRecord::Eval(eval.clone()))?;
                last_eval = Some(eval);
            }
        }
        if trainer.checkpoint_due(done, stop) {
            ckpt::write(&trainer, &state, out, &share, spec.checkpoint.keep)?;
            last_checkpoint = Some(done);
        }
        segments.control.store(done_word(p), done);
    }

    if let Some(log) = &mut log {
        // One compute thread in each worker process.
        conclude(&trainer, &state, out, log, last_eval, started, blocks.len())?;
    }
    Ok(())
}
