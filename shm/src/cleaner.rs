//! Removes stale gnc segments: those whose creator process is dead, and those whose header
//! is unreadable (truncated, unpublished, not ours) and older than a grace period.
//!
//! Run by the supervisor at start-up and after a worker group dies. Only names that
//! [`SegmentName::parse`] accepts are considered; everything else in the directory is left
//! alone. The header is read with plain `read(2)`, never mapped, so a truncated file cannot
//! raise SIGBUS here. Liveness is `kill(pid, 0)`: `ESRCH` means dead; success or `EPERM`
//! (someone else's live process) means alive. A recycled pid keeps a stale segment alive
//! until that unrelated process exits, which errs on the side of keeping. The grace period
//! protects segments a live creator is still initialising (their header is not published
//! yet).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::header::{self, HEADER_LEN};
use crate::naming::SegmentName;

/// Where Linux keeps POSIX shared memory.
pub const SHM_DIR: &str = "/dev/shm";

/// Why a segment was judged stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaleReason {
    /// The header names a creator pid that no longer exists.
    CreatorDead { pid: u32 },
    /// The header is truncated, unpublished or foreign, and the file is older than the grace
    /// period.
    Unreadable { age: Duration },
}

/// What one cleaning pass did.
#[derive(Debug, Default)]
pub struct CleanReport {
    /// Segments unlinked, with the reason.
    pub removed: Vec<(SegmentName, StaleReason)>,
    /// Segments that looked stale (or could not be inspected) and were left in place.
    pub failed: Vec<(PathBuf, io::Error)>,
}

/// Cleans [`SHM_DIR`].
pub fn clean_stale_segments(grace: Duration) -> io::Result<CleanReport> {
    clean_stale_segments_in(Path::new(SHM_DIR), grace)
}

/// Cleans gnc segments in `dir`. Fails only if `dir` cannot be listed.
pub fn clean_stale_segments_in(dir: &Path, grace: Duration) -> io::Result<CleanReport> {
    let mut report = CleanReport::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry
            .file_name()
            .to_str()
            .and_then(|file_name| SegmentName::parse(file_name).ok())
        else {
            continue;
        };
        let path = entry.path();
        match staleness(&path, grace) {
            Ok(None) => {}
            Ok(Some(reason)) => match std::fs::remove_file(&path) {
                Ok(()) => report.removed.push((name, reason)),
                // Its owner or another cleaner got there first.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => report.failed.push((path, error)),
            },
            Err(error) => report.failed.push((path, error)),
        }
    }
    Ok(report)
}

/// `Some(reason)` if the segment at `path` is stale.
fn staleness(path: &Path, grace: Duration) -> io::Result<Option<StaleReason>> {
    let mut file = File::open(path)?;
    let mut bytes = [0; HEADER_LEN];
    let published = match file.read_exact(&mut bytes) {
        Ok(()) => header::decode(&bytes),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => None,
        Err(error) => return Err(error),
    };
    if let Some(fields) = published {
        let pid = fields.creator_pid;
        if let Some(raw_pid) = i32::try_from(pid).ok().filter(|&raw| raw > 0) {
            let dead = kill(Pid::from_raw(raw_pid), None) == Err(Errno::ESRCH);
            return Ok(dead.then_some(StaleReason::CreatorDead { pid }));
        }
    }
    let modified = file.metadata()?.modified()?;
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or(Duration::ZERO);
    Ok((age >= grace).then_some(StaleReason::Unreadable { age }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gnc-shm-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn unreadable_segments_are_removed_only_after_the_grace_period() {
        let dir = scratch_dir("grace");
        let truncated = dir.join("gnc-job-1-grads");
        let foreign = dir.join("pulse-shm-1");
        std::fs::write(&truncated, [0; 10]).unwrap();
        std::fs::write(&foreign, [0; 10]).unwrap();

        let report = clean_stale_segments_in(&dir, Duration::from_secs(3600)).unwrap();
        assert!(report.removed.is_empty());
        assert!(truncated.exists());

        let report = clean_stale_segments_in(&dir, Duration::ZERO).unwrap();
        assert_eq!(report.removed.len(), 1);
        assert_eq!(report.removed[0].0.file_name(), "gnc-job-1-grads");
        assert!(matches!(
            report.removed[0].1,
            StaleReason::Unreadable { .. }
        ));
        assert!(!truncated.exists());
        assert!(
            foreign.exists(),
            "files that are not ours are never touched"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
