//! `metrics.jsonl`: one [`MetricRecord`] per line, flushed as written so that `tail -f` and a
//! crash both see every finished iteration.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use gnc_proto::MetricRecord;

use gnc_contract::atomic::write_atomic;

use crate::EngineError;

pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> EngineError + '_ {
    move |e| EngineError::Io(path.to_path_buf(), e.to_string())
}

impl MetricsLog {
    /// Starts an empty log.
    pub fn create(path: &Path) -> Result<MetricsLog, EngineError> {
        std::fs::write(path, b"").map_err(io_err(path))?;
        Self::append(path)
    }

    /// Reopens the log of a run resumed after `completed` iterations: records of later
    /// iterations (written before the run stopped) and the final record are dropped, so the
    /// resumed run's log equals that of a run that never stopped.
    pub fn resume(path: &Path, completed: u64) -> Result<MetricsLog, EngineError> {
        let mut kept = Vec::new();
        if path.exists() {
            let file = std::fs::File::open(path).map_err(io_err(path))?;
            for line in std::io::BufReader::new(file).lines() {
                let line = line.map_err(io_err(path))?;
                let keep = match serde_json::from_str::<MetricRecord>(&line) {
                    Ok(MetricRecord::Iter(r)) => r.iter < completed,
                    Ok(MetricRecord::Eval(r)) => r.iter <= completed,
                    // Measured at the start of iteration r.iter, which a resumed run repeats.
                    Ok(MetricRecord::Diagnostics(r)) => r.iter < completed,
                    Ok(MetricRecord::Final(_)) | Err(_) => false,
                };
                if keep {
                    kept.extend_from_slice(line.as_bytes());
                    kept.push(b'\n');
                }
            }
        }
        write_atomic(path, &kept).map_err(io_err(path))?;
        Self::append(path)
    }

    fn append(path: &Path) -> Result<MetricsLog, EngineError> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn write(&mut self, record: &MetricRecord) -> Result<(), EngineError> {
        let mut line = serde_json::to_vec(record).expect("records serialise");
        line.push(b'\n');
        self.file.write_all(&line).map_err(io_err(&self.path))
    }
}

/// Reads every record of a log.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRecord>, EngineError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| EngineError::Io(path.to_path_buf(), format!("line {}: {e}", i + 1)))
        })
        .collect()
}
