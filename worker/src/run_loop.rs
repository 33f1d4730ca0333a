//! The run loop, one for every placement of the logical workers: this process's threads
//! ([`InProcess`]) or a group of worker processes over shared memory
//! (`distributed::ShmTransport`), and later hosts over MPI or GPUs over CUDA IPC. What differs
//! between placements is behind [`Transport`]; everything else — requests at iteration
//! boundaries, the finiteness check, metrics, evaluation, checkpoints, the end — is here once.
//!
//! The contract that keeps the bits the same whatever the transport (DESIGN.md §4.2): each
//! participant computes the sums of aligned subtrees of the canonical tree over logical
//! workers; a transport moves those sums and never adds them in another order; the total is
//! combined in the tree's order. So [`Transport::reduce`] returns, in every participant, the
//! same bits the one-process tree sum gives.

use std::path::Path;
use std::time::Instant;

use gnc_contract::interrupts::Interrupts;
use gnc_contract::observer::Observer;
use gnc_contract::request::Action;
use gnc_proto::{EvalRecord, FinalRecord, IterRecord, MetricRecord};

use crate::diagnostics::Diagnostics;
use crate::engine::{Prepared, Trainer};
use crate::metrics_log::MetricsLog;
use crate::state::TrainState;
use crate::tree::Bundle;
use crate::{EngineError, RunSummary};

/// How the participants of a run reduce their gradients and agree on what to do when.
pub trait Transport {
    /// Its errors; training errors convert into them.
    type Error: From<EngineError>;

    /// Compute threads or processes of the run (for `result.json`).
    fn parallelism(&self, trainer: &Trainer) -> usize;

    /// Whether this participant writes `metrics.jsonl` and `result.json` (exactly one does).
    fn writes_records(&self) -> bool;

    /// Whether this participant computes every logical worker (and so holds every saved
    /// gradient), as `[diagnostics]` needs.
    fn holds_every_worker(&self) -> bool {
        false
    }

    /// At the boundary before iteration `t`: what to do there (checkpoint, or stop with a
    /// checkpoint), the same in every participant.
    fn boundary(&mut self, t: u64) -> Result<Option<Action>, Self::Error>;

    /// Iteration `t` begins here (after [`Transport::boundary`] and any checkpoint there).
    fn begin(&mut self, _t: u64) {}

    /// The sum over all M logical workers of their bundles for this iteration, in the
    /// canonical tree's order, computing this participant's blocks on `trainer`.
    fn reduce(
        &mut self,
        trainer: &Trainer,
        state: &mut TrainState,
        prepared: &Prepared,
    ) -> Result<Bundle, Self::Error>;

    /// `done` iterations are complete in this participant.
    fn complete(&mut self, _done: u64) {}

    /// Writes this participant's share of the checkpoint of `state` (and, for the one that
    /// writes records, makes the checkpoint whole).
    fn checkpoint(
        &mut self,
        trainer: &Trainer,
        state: &TrainState,
        out: &Path,
    ) -> Result<(), Self::Error>;
}

/// Where a run writes and how far it goes.
pub struct Course<'a> {
    pub out: &'a Path,
    /// Stop (with a checkpoint) once this many iterations are complete.
    pub stop_after: Option<u64>,
    /// The state was loaded from a checkpoint: append to the metrics instead of starting them.
    pub resumed: bool,
}

/// Trains `state` to the end of the schedule (or to `course.stop_after`, or to a stop
/// request); the summary, from the participant that writes records.
pub fn run<T: Transport>(
    trainer: &mut Trainer,
    state: &mut TrainState,
    transport: &mut T,
    course: &Course,
    observer: &mut dyn Observer,
) -> Result<Option<RunSummary>, T::Error> {
    let out = course.out;
    let total = trainer.schedule().total_iterations();
    let stop = course.stop_after.unwrap_or(total).min(total);
    let metrics = out.join("metrics.jsonl");
    let mut log = match (transport.writes_records(), course.resumed) {
        (false, _) => None,
        (true, true) => Some(MetricsLog::resume(&metrics, state.iteration)?),
        (true, false) => Some(MetricsLog::create(&metrics)?),
    };
    let diagnostics = Diagnostics::of(trainer);
    if diagnostics.is_some() && !transport.holds_every_worker() {
        return Err(EngineError::Spec(gnc_proto::SpecError::Invalid {
            key: "diagnostics".into(),
            message: "needs every logical worker's saved gradient in one process: train it \
                      in-process (gncctl run without --devices or --hosts, or a spec without \
                      parallel.devices)"
                .into(),
        })
        .into());
    }
    observer.started(state.iteration, total, transport.parallelism(trainer));
    let started = Instant::now();
    // A resumed run starts from a checkpoint on disk; a fresh one has none yet.
    let mut last_checkpoint = (state.iteration > 0).then_some(state.iteration);
    let mut last_eval: Option<EvalRecord> = None;
    // A loss trigger may end the run before `stop` (it converged: NE §3).
    while state.iteration < stop && state.loss_window.converged_at.is_none() {
        let t = state.iteration;
        if let Some(action) = transport.boundary(t)? {
            if last_checkpoint != Some(t) {
                transport.checkpoint(trainer, state, out)?;
                last_checkpoint = Some(t);
                observer.checkpointed(t);
            }
            if action == Action::Stop {
                break;
            }
        }
        transport.begin(t);
        let prepared = trainer.prepare(state);
        if let Some(d) = diagnostics.as_ref().filter(|d| d.due(t)) {
            let record = d.measure(trainer, state, &prepared)?;
            if let Some(log) = &mut log {
                log.write(&MetricRecord::Diagnostics(Box::new(record)))?;
            }
        }
        let sum = transport.reduce(trainer, state, &prepared)?;
        let record = trainer.finish(state, prepared, sum);
        check_finite(&record, last_checkpoint)?;
        let done = state.iteration;
        if let Some(log) = &mut log {
            record_iteration(trainer, state, log, record, observer, &mut last_eval)?;
        }
        let converged = state.loss_window.converged_at.is_some();
        if trainer.checkpoint_due(done, stop) || converged {
            transport.checkpoint(trainer, state, out)?;
            last_checkpoint = Some(done);
            observer.checkpointed(done);
        }
        transport.complete(done);
        observer.progress(done);
    }
    let Some(log) = &mut log else {
        return Ok(None);
    };
    let threads = transport.parallelism(trainer);
    Ok(Some(conclude(
        trainer, state, out, log, last_eval, started, threads,
    )?))
}

/// The iteration's record, and the evaluation when one is due.
fn record_iteration(
    trainer: &Trainer,
    state: &TrainState,
    log: &mut MetricsLog,
    record: IterRecord,
    observer: &mut dyn Observer,
    last_eval: &mut Option<EvalRecord>,
) -> Result<(), EngineError> {
    log.write(&MetricRecord::Iter(record.clone()))?;
    observer.iteration(&record);
    if trainer.eval_due(state.iteration) {
        let eval = trainer.evaluate(state);
        log.write(&MetricRecord::Eval(eval.clone()))?;
        observer.evaluated(&eval);
        *last_eval = Some(eval);
    }
    Ok(())
}

/// A diverging run stops here: the loss or the gradient is not finite.
pub fn check_finite(record: &IterRecord, last_checkpoint: Option<u64>) -> Result<(), EngineError> {
    if record.loss.is_finite() && record.grad_norm.is_finite() {
        return Ok(());
    }
    Err(EngineError::Diverged {
        iteration: record.iter,
        loss: record.loss,
        last_checkpoint,
    })
}

/// The end of a run, in whichever process writes the files: the final evaluation (again, if
/// the run resumed from the final checkpoint), the final metrics record, and `result.json`.
pub fn conclude(
    trainer: &Trainer,
    state: &TrainState,
    out: &std::path::Path,
    log: &mut MetricsLog,
    mut last_eval: Option<EvalRecord>,
    started: Instant,
    threads: usize,
) -> Result<RunSummary, EngineError> {
    let spec = trainer.spec();
    let total = trainer.schedule().total_iterations();
    // The schedule's end, or the loss trigger's (the run converged).
    let complete = state.iteration == total || state.loss_window.converged_at.is_some();
    if complete && last_eval.is_none() {
        last_eval = Some(trainer.evaluate(state));
    }
    let train_seconds = started.elapsed().as_secs_f64();
    let params_sha256 = trainer.hash(state);
    if complete {
        log.write(&MetricRecord::Final(FinalRecord {
            iterations: state.iteration,
            params_sha256: params_sha256.clone(),
            test_accuracy: last_eval.as_ref().map_or(f64::NAN, |e| e.test_accuracy),
            train_seconds,
        }))?;
    }
    let summary = RunSummary {
        job: spec.name.clone(),
        method: spec.method.name().into(),
        iterations: state.iteration,
        total_iterations: total,
        complete,
        params_sha256,
        spec_hash: spec.spec_hash(),
        test_accuracy: last_eval.as_ref().map(|e| e.test_accuracy),
        test_loss: last_eval.as_ref().map(|e| e.test_loss),
        train_seconds,
        threads,
        output_dir: out.to_path_buf(),
        environment: crate::pin::environment(),
        reproducibility: Some(crate::pin::key()),
        converged_at: state.loss_window.converged_at,
    };
    let result_path = out.join("result.json");
    let json = serde_json::to_vec_pretty(&summary).expect("summaries serialise");
    gnc_contract::atomic::write_atomic(&result_path, &json)
        .map_err(|e| EngineError::Io(result_path.clone(), e.to_string()))?;
    Ok(summary)
}

/// Every logical worker in this process, on the trainer's compute threads; requests come
/// from `interrupts`, if any.
pub struct InProcess<'a> {
    pub interrupts: Option<&'a Interrupts>,
    /// The supervisor generation recorded in checkpoints.
    pub generation: u64,
}

impl Transport for InProcess<'_> {
    type Error = EngineError;

    fn parallelism(&self, trainer: &Trainer) -> usize {
        trainer.threads()
    }

    fn writes_records(&self) -> bool {
        true
    }

    fn holds_every_worker(&self) -> bool {
        true
    }

    fn boundary(&mut self, _t: u64) -> Result<Option<Action>, EngineError> {
        Ok(self.interrupts.and_then(Interrupts::action))
    }

    fn reduce(
        &mut self,
        trainer: &Trainer,
        state: &mut TrainState,
        prepared: &Prepared,
    ) -> Result<Bundle, EngineError> {
        trainer.sum_in_process(state, prepared)
    }

    fn checkpoint(
        &mut self,
        trainer: &Trainer,
        state: &TrainState,
        out: &Path,
    ) -> Result<(), EngineError> {
        trainer.checkpoint(out, state, self.generation)
    }
}
