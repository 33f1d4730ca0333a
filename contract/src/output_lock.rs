//! One job at a time per output directory: whoever trains into a directory (a supervisor, or
//! an in-process run) holds an exclusive `flock` on its `.gnc-lock` for as long as it runs.
//! The kernel releases the lock when the holder exits, however it dies, so a crash never
//! leaves a directory locked; a second launcher on a busy directory is refused, naming the
//! job that holds it (written into the file by its holder), before it touches anything.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file, in the output directory.
pub const LOCK_FILE: &str = ".gnc-lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{dir} is the output directory of a job that is still running ({holder}); wait for it to \
         end or stop it (Ctrl-C, or `gncctl cancel`), or choose another directory with --out"
    )]
    Busy { dir: PathBuf, holder: String },
    #[error("cannot lock the output directory {dir}: {message}")]
    Io { dir: PathBuf, message: String },
}

/// The held lock; dropping it (or exiting) releases it.
#[derive(Debug)]
pub struct OutputLock {
    _file: File,
}

impl OutputLock {
    /// Locks `dir` (created if needed) for the job named `job`, or says who holds it.
    pub fn acquire(dir: &Path, job: &str) -> Result<OutputLock, LockError> {
        let io = |e: std::io::Error| LockError::Io {
            dir: dir.to_path_buf(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        // Not truncated on open: a refused launcher must still read the holder's line.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "its launcher has not said which".to_string(),
                    line => line.to_string(),
                };
                return Err(LockError::Busy {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let host = hostname();
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let line = format!(
            "job {job:?}, pid {} on {host}, started at Unix time {since}",
            std::process::id()
        );
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(line.as_bytes()).map_err(io)?;
        Ok(OutputLock { _file: file })
    }
}

/// This machine's name, as the kernel has it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "this machine".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_by_name_and_a_released_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let first = OutputLock::acquire(&out, "first").unwrap();
        let refused = OutputLock::acquire(&out, "second").unwrap_err().to_string();
        assert!(
            refused.contains("still running (job \"first\", pid ")
                && refused.contains(&format!("pid {} on ", std::process::id())),
            "{refused}"
        );
        drop(first);
        let _second = OutputLock::acquire(&out, "second").unwrap();
    }
}
