//! The run of a whole job in this process: options, resuming, then [`crate::run_loop`] on
//! this process's compute threads.

use std::path::PathBuf;
use std::sync::Arc;

use gnc_contract::interrupts::Interrupts;
use gnc_contract::observer::Observer;
use gnc_proto::ValidSpec;

use crate::checkpoint;
use crate::engine::Trainer;
use crate::run_loop::{self, Course, InProcess};
use crate::{EngineError, RunSummary};

/// How to run a job (things that do not change its result).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides the spec's `output_dir`.
    pub output_dir: Option<PathBuf>,
    /// Continue from the newest checkpoint in the output directory.
    pub resume: bool,
    /// Stop (with a checkpoint) once this many iterations are complete.
    pub stop_after: Option<u64>,
    /// Compute threads; overrides the spec's `parallel.threads`.
    pub threads: Option<usize>,
    /// Supervisor generation recorded in checkpoints.
    pub generation: u64,
    /// Checkpoint and stop requests from outside the run, acted on at the next iteration
    /// boundary as a worker group acts on them.
    pub interrupts: Option<Arc<Interrupts>>,
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn io_err(path: &std::path::Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Io(path.to_path_buf(), e.to_string())
}

/// Trains the job to completion (or to `options.stop_after`).
pub fn train(
    spec: &ValidSpec,
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<RunSummary, EngineError> {
    let out = options
        .output_dir
        .clone()
        .unwrap_or_else(|| spec.output_dir.clone());
    std::fs::create_dir_all(&out).map_err(|e| io_err(&out, e))?;
    // A record of what ran, as worker-process runs keep it: `gncctl verify` re-runs it.
    let spec_file = out.join("spec.json");
    let json = serde_json::to_vec_pretty(spec).expect("specs serialise");
    gnc_contract::atomic::write_atomic(&spec_file, &json).map_err(|e| io_err(&spec_file, e))?;
    let threads = options
        .threads
        .or(spec.parallel.threads)
        .unwrap_or_else(default_threads);
    let mut job = Trainer::new(spec, threads)?;
    let mut state = job.fresh_state();
    if options.resume {
        let mut warn = |message: &str| observer.warning(message);
        match checkpoint::latest(&out.join("checkpoints"), &spec.spec_hash(), &mut warn)? {
            Some(loaded) => state.restore(job.model().params(), loaded)?,
            None => observer.warning("no checkpoint to resume from; starting from iteration 0"),
        }
    }
    let mut transport = InProcess {
        interrupts: options.interrupts.as_deref(),
        generation: options.generation,
    };
    let course = Course {
        out: &out,
        stop_after: options.stop_after,
        resumed: options.resume,
    };
    let summary = run_loop::run(&mut job, &mut state, &mut transport, &course, observer)?;
    Ok(summary.expect("the in-process run writes the records"))
}
