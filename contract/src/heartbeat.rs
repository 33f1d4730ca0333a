//! How a rank of a job across hosts tells its launcher how far it got and that it is alive:
//! a small file per rank in the shared output directory (`.mpi-progress/<rank>`), rewritten
//! (atomically) every [`INTERVAL`] by a thread of the rank, with the rank's progress and a
//! beat counter. Ranks have no shared control block with the launcher; the output directory
//! is the one thing every host shares with it.
//!
//! A rank blocked in an exchange keeps beating while its progress stands still; a rank that
//! is stopped (SIGSTOP), or whose host has dropped off, stops beating: the launcher tells the
//! two apart, and names the second kind when the job hangs.
//!
//! The launcher beats the other way in the same directory ([`LAUNCHER_FILE`]): which launch
//! started the current ranks, and a counter. A rank whose launch has ended, been replaced or
//! gone silent exits ([`LauncherWatch`]): a host cut off from the other hosts but not from the
//! shared file system (a separate storage network) would otherwise keep its ranks running,
//! blocked in an exchange and beating, beside the next generation.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    let newest = rank_files(out)
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max()?;
    Some(newest.elapsed().unwrap_or_default())
}

/// Removes every rank's file (a new generation's ranks write their own), keeping the
/// launcher's.
pub fn clear_ranks(out: &Path) {
    for entry in rank_files(out) {
        let _ = std::fs::remove_file(entry.path());
    }
}

fn rank_files(out: &Path) -> impl Iterator<Item = std::fs::DirEntry> {
    std::fs::read_dir(out.join(DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name() != LAUNCHER_FILE)
}

/// The launcher's file in [`DIR`].
pub const LAUNCHER_FILE: &str = "launcher";

/// How long a rank lets its launcher's beat stand still before it exits. Long, because a rank
/// that wrongly gives up costs the job a restart: a launcher that dies is noticed sooner by
/// the rank's parent (`mpirun` dies with its launcher, and `orted` with `mpirun`'s
/// connection) wherever the network still carries that news.
pub const LAUNCHER_STALE: Duration = Duration::from_secs(30);

/// The launcher's state, as its file holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LauncherBeat {
    /// Names one start of the ranks (host, pid, generation, time): the ranks get it on their
    /// command line.
    pub launch: String,
    /// Rewrites so far: it moves while the launcher runs.
    pub beat: u64,
    /// The launcher has ended this launch (its ranks are to exit).
    pub ended: bool,
}

impl LauncherBeat {
    pub fn encode(&self) -> String {
        let state = if self.ended { "ended" } else { "live" };
        format!("{} {} {state}\n", self.launch, self.beat)
    }

    pub fn decode(text: &str) -> Option<LauncherBeat> {
        let mut words = text.split_whitespace();
        let beat = LauncherBeat {
            launch: words.next()?.to_string(),
            beat: words.next()?.parse().ok()?,
            ended: match words.next()? {
                "live" => false,
                "ended" => true,
                _ => return None,
            },
        };
        words.next().is_none().then_some(beat)
    }
}

/// Writes the launcher's beat, replaced by a rename as the ranks' are.
pub fn write_launcher(out: &Path, beat: &LauncherBeat) -> std::io::Result<()> {
    let path = out.join(DIR).join(LAUNCHER_FILE);
    let tmp = path.with_file_name(format!(".{LAUNCHER_FILE}.tmp"));
    std::fs::write(&tmp, beat.encode())?;
    std::fs::rename(&tmp, &path)
}

/// A rank's view of the launch that started it.
pub struct LauncherWatch {
    out: PathBuf,
    launch: String,
    last_beat: Option<u64>,
    moved: Instant,
    stale: Duration,
}

impl LauncherWatch {
    /// Watches `out` for launch `launch`.
    pub fn new(out: &Path, launch: &str) -> LauncherWatch {
        LauncherWatch {
            out: out.to_path_buf(),
            launch: launch.to_string(),
            last_beat: None,
            moved: Instant::now(),
            stale: LAUNCHER_STALE,
        }
    }

    /// Why this rank must exit, if it must: its launch has ended, another launch has started
    /// in the output directory, or the launcher's beat has stood still for
    /// [`LAUNCHER_STALE`]. A file that cannot be read (missing, torn) tells nothing.
    pub fn check(&mut self) -> Option<String> {
        let text = std::fs::read_to_string(self.out.join(DIR).join(LAUNCHER_FILE));
        if let Some(beat) = text.ok().as_deref().and_then(LauncherBeat::decode) {
            if beat.launch != self.launch {
                return Some(format!(
                    "another launch ({}) has started in its output directory",
                    beat.launch
                ));
            }
            if beat.ended {
                return Some("its launcher has ended this launch".into());
            }
            if self.last_beat != Some(beat.beat) {
                self.last_beat = Some(beat.beat);
                self.moved = Instant::now();
            }
        }
        let still = self.moved.elapsed();
        (still > self.stale).then(|| {
            format!(
                "its launcher's heartbeat has stood still for {} s",
                still.as_secs()
            )
        })
    }
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

    #[test]
    fn a_rank_exits_when_its_launch_ends_or_is_replaced_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        std::fs::create_dir_all(out.join(DIR)).unwrap();
        let mut watch = LauncherWatch::new(out, "h:1:0:5");
        // No file yet (or a torn one): nothing to go on.
        assert_eq!(watch.check(), None);
        std::fs::write(out.join(DIR).join(LAUNCHER_FILE), "h:1:0:5 3").unwrap();
        assert_eq!(watch.check(), None);
        let mut beat = LauncherBeat {
            launch: "h:1:0:5".into(),
            beat: 1,
            ended: false,
        };
        write_launcher(out, &beat).unwrap();
        assert_eq!(LauncherBeat::decode(&beat.encode()), Some(beat.clone()));
        assert_eq!(watch.check(), None);
        // The launcher's file is not a rank's.
        assert_eq!(silent_for(out), None);
        clear_ranks(out);
        assert!(out.join(DIR).join(LAUNCHER_FILE).exists());
        beat.ended = true;
        write_launcher(out, &beat).unwrap();
        assert_eq!(
            watch.check().as_deref(),
            Some("its launcher has ended this launch")
        );
        let next = LauncherBeat {
            launch: "h:1:1:6".into(),
            beat: 1,
            ended: false,
        };
        write_launcher(out, &next).unwrap();
        assert!(watch.check().unwrap().contains("another launch (h:1:1:6)"));
        let mut watch = LauncherWatch::new(out, "h:1:1:6");
        assert_eq!(watch.check(), None);
        watch.stale = Duration::from_millis(100);
        std::thread::sleep(Duration::from_millis(150));
        assert!(watch.check().unwrap().contains("stood still"));
    }
}
