//! This rank's side of the launcher's progress channel (`gnc_contract::heartbeat`): a thread
//! rewrites the rank's progress file every interval with what the run loop last reported.
//! The same thread ends the rank when its local parent (`mpirun`, or Open MPI's `orted` on
//! other hosts) is gone, or when the launcher's own beat says its launch is over (ended,
//! replaced by another, or silent: `heartbeat::LauncherWatch`), which reaches a host cut off
//! from the others as long as it still shares the output directory: a rank has nothing to do
//! once nobody can end or restart its job, and must not train on unwatched beside the next
//! launcher's ranks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gnc_contract::heartbeat::{self, Beat, LauncherWatch};

/// What the run loop reports, read by the beating thread.
#[derive(Debug, Default)]
pub struct Pulse {
    begun: AtomicU64,
    done: AtomicU64,
    checkpoint: AtomicU64,
}

impl Pulse {
    pub fn begun(&self, iterations: u64) {
        self.begun.store(iterations, Ordering::Relaxed);
    }

    pub fn done(&self, iterations: u64) {
        self.done.store(iterations, Ordering::Relaxed);
    }

    /// Checkpoint `iteration` is whole (every rank's part and the manifest are durable).
    pub fn checkpointed(&self, iteration: u64) {
        self.checkpoint.store(iteration + 1, Ordering::Relaxed);
    }
}

/// Starts rank `rank`'s beat in `out`; the thread lives as long as the process. `launch` names
/// the launch that started the rank, where a launcher beats for it.
pub fn start(out: &Path, rank: usize, launch: Option<&str>) -> std::io::Result<Arc<Pulse>> {
    let mut watch = launch.map(|launch| LauncherWatch::new(out, launch));
    std::fs::create_dir_all(out.join(heartbeat::DIR))?;
    let pulse = Arc::new(Pulse::default());
    let beating = pulse.clone();
    let out: PathBuf = out.to_path_buf();
    let parent = nix::unistd::getppid();
    std::thread::Builder::new()
        .name("gnc-heartbeat".into())
        .spawn(move || {
            let mut beat = 0;
            loop {
                if nix::unistd::getppid() != parent {
                    eprintln!(
                        "gnc-mpi-worker: rank {rank}: its parent process (pid {parent}, mpirun or \
                         orted) is gone, so nobody watches this job any more; exiting"
                    );
                    std::process::exit(gnc_contract::protocol::EXIT_FAILED.into());
                }
                if let Some(why) = watch.as_mut().and_then(LauncherWatch::check) {
                    eprintln!("gnc-mpi-worker: rank {rank}: {why}; exiting");
                    std::process::exit(gnc_contract::protocol::EXIT_FAILED.into());
                }
                beat += 1;
                let state = Beat {
                    begun: beating.begun.load(Ordering::Relaxed),
                    done: beating.done.load(Ordering::Relaxed),
                    checkpoint: beating.checkpoint.load(Ordering::Relaxed),
                    beat,
                };
                if let Err(e) = heartbeat::write(&out, rank, &state) {
                    eprintln!("gnc-mpi-worker: rank {rank}: cannot write its heartbeat: {e}");
                }
                std::thread::sleep(heartbeat::INTERVAL);
            }
        })?;
    Ok(pulse)
}
