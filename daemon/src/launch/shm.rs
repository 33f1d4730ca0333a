//! [`ProcessGroup`]: a job's `gnc-worker` processes on this machine, one per device, reducing
//! over shared memory (DESIGN.md §2–3). Each generation gets fresh segments, named by the
//! generation, which are unlinked when it ends.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gnc_contract::args::{BlockList, WorkerArgs};
use gnc_contract::observer::Observer;
use gnc_contract::protocol;
use gnc_proto::{Device, ValidSpec};
use gnc_shm::SegmentError;
use gnc_tree::Block;

use super::{Failure, FailureCause, Generation, Launch, Poll};
use crate::channel::GroupChannel;
use crate::group::{Group, Poll as GroupPoll};
use crate::segments::GenerationSegments;
use crate::supervisor::{SupervisorError, SupervisorOptions, io_err};

/// Everything fixed for the whole run.
pub struct ProcessGroup {
    out: PathBuf,
    spec_file: PathBuf,
    shm_job: String,
    blocks: Vec<Block>,
    /// The device of each worker process.
    devices: Vec<Device>,
    len: usize,
    bin: PathBuf,
    /// The reproducibility level, whose environment the workers start with.
    level: gnc_proto::repro::Level,
    stop_after: Option<u64>,
    peer_timeout: Duration,
    worker_log: Option<PathBuf>,
}

impl ProcessGroup {
    /// Checks the devices and the worker binary; `out` is prepared and `spec_file` written.
    pub fn new(
        spec: &ValidSpec,
        options: &SupervisorOptions,
        out: &Path,
        spec_file: &Path,
        bundle_len: usize,
    ) -> Result<ProcessGroup, SupervisorError> {
        let devices = options
            .devices
            .resolve_available(&gnc_proto::devices::cuda_devices())
            .map_err(SupervisorError::Devices)?;
        let blocks = crate::layout::plan(spec.parallel.workers, devices.len())
            .map_err(SupervisorError::Layout)?;
        let bin = match &options.worker_bin {
            Some(path) => path.clone(),
            None => crate::worker_bin::locate().map_err(SupervisorError::Locate)?,
        };
        if !bin.is_file() {
            return Err(SupervisorError::WorkerBinary { path: bin });
        }
        Ok(ProcessGroup {
            shm_job: protocol::shm_job(&spec.name, out),
            spec_file: spec_file.to_path_buf(),
            out: out.to_path_buf(),
            blocks,
            devices,
            len: bundle_len,
            bin,
            level: spec.reproducibility,
            stop_after: options.stop_after,
            peer_timeout: options.hang_timeout.saturating_mul(2),
            worker_log: options.worker_log.clone(),
        })
    }
}

impl Launch for ProcessGroup {
    fn start(
        &mut self,
        generation: u64,
        resume_from: Option<u64>,
        events: &mut dyn Observer,
    ) -> Result<Box<dyn Generation>, SupervisorError> {
        let segments =
            GenerationSegments::create(&self.shm_job, generation, self.blocks.len(), self.len)
                .map_err(|e| match e {
                    SegmentError::AlreadyExists { name } => SupervisorError::Busy {
                        name: name.to_string(),
                        out: self.out.clone(),
                    },
                    e => SupervisorError::Segment(e),
                })?;
        let args: Vec<Vec<OsString>> = (0..self.blocks.len())
            .map(|process| {
                WorkerArgs {
                    spec: self.spec_file.clone(),
                    out: self.out.clone(),
                    shm_job: self.shm_job.clone(),
                    generation,
                    process,
                    device: self.devices[process],
                    blocks: BlockList(self.blocks.clone()),
                    resume_from,
                    stop_after: self.stop_after,
                    peer_timeout_ms: self.peer_timeout.as_millis() as u64,
                    parent_pid: std::process::id(),
                }
                .to_args()
            })
            .collect();
        let log = match &self.worker_log {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(io_err(path))?,
            ),
            None => None,
        };
        let group =
            Group::spawn(&self.bin, args, self.level, log.as_ref()).map_err(io_err(&self.bin))?;
        events.spawned(generation, group.pids());
        Ok(Box::new(Running {
            group,
            segments,
            generation,
        }))
    }
}

/// One generation: its processes, and the segments they map (unlinked when it is dropped,
/// after [`Generation::end`] has reaped every process).
struct Running {
    group: Group,
    segments: GenerationSegments,
    generation: u64,
}

impl Running {
    fn name(&self, process: usize) -> String {
        format!("worker {process} (pid {})", self.group.pids()[process])
    }

    fn failure(&self, process: usize, cause: FailureCause) -> Failure {
        Failure {
            who: self.name(process),
            generation: self.generation,
            cause,
            iteration: self.segments.progress(process).done,
        }
    }
}

impl Generation for Running {
    fn channel(&self) -> &dyn GroupChannel {
        &self.segments
    }

    fn poll(&mut self) -> std::io::Result<Poll> {
        Ok(match self.group.poll()? {
            GroupPoll::AllSucceeded => Poll::Succeeded,
            GroupPoll::Running => Poll::Running,
            GroupPoll::Died { process, status } => {
                Poll::Failed(self.failure(process, FailureCause::from_status(status)))
            }
        })
    }

    fn stalled(&self) -> Vec<String> {
        (0..self.group.pids().len())
            .filter(|&p| !self.group.finished(p) && crate::group::stopped(self.group.pids()[p]))
            .map(|p| self.name(p))
            .collect()
    }

    fn hung(&self, waited: Duration) -> Failure {
        let stalled = self.stalled();
        // The laggard: the running worker that began the fewest iterations (the others wait
        // for it in the reduction).
        let laggard = (0..self.segments.processes())
            .filter(|&p| !self.group.finished(p))
            .min_by_key(|&p| {
                let progress = self.segments.progress(p);
                (progress.begun, progress.done)
            })
            .unwrap_or(0);
        let mut failure = self.failure(laggard, FailureCause::Hung(waited));
        if !stalled.is_empty() {
            failure.who = format!("{} (stopped)", stalled.join(", "));
        }
        failure
    }

    fn end(&mut self) {
        self.group.kill_all();
    }
}
