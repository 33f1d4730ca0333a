//! The job table: every job the daemon knows, its state machine, and the persistence of each
//! change (through [`Store`]) before it is acknowledged.
//!
//! queued → running → done | failed | cancelled; running → paused (pause) → queued (resume);
//! running → queued when the daemon stops (it resumes from its checkpoint at the next start).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use gnc_contract::RunSummary;
use gnc_proto::socket::{ErrorKind, JobInfo, JobState};
use gnc_proto::{Devices, JobSpec};

use super::store::{JobRecord, Store, StoreError};
use crate::Interrupts;

/// Why a running job was asked to stop at an iteration boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Pause,
    DaemonStop,
}

/// How a run of a job ended.
#[derive(Debug)]
pub enum Outcome {
    Complete(Box<RunSummary>),
    /// Stopped with a checkpoint before the end.
    Stopped {
        iterations: u64,
    },
    Cancelled,
    Failed(String),
}

pub struct Job {
    pub record: JobRecord,
    pub spec: JobSpec,
    /// While running: the handle to checkpoint, stop or cancel it.
    pub interrupts: Option<Arc<Interrupts>>,
    pub stop: Option<StopReason>,
    /// When its workers last completed an iteration (or it started): the watchdog's clue.
    pub last_progress: Instant,
}

impl Job {
    /// A job not running now.
    fn idle(record: JobRecord, spec: JobSpec) -> Job {
        Job {
            record,
            spec,
            interrupts: None,
            stop: None,
            last_progress: Instant::now(),
        }
    }
}

/// A refused command: the error reply's kind and message.
pub type Refusal = (ErrorKind, String);

pub fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub struct Jobs {
    pub store: Store,
    jobs: BTreeMap<u64, Job>,
    next_id: u64,
}

impl Jobs {
    /// Rebuilds the table from the store. A job left `running` by a daemon that died is
    /// queued again (it resumes from its checkpoint); their ids are returned.
    pub fn load(store: Store) -> Result<(Jobs, Vec<u64>), StoreError> {
        let mut jobs = BTreeMap::new();
        let mut requeued = Vec::new();
        for (mut record, spec) in store.load_all()? {
            if record.info.state == JobState::Running {
                record.info.state = JobState::Queued;
                record.info.reason =
                    Some("the daemon stopped while it ran; it resumes from its checkpoint".into());
                store.save(&record)?;
                requeued.push(record.info.id);
            }
            let id = record.info.id;
            jobs.insert(id, Job::idle(record, spec));
        }
        let next_id = jobs.keys().next_back().map_or(1, |id| id + 1);
        Ok((
            Jobs {
                store,
                jobs,
                next_id,
            },
            requeued,
        ))
    }

    /// Queues a checked spec (its output directory already set by the caller via
    /// [`Jobs::next_id`] and [`Store::output_dir`]); `planned` is shown as its devices until
    /// it starts.
    pub fn submit(
        &mut self,
        spec: JobSpec,
        requested_devices: Option<String>,
        planned: Devices,
        owner_uid: u32,
        total_iterations: u64,
    ) -> Result<JobInfo, StoreError> {
        let id = self.next_id;
        let info = JobInfo {
            id,
            name: spec.name.clone(),
            state: JobState::Queued,
            reason: None,
            owner_uid,
            submitted_at: now_seconds(),
            started_at: None,
            finished_at: None,
            iteration: 0,
            total_iterations,
            devices: planned.to_string(),
            restarts: 0,
            spec_hash: spec.spec_hash(),
            output_dir: spec.output_dir.clone(),
            test_accuracy: None,
            params_sha256: None,
        };
        let record = JobRecord {
            info: info.clone(),
            requested_devices,
        };
        self.store.create(&record, &spec)?;
        self.next_id += 1;
        self.jobs.insert(id, Job::idle(record, spec));
        Ok(info)
    }

    /// The id the next submitted job gets.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Resolves a job reference: an id, or a name that exactly one job has.
    pub fn find(&self, job: &str) -> Result<u64, Refusal> {
        if let Ok(id) = job.parse::<u64>() {
            return match self.jobs.contains_key(&id) {
                true => Ok(id),
                false => Err((ErrorKind::NoSuchJob, format!("no job {id}"))),
            };
        }
        let named: Vec<u64> = self
            .jobs
            .values()
            .filter(|j| j.record.info.name == job)
            .map(|j| j.record.info.id)
            .collect();
        match named.as_slice() {
            [id] => Ok(*id),
            [] => Err((ErrorKind::NoSuchJob, format!("no job named {job:?}"))),
            ids => Err((
                ErrorKind::NoSuchJob,
                format!(
                    "{} jobs are named {job:?} (ids {ids:?}); name one by id",
                    ids.len()
                ),
            )),
        }
    }

    /// The job `job` names (an id or a unique name, as in [`Jobs::find`]).
    pub fn lookup(&self, job: &str) -> Result<&Job, Refusal> {
        let id = self.find(job)?;
        Ok(&self.jobs[&id])
    }

    /// Job `id`'s info as it is now.
    ///
    /// # Panics
    /// If there is no job `id` (ids come from [`Jobs::find`]; jobs are never removed).
    pub fn info(&self, id: u64) -> JobInfo {
        self.jobs[&id].record.info.clone()
    }

    pub fn get(&self, id: u64) -> Option<&Job> {
        self.jobs.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Job> {
        self.jobs.get_mut(&id)
    }

    pub fn infos(&self) -> Vec<JobInfo> {
        self.jobs.values().map(|j| j.record.info.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub fn queued(&self) -> usize {
        self.jobs
            .values()
            .filter(|j| j.record.info.state == JobState::Queued)
            .count()
    }

    /// The running job, if any.
    pub fn running(&self) -> Option<&Job> {
        self.jobs
            .values()
            .find(|j| j.record.info.state == JobState::Running)
    }

    /// The oldest queued job.
    pub fn next_queued(&self) -> Option<u64> {
        self.jobs
            .values()
            .find(|j| j.record.info.state == JobState::Queued)
            .map(|j| j.record.info.id)
    }

    /// Persists the job's record after a change.
    pub fn save(&self, id: u64) -> Result<(), StoreError> {
        match self.jobs.get(&id) {
            Some(job) => self.store.save(&job.record),
            None => Ok(()),
        }
    }

    /// Moves `id` to `state` with `reason`, persisting it.
    pub fn set_state(
        &mut self,
        id: u64,
        state: JobState,
        reason: Option<String>,
    ) -> Result<JobInfo, StoreError> {
        let job = self.jobs.get_mut(&id).expect("callers pass known ids");
        job.record.info.state = state;
        job.record.info.reason = reason;
        if state.is_final() {
            job.record.info.finished_at = Some(now_seconds());
        }
        let info = job.record.info.clone();
        self.store.save(&job.record)?;
        Ok(info)
    }

    /// Records how a run ended and persists it.
    pub fn finish(&mut self, id: u64, outcome: Outcome) -> Result<JobInfo, StoreError> {
        let job = self.jobs.get_mut(&id).expect("callers pass known ids");
        let stop = job.stop.take();
        job.interrupts = None;
        let (state, reason) = match (outcome, stop) {
            (Outcome::Complete(summary), _) => {
                let info = &mut job.record.info;
                info.iteration = summary.iterations;
                info.params_sha256 = Some(summary.params_sha256.clone());
                if summary.test_accuracy.is_some() {
                    info.test_accuracy = summary.test_accuracy;
                }
                (JobState::Done, None)
            }
            // Whatever else happened while the daemon was stopping, the job is not over:
            // it continues from its newest checkpoint at the next start.
            (_, Some(StopReason::DaemonStop)) => (
                JobState::Queued,
                Some("the daemon stopped; the job resumes from its checkpoint".into()),
            ),
            (Outcome::Stopped { iterations }, Some(StopReason::Pause)) => {
                job.record.info.iteration = iterations;
                (
                    JobState::Paused,
                    Some(format!("paused at iteration {iterations}")),
                )
            }
            (Outcome::Stopped { iterations }, None) => (
                JobState::Failed,
                Some(format!("the run stopped at iteration {iterations} unasked")),
            ),
            (Outcome::Cancelled, _) => (JobState::Cancelled, Some("cancelled".into())),
            (Outcome::Failed(message), _) => (JobState::Failed, Some(message)),
        };
        self.set_state(id, state, reason)
    }
}
