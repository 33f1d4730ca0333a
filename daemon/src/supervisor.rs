//! The supervisor's one loop, for every placement (DESIGN.md §2, §5): start a generation of
//! the job's processes through a [`Launch`], watch it, and on any death or hang end the whole
//! generation and start the next one from the last complete checkpoint — torchrun's rule.
//! Because checkpoints and the reduction are layout-independent, the restarted run produces
//! the same bits as one that never stopped. A job error that would recur ends the run, as
//! do too many restarts, a cancel, and a stop that the processes cannot reach.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gnc_contract::interrupts::Interrupts;
use gnc_contract::manifest;
use gnc_contract::observer::Observer;
use gnc_contract::output_lock::{LockError, OutputLock};
use gnc_contract::plan::{PlanError, RunPlan};
use gnc_contract::{CheckpointError, RunSummary};
use gnc_proto::{Devices, JobSpec, SpecError, ValidSpec};
use gnc_shm::SegmentError;
use gnc_shm::cleaner::{StaleReason, clean_stale_segments};
use gnc_tree::LayoutError;

use crate::forward::Forwarder;
use crate::launch::hosts::HostsError;
use crate::launch::mpirun::Mpirun;
use crate::launch::shm::ProcessGroup;
use crate::launch::{Failure, Generation, Launch, Poll};

/// How to supervise a run (nothing here changes its result).
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    pub devices: Devices,
    /// Overrides the spec's `output_dir`.
    pub output_dir: Option<PathBuf>,
    /// Continue from the newest checkpoint in the output directory.
    pub resume: bool,
    /// Stop (with a checkpoint) once this many iterations are complete.
    pub stop_after: Option<u64>,
    /// A job whose processes all make no progress for this long is ended and restarted
    /// (covers start-up, evaluation and checkpoints too, so keep it generous).
    pub hang_timeout: Duration,
    /// Restarts allowed within the run before giving up.
    pub max_restarts: u32,
    /// The `gnc-worker` binary; default [`crate::worker_bin::locate`].
    pub worker_bin: Option<PathBuf>,
    /// Checkpoint / stop / cancel requests from outside (the daemon, signals).
    pub interrupts: Option<Arc<Interrupts>>,
    /// Append the workers' stderr to this file instead of inheriting ours.
    pub worker_log: Option<PathBuf>,
    /// Across hosts: every rank must have joined (MPI started, ranks agreed) within this long
    /// of `mpirun`'s start, or the job stops, naming the ranks that never arrived.
    pub join_timeout: Duration,
    /// Across hosts, elastic: when hosts cannot be reached, the job goes on, from its last
    /// checkpoint, on the hosts that remain (at least this many), in the largest valid
    /// layout over them; `None`: every host of the hostfile, or the job stops.
    pub min_hosts: Option<usize>,
}

impl SupervisorOptions {
    pub fn new(devices: Devices) -> Self {
        SupervisorOptions {
            devices,
            output_dir: None,
            resume: false,
            stop_after: None,
            hang_timeout: Duration::from_secs(300),
            max_restarts: 3,
            worker_bin: None,
            interrupts: None,
            worker_log: None,
            join_timeout: Duration::from_secs(120),
            min_hosts: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("parallel.devices / --devices: {0}")]
    Layout(LayoutError),
    #[error("parallel.devices / --devices: {0}")]
    Devices(String),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Hosts(#[from] HostsError),
    #[error("the worker binary {path} does not exist (build it with `cargo build --release`, or set {env})", env = crate::worker_bin::ENV)]
    WorkerBinary { path: PathBuf },
    #[error("{0}")]
    Locate(String),
    #[error("shared memory: {0}")]
    Segment(SegmentError),
    #[error(
        "segment {name} belongs to a live process although stale segments were just removed: \
         is another run of this job writing to {out}?"
    )]
    Busy { name: String, out: PathBuf },
    #[error("{0}: {1}")]
    Io(PathBuf, String),
    #[error("{failure}; not restarting, since the job would fail the same way again")]
    JobFailed { failure: Failure },
    #[error("{failure}; giving up after {restarts} restart(s) (the limit)")]
    TooManyRestarts { failure: Failure, restarts: u32 },
    #[error(
        "{failure}; not restarting, since a stop was asked for (resume from the last checkpoint \
         with --resume)"
    )]
    Interrupted { failure: Failure },
    #[error(
        "stopped without a checkpoint: {stalled} not computing, so the job cannot reach an \
         iteration boundary; every process was ended (resume from the last checkpoint with \
         --resume)"
    )]
    StoppedStalled { stalled: String },
    #[error("cancelled")]
    Cancelled,
    #[error("the workers finished but {path} is unreadable: {message}")]
    Result { path: PathBuf, message: String },
}

pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> SupervisorError + '_ {
    move |e| SupervisorError::Io(path.to_path_buf(), e.to_string())
}

/// Trains `spec` with one `gnc-worker` process per device on this machine.
pub fn supervise(
    spec: &ValidSpec,
    options: &SupervisorOptions,
    events: &mut dyn Observer,
) -> Result<RunSummary, SupervisorError> {
    let run = Run::prepare(spec, options)?;
    remove_stale_segments(events);
    let mut launch = ProcessGroup::new(spec, options, &run.out, &run.spec_file, run.bundle_len)?;
    run.supervise(spec, options, &mut launch, events)
}

/// Trains `spec` on the hosts of `hostfile` through `mpirun`, with `devices` (`cpu:N`)
/// processes on each host, or as many as each host has slots.
pub fn supervise_across_hosts(
    spec: &ValidSpec,
    hostfile: &Path,
    devices: Option<&Devices>,
    options: &SupervisorOptions,
    events: &mut dyn Observer,
) -> Result<RunSummary, SupervisorError> {
    // The hosts and the layout are checked before anything is written.
    let mut launch = Mpirun::new(spec, hostfile, devices, options)?;
    let run = Run::prepare(spec, options)?;
    launch.set_out(&run.out, &run.spec_file);
    run.supervise(spec, options, &mut launch, events)
}

/// What every placement prepares the same way before its first generation.
struct Run {
    out: PathBuf,
    spec_file: PathBuf,
    total: u64,
    bundle_len: usize,
    /// Held for the whole run: no second launcher trains into the same directory.
    _lock: OutputLock,
}

impl Run {
    fn prepare(spec: &ValidSpec, options: &SupervisorOptions) -> Result<Run, SupervisorError> {
        // The bundle's length and the iteration count, from the spec and the data files'
        // headers (no data set is loaded here, and no tensor made).
        let plan = RunPlan::read(spec)?;
        let out = options
            .output_dir
            .clone()
            .unwrap_or_else(|| spec.output_dir.clone());
        let lock = OutputLock::acquire(&out, &spec.name)?;
        // The workers read the spec from here; also a record of what ran.
        let spec_file = out.join("spec.json");
        let json = serde_json::to_vec_pretty(&**spec).expect("specs serialise");
        gnc_contract::atomic::write_atomic(&spec_file, &json).map_err(io_err(&spec_file))?;
        if !options.resume {
            // A result of an earlier run must not pass for this one's.
            let result = out.join("result.json");
            if result.exists() {
                std::fs::remove_file(&result).map_err(io_err(&result))?;
            }
        }
        Ok(Run {
            out,
            spec_file,
            total: plan.total_iterations,
            bundle_len: plan.bundle_len(),
            _lock: lock,
        })
    }

    /// The loop: generations until one finishes, restarting from the last checkpoint.
    fn supervise(
        &self,
        spec: &ValidSpec,
        options: &SupervisorOptions,
        launch: &mut dyn Launch,
        events: &mut dyn Observer,
    ) -> Result<RunSummary, SupervisorError> {
        let mut resume_from = if options.resume {
            latest_checkpoint(spec, &self.out, events)?
        } else {
            None
        };
        let mut restarts = 0;
        for generation in 0.. {
            let mut running = launch.start(generation, resume_from, events)?;
            let processes = running.channel().processes();
            events.started(resume_from.unwrap_or(0), self.total, processes);
            let watched = watch(&mut *running, options, events);
            // End (if needed) and reap every process before anything else happens.
            running.end();
            let failure = match watched? {
                None => break,
                Some(failure) => failure,
            };
            if failure.cause.recurs() {
                return Err(SupervisorError::JobFailed { failure });
            }
            if let Some(fatal) = running.fatal(&failure) {
                return Err(fatal);
            }
            drop(running);
            if options
                .interrupts
                .as_deref()
                .is_some_and(Interrupts::stop_requested)
            {
                return Err(SupervisorError::Interrupted { failure });
            }
            if restarts >= options.max_restarts {
                return Err(SupervisorError::TooManyRestarts { failure, restarts });
            }
            restarts += 1;
            events.restarting(&failure, restarts, options.max_restarts);
            resume_from = latest_checkpoint(spec, &self.out, events)?;
        }
        read_result(&self.out)
    }
}

/// Unlinks segments left by dead runs (a killed supervisor cannot unlink its own).
fn remove_stale_segments(events: &mut dyn Observer) {
    match clean_stale_segments(Duration::from_secs(60)) {
        Ok(report) => {
            for (name, reason) in report.removed {
                let why = match reason {
                    StaleReason::CreatorDead { pid } => format!("its creator, pid {pid}, is dead"),
                    StaleReason::Unreadable { age } => {
                        format!("its header is unreadable and it is {age:?} old")
                    }
                };
                events.stale_segment_removed(name.file_name(), &why);
            }
            for (path, e) in report.failed {
                events.warning(&format!(
                    "cannot remove stale segment {}: {e}",
                    path.display()
                ));
            }
        }
        Err(e) => events.warning(&format!("cannot look for stale segments: {e}")),
    }
}

/// The iteration of the newest checkpoint whose files are intact (hashed as streams; the
/// workers load the tensors).
pub(crate) fn latest_checkpoint(
    spec: &JobSpec,
    out: &Path,
    events: &mut dyn Observer,
) -> Result<Option<u64>, SupervisorError> {
    let mut warn = |message: &str| events.warning(message);
    let latest = manifest::latest(
        &out.join("checkpoints"),
        &spec.spec_hash(),
        &mut warn,
        |dir, manifest| manifest::verify_files(dir, &manifest).map(|()| manifest),
    )?;
    if latest.is_none() {
        events.warning("no checkpoint to resume from; starting from iteration 0");
    }
    Ok(latest.map(|manifest| manifest.iteration))
}

/// Polls a generation until it finishes or fails; the caller ends it either way.
fn watch(
    running: &mut dyn Generation,
    options: &SupervisorOptions,
    events: &mut dyn Observer,
) -> Result<Option<Failure>, SupervisorError> {
    let interrupts = options.interrupts.as_deref();
    let mut forwarder = Forwarder::default();
    let mut seen = running.channel().pulse();
    let mut last_change = Instant::now();
    loop {
        match running
            .poll()
            .map_err(|e| SupervisorError::Io("waitpid".into(), e.to_string()))?
        {
            Poll::Succeeded => return Ok(None),
            Poll::Failed(failure) => return Ok(Some(failure)),
            Poll::Running => {}
        }
        if interrupts.is_some_and(Interrupts::cancelled) {
            return Err(SupervisorError::Cancelled);
        }
        if interrupts.is_some_and(Interrupts::stop_requested) {
            // A stop waits for an iteration boundary, which a stopped process never reaches:
            // end the job now rather than at the hang timeout.
            let stalled = running.stalled();
            if !stalled.is_empty() {
                let verb = if stalled.len() == 1 { "is" } else { "are" };
                return Err(SupervisorError::StoppedStalled {
                    stalled: format!("{} {verb}", stalled.join(", ")),
                });
            }
        }
        let channel = running.channel();
        forwarder.poll(interrupts, channel, events);
        let now = channel.pulse();
        if now != seen {
            seen = now;
            last_change = Instant::now();
            events.progress(channel.completed());
        } else if last_change.elapsed() > options.hang_timeout {
            return Ok(Some(running.hung(last_change.elapsed())));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub(crate) fn read_result(out: &Path) -> Result<RunSummary, SupervisorError> {
    let path = out.join("result.json");
    let bad = |message: String| SupervisorError::Result {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| bad(e.to_string()))
}
