//! What the daemon's threads share: the config, the job table (one lock, with a condition
//! variable that wakes `watch` streams on every change), and the channel to the main loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::config::Config;
use super::jobs::{Jobs, Outcome};

/// A message to the main loop: everything it reacts to, whatever its source (signal, socket,
/// runner thread).
#[derive(Debug)]
pub enum Message {
    /// SIGTERM, SIGINT or a `shutdown` request: checkpoint the running job and exit.
    Stop { why: String },
    /// SIGHUP: read the config again.
    Reload,
    /// A job's run ended.
    Finished { id: u64, outcome: Outcome },
    /// A job was queued or resumed: start it if nothing runs.
    Wake,
}

pub struct Shared {
    pub config: RwLock<Config>,
    jobs: Mutex<Jobs>,
    changed: Condvar,
    pub main_loop: Sender<Message>,
    pub started: Instant,
    /// The daemon's own uid (may shut it down, besides root).
    pub uid: u32,
    stopping: AtomicBool,
}

impl Shared {
    pub fn new(config: Config, jobs: Jobs, main_loop: Sender<Message>) -> Shared {
        Shared {
            config: RwLock::new(config),
            jobs: Mutex::new(jobs),
            changed: Condvar::new(),
            main_loop,
            started: Instant::now(),
            uid: nix::unistd::getuid().as_raw(),
            stopping: AtomicBool::new(false),
        }
    }

    /// The job table. A thread that panicked while holding it left it consistent enough to
    /// go on (each change is persisted whole), so poisoning is ignored.
    pub fn jobs(&self) -> MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Wakes everyone waiting in [`Shared::wait_change`].
    pub fn changed(&self) {
        self.changed.notify_all();
    }

    /// Waits (giving up the lock) until something changes or `timeout` passes.
    pub fn wait_change<'a>(
        &self,
        guard: MutexGuard<'a, Jobs>,
        timeout: Duration,
    ) -> MutexGuard<'a, Jobs> {
        self.changed
            .wait_timeout(guard, timeout)
            .unwrap_or_else(|p| p.into_inner())
            .0
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }
}
