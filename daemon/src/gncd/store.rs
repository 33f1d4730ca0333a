//! The job queue on disk: `state_dir/jobs/<id>/` holds `job.json` (the job's record, replaced
//! atomically on every change of state), `spec.json` (the spec as it runs), `job.log` (worker
//! stderr and supervisor notices) and `out/` (metrics, checkpoints, result). The queue is
//! rebuilt from these directories at start, so jobs survive a daemon restart.

use std::path::{Path, PathBuf};

use gnc_proto::JobSpec;
use gnc_proto::socket::JobInfo;
use serde::{Deserialize, Serialize};

/// What `job.json` holds: the public record plus what only the daemon needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    #[serde(flatten)]
    pub info: JobInfo,
    /// The devices the submitter asked for (`None`: the spec's, else the daemon's).
    #[serde(default)]
    pub requested_devices: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path} is damaged: {message}")]
    Damaged { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The directory layout of one state directory.
#[derive(Debug, Clone)]
pub struct Store {
    jobs: PathBuf,
}

impl Store {
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let jobs = state_dir.join("jobs");
        std::fs::create_dir_all(&jobs).map_err(io(&jobs))?;
        Ok(Store { jobs })
    }

    pub fn job_dir(&self, id: u64) -> PathBuf {
        self.jobs.join(id.to_string())
    }
    pub fn output_dir(&self, id: u64) -> PathBuf {
        self.job_dir(id).join("out")
    }
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.job_dir(id).join("job.log")
    }

    /// Writes a new job's directory: the spec first, then the record that makes it a job.
    pub fn create(&self, record: &JobRecord, spec: &JobSpec) -> Result<(), StoreError> {
        let dir = self.job_dir(record.info.id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join("spec.json");
        let json = serde_json::to_vec_pretty(spec).expect("specs serialise");
        gnc_contract::atomic::write_atomic(&path, &json).map_err(io(&path))?;
        self.save(record)
    }

    /// Replaces `job.json` atomically (callers serialise writes of one job).
    pub fn save(&self, record: &JobRecord) -> Result<(), StoreError> {
        let path = self.job_dir(record.info.id).join("job.json");
        let json = serde_json::to_vec_pretty(record).expect("records serialise");
        gnc_contract::atomic::write_atomic(&path, &json).map_err(io(&path))
    }

    /// Every job on disk, by id. A directory without `job.json` is a submit that did not
    /// finish and is skipped; a damaged record is an error naming the file.
    pub fn load_all(&self) -> Result<Vec<(JobRecord, JobSpec)>, StoreError> {
        let mut jobs = Vec::new();
        for entry in std::fs::read_dir(&self.jobs).map_err(io(&self.jobs))? {
            let entry = entry.map_err(io(&self.jobs))?;
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let dir = self.job_dir(id);
            let record_path = dir.join("job.json");
            if !record_path.exists() {
                continue;
            }
            let record: JobRecord = read_json(&record_path)?;
            let spec: JobSpec = read_json(&dir.join("spec.json"))?;
            jobs.push((record, spec));
        }
        jobs.sort_by_key(|(r, _)| r.info.id);
        Ok(jobs)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, StoreError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Damaged {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
