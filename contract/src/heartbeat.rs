//! How a rank of a job across hosts tells its launcher how far it got and that it is alive:
//! a small file per rank in the shared output directory (`.mpi-progress/<rank>`), rewritten
//! (atomically) every [`INTERVAL`] by a thread of the rank, with the rank's progress and a
//! beat counter. Ranks have no shared control block with the launcher; the output directory
//! is the one thing every host shares with it.
//!
//! A rank blocked in an exchange keeps beating while its progress stands still; a rank that
//! is stopped (SIGSTOP), or whose host has dropped off, stops beating: the launcher tells the
//! two apart, and names the second kind when the job hangs.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the ranks' files are, in the output directory.
pub const DIR: &str = ".mpi-progress";

/// How often a rank rewrites its file.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// How long a beat may stand still before the launcher calls the rank stalled: many
/// intervals, so that a loaded machine or a slow shared file system is not taken for a
/// stopped rank.
pub const STALE: Duration = Duration::from_secs(5);

/// One rank's state, as its file holds it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Beat {
    /// Iterations begun.
    pub begun: u64,
    /// Iterations completed.
    pub done: u64,
    /// Iterations at the newest checkpoint this rank has written its part of, + 1 (0: none).
    pub checkpoint: u64,
    /// Rewrites so far: it moves while the rank's process runs.
    pub beat: u64,
}

impl Beat {
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {}\n",
            self.begun, self.done, self.checkpoint, self.beat
        )
    }

    /// `None` for a file that is not one (missing, or being replaced on a file system that
    /// does not rename atomically).
    pub fn decode(text: &str) -> Option<Beat> {
        let mut words = text.split_whitespace().map(|w| w.parse::<u64>().ok());
        let beat = Beat {
            begun: words.next()??,
            done: words.next()??,
            checkpoint: words.next()??,
            beat: words.next()??,
        };
        words.next().is_none().then_some(beat)
    }
}

/// Rank `rank`'s file in the output directory `out`.
pub fn path(out: &Path, rank: usize) -> PathBuf {
    out.join(DIR).join(rank.to_string())
}

/// Rank `rank`'s last beat, if it has written one.
pub fn read(out: &Path, rank: usize) -> Option<Beat> {
    Beat::decode(&std::fs::read_to_string(path(out, rank)).ok()?)
}

/// Writes rank `rank`'s beat: replaced by a rename, so a reader sees the old beat or the new
/// one, but not synced to disk (a beat is worth nothing after a crash, and a sync every
/// interval would cost every rank a disk flush).
pub fn write(out: &Path, rank: usize, beat: &Beat) -> std::io::Result<()> {
    let path = path(out, rank);
    let tmp = path.with_file_name(format!(".{rank}.tmp"));
    std::fs::write(&tmp, beat.encode())?;
    std::fs::rename(&tmp, &path)
}

/// How long ago any rank last wrote its file in `out` (`None`: no rank has one). A launcher
/// starting a job whose previous launcher died uses it to wait until that launcher's ranks
/// have gone silent, rather than train beside them.
pub fn silent_for(out: &Path) -> Option<Duration> {
    let newest = std::fs::read_dir(out.join(DIR))
        .ok()?
        .flatten()
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max()?;
    Some(newest.elapsed().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_round_trip_and_torn_files_are_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(DIR)).unwrap();
        write(dir.path(), 3, &Beat::default()).unwrap();
        let beat = Beat {
            begun: 7,
            done: 6,
            checkpoint: 5,
            beat: 99,
        };
        write(dir.path(), 3, &beat).unwrap();
        assert_eq!(read(dir.path(), 3), Some(beat));
        assert_eq!(read(dir.path(), 4), None);
        assert_eq!(Beat::decode("7 6 5"), None);
        assert_eq!(Beat::decode("7 6 5 9 1"), None);
        assert_eq!(Beat::decode("7 x 5 9"), None);
        assert!(silent_for(dir.path()).unwrap() < Duration::from_secs(60));
        assert_eq!(silent_for(&dir.path().join("none")), None);
    }
}
