//! The launcher's beat for one launch of ranks across hosts (`gnc_contract::heartbeat`'s
//! launcher file): a thread rewrites it every interval while the launch runs; ending the
//! launch writes it once more as ended. The ranks read it (`heartbeat::LauncherWatch`) and exit
//! when it says their launch is over, when another launch has taken the output directory, or
//! when it has stood still: the way a rank on a host cut off from the others (but not from the
//! shared output directory) learns that it is no longer watched.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use gnc_contract::heartbeat::{self, LauncherBeat};

pub(super) struct Pacemaker {
    out: PathBuf,
    launch: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Pacemaker {
    /// Starts beating for generation `generation` of the job in `out`. Its first beat is on
    /// disk when this returns, so ranks of any earlier launch in `out` exit from now on.
    pub(super) fn start(out: &Path, generation: u64) -> std::io::Result<Pacemaker> {
        std::fs::create_dir_all(out.join(heartbeat::DIR))?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let launch = format!(
            "{}:{}:{generation}:{nanos}",
            host.trim(),
            std::process::id()
        );
        let mut beat = LauncherBeat {
            launch: launch.clone(),
            beat: 0,
            ended: false,
        };
        heartbeat::write_launcher(out, &beat)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (stopping, dir) = (stop.clone(), out.to_path_buf());
        let thread = std::thread::Builder::new()
            .name("gnc-launcher-beat".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    // Unparked by `end`, so that ending does not wait out an interval.
                    std::thread::park_timeout(heartbeat::INTERVAL);
                    if stopping.load(Ordering::Relaxed) {
                        break;
                    }
                    beat.beat += 1;
                    if let Err(e) = heartbeat::write_launcher(&dir, &beat) {
                        tracing::warn!("cannot write the launcher's heartbeat: {e}");
                    }
                }
                beat.beat
            })?;
        Ok(Pacemaker {
            out: out.to_path_buf(),
            launch,
            stop,
            thread: Some(thread),
        })
    }

    /// The name the ranks of this launch are given (`gnc-mpi-worker --launch`).
    pub(super) fn launch(&self) -> &str {
        &self.launch
    }

    /// Stops beating and marks the launch ended, so that any of its ranks still running exits.
    pub(super) fn end(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::Relaxed);
        thread.thread().unpark();
        let beat = thread.join().unwrap_or_default() + 1;
        let ended = LauncherBeat {
            launch: self.launch.clone(),
            beat,
            ended: true,
        };
        if let Err(e) = heartbeat::write_launcher(&self.out, &ended) {
            tracing::warn!("cannot mark the launch ended in its heartbeat: {e}");
        }
    }
}

impl Drop for Pacemaker {
    fn drop(&mut self) {
        self.end();
    }
}
