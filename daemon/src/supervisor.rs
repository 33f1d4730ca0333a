//! Running a job as a group of worker processes, torchrun-style: any worker death (or hang)
//! stops the whole group, the generation is bumped, the segments are recreated and every
//! worker restarts from the last complete checkpoint. Because checkpoints and the reduction
//! are layout-independent, the restarted run produces the same bits as one that never
//! stopped.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gnc_contract::args::{BlockList, WorkerArgs};
use gnc_contract::manifest;
use gnc_contract::observer::Observer;
use gnc_contract::plan::{PlanError, RunPlan};
use gnc_contract::protocol;
use gnc_contract::{CheckpointError, RunSummary};
use gnc_proto::{Device, Devices, JobSpec, SpecError, ValidSpec};
use gnc_shm::SegmentError;
use gnc_shm::cleaner::{StaleReason, clean_stale_segments};
use gnc_shm::tree::{Block, LayoutError};

use crate::channel::GroupChannel;
use crate::forward::Forwarder;
use crate::group::{FailureCause, Group, Poll, WorkerFailure};
use crate::segments::GenerationSegments;
use gnc_contract::interrupts::Interrupts;

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
    /// A worker group whose control words do not move for this long is treated as dead
    /// (covers start-up, evaluation and checkpoints too, so keep it generous).
    pub hang_timeout: Duration,
    /// Group restarts allowed within the run before giving up.
    pub max_restarts: u32,
    /// The `gnc-worker` binary; default [`crate::worker_bin::locate`].
    pub worker_bin: Option<PathBuf>,
    /// Checkpoint / stop / cancel requests from outside (the daemon).
    pub interrupts: Option<Arc<Interrupts>>,
    /// Append the workers' stderr to this file instead of inheriting ours.
    pub worker_log: Option<PathBuf>,
    /// Across hosts: every rank must have joined (MPI started, ranks agreed) within this long
    /// of `mpirun`'s start, or the job stops, naming the ranks that never arrived.
    pub join_timeout: Duration,
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
    JobFailed { failure: WorkerFailure },
    #[error("{failure}; giving up after {restarts} restart(s) (the limit)")]
    TooManyRestarts {
        failure: WorkerFailure,
        restarts: u32,
    },
    #[error("cancelled")]
    Cancelled,
    #[error("the workers finished but {path} is unreadable: {message}")]
    Result { path: PathBuf, message: String },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> SupervisorError + '_ {
    move |e| SupervisorError::Io(path.to_path_buf(), e.to_string())
}

/// Everything fixed for the whole run.
struct Plan {
    out: PathBuf,
    spec_file: PathBuf,
    shm_job: String,
    blocks: Vec<Block>,
    /// The device of each worker process.
    devices: Vec<Device>,
    len: usize,
    total: u64,
    bin: PathBuf,
    /// The reproducibility level, whose environment the workers start with.
    level: gnc_proto::repro::Level,
}

/// Trains `spec` with one `gnc-worker` process per device, restarting the group on failure.
pub fn supervise(
    spec: &ValidSpec,
    options: &SupervisorOptions,
    events: &mut dyn Observer,
) -> Result<RunSummary, SupervisorError> {
    let plan = prepare(spec, options, events)?;
    let mut resume_from = if options.resume {
        latest_checkpoint(spec, &plan.out, events)?
    } else {
        None
    };
    let mut generation = 0;
    let mut restarts = 0;
    loop {
        let failure = match run_generation(&plan, options, generation, resume_from, events)? {
            None => break,
            Some(failure) => failure,
        };
        let exit_code = match failure.cause {
            FailureCause::Exited(code) => Some(code),
            _ => None,
        };
        if exit_code.is_some_and(|c| {
            c == i32::from(protocol::EXIT_JOB_FAILED) || c == i32::from(protocol::EXIT_USAGE)
        }) {
            return Err(SupervisorError::JobFailed { failure });
        }
        if restarts >= options.max_restarts {
            return Err(SupervisorError::TooManyRestarts { failure, restarts });
        }
        restarts += 1;
        events.restarting(&failure, restarts, options.max_restarts);
        generation += 1;
        resume_from = latest_checkpoint(spec, &plan.out, events)?;
    }
    read_result(&plan.out)
}

/// Checks and prepares everything that does not depend on the generation.
fn prepare(
    spec: &ValidSpec,
    options: &SupervisorOptions,
    events: &mut dyn Observer,
) -> Result<Plan, SupervisorError> {
    // The bundle's length and the iteration count, from the spec and the data files' headers
    // (no data set is loaded here, and no tensor made).
    let run = RunPlan::read(spec)?;
    let devices = options
        .devices
        .resolve(&gnc_proto::devices::cuda_devices())
        .map_err(SupervisorError::Devices)?;
    if devices.iter().any(|d| *d != Device::Cpu) {
        return Err(SupervisorError::Devices(format!(
            "{}: gnc-worker computes on the CPU only so far (GPU workers are not built yet); \
             use cpu:N",
            options.devices
        )));
    }
    let blocks = crate::layout::plan(spec.parallel.workers, devices.len())
        .map_err(SupervisorError::Layout)?;
    let bin = match &options.worker_bin {
        Some(path) => path.clone(),
        None => crate::worker_bin::locate().map_err(SupervisorError::Locate)?,
    };
    if !bin.is_file() {
        return Err(SupervisorError::WorkerBinary { path: bin });
    }
    let out = options
        .output_dir
        .clone()
        .unwrap_or_else(|| spec.output_dir.clone());
    std::fs::create_dir_all(&out).map_err(io_err(&out))?;
    // The workers read the spec from here; also a record of what ran.
    let spec_file = out.join("spec.json");
    let json = serde_json::to_vec_pretty(spec).expect("specs serialise");
    gnc_contract::atomic::write_atomic(&spec_file, &json).map_err(io_err(&spec_file))?;
    if !options.resume {
        // A result of an earlier run must not pass for this one's.
        let result = out.join("result.json");
        if result.exists() {
            std::fs::remove_file(&result).map_err(io_err(&result))?;
        }
    }
    remove_stale_segments(events);
    Ok(Plan {
        shm_job: protocol::shm_job(&spec.name, &out),
        spec_file,
        out,
        blocks,
        devices,
        len: run.bundle_len(),
        total: run.total_iterations,
        bin,
        level: spec.reproducibility,
    })
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

/// Runs one generation to the end; `Some(failure)` if a worker died or hung (the group is
/// then killed and the segments unlinked).
fn run_generation(
    plan: &Plan,
    options: &SupervisorOptions,
    generation: u64,
    resume_from: Option<u64>,
    events: &mut dyn Observer,
) -> Result<Option<WorkerFailure>, SupervisorError> {
    let segments =
        GenerationSegments::create(&plan.shm_job, generation, plan.blocks.len(), plan.len)
            .map_err(|e| match e {
                SegmentError::AlreadyExists { name } => SupervisorError::Busy {
                    name: name.to_string(),
                    out: plan.out.clone(),
                },
                e => SupervisorError::Segment(e),
            })?;
    let peer_timeout = options.hang_timeout.saturating_mul(2);
    let args = (0..plan.blocks.len()).map(|process| {
        WorkerArgs {
            spec: plan.spec_file.clone(),
            out: plan.out.clone(),
            shm_job: plan.shm_job.clone(),
            generation,
            process,
            device: plan.devices[process],
            blocks: BlockList(plan.blocks.clone()),
            resume_from,
            stop_after: options.stop_after,
            peer_timeout_ms: peer_timeout.as_millis() as u64,
            parent_pid: std::process::id(),
        }
        .to_args()
    });
    let args: Vec<Vec<OsString>> = args.collect();
    let log = match &options.worker_log {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(io_err(path))?,
        ),
        None => None,
    };
    let mut group =
        Group::spawn(&plan.bin, args, plan.level, log.as_ref()).map_err(io_err(&plan.bin))?;
    events.spawned(generation, group.pids());
    events.started(resume_from.unwrap_or(0), plan.total, group.pids().len());
    let failure = watch(&mut group, &segments, options, generation, events)?;
    // Kill (if needed) and reap every worker before the segments go.
    group.kill_all();
    drop(segments);
    Ok(failure)
}

/// Polls the group until it finishes or a worker fails.
fn watch(
    group: &mut Group,
    channel: &dyn GroupChannel,
    options: &SupervisorOptions,
    generation: u64,
    events: &mut dyn Observer,
) -> Result<Option<WorkerFailure>, SupervisorError> {
    let hang_timeout = options.hang_timeout;
    let interrupts = options.interrupts.as_deref();
    let mut forwarder = Forwarder::default();
    let pids = group.pids().to_vec();
    let mut seen = channel.pulse();
    let mut last_change = Instant::now();
    loop {
        let failure = |process: usize, cause| WorkerFailure {
            process,
            pid: pids[process],
            generation,
            cause,
            iteration: channel.progress(process).done,
        };
        match group
            .poll()
            .map_err(|e| SupervisorError::Io("waitpid".into(), e.to_string()))?
        {
            Poll::AllSucceeded => return Ok(None),
            Poll::Died { process, status } => {
                return Ok(Some(failure(process, FailureCause::from_status(status))));
            }
            Poll::Running => {}
        }
        if interrupts.is_some_and(Interrupts::cancelled) {
            group.kill_all();
            return Err(SupervisorError::Cancelled);
        }
        forwarder.poll(interrupts, channel, events);
        let now = channel.pulse();
        if now != seen {
            seen = now;
            last_change = Instant::now();
            events.progress(channel.completed());
        } else if last_change.elapsed() > hang_timeout {
            // The laggard: the running worker that began the fewest iterations (the others
            // wait for it in the reduction).
            let laggard = (0..channel.processes())
                .filter(|&p| !group.finished(p))
                .min_by_key(|&p| {
                    let progress = channel.progress(p);
                    (progress.begun, progress.done)
                })
                .unwrap_or(0);
            return Ok(Some(failure(
                laggard,
                FailureCause::Hung(last_change.elapsed()),
            )));
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
