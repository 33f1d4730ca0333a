//! The daemon's main loop: signals, socket requests and job outcomes arrive as one
//! [`Message`] enum on one channel, and this loop alone starts jobs, reloads the config,
//! feeds systemd's watchdog, and stops the daemon.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use gnc_proto::socket::JobState;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::DaemonError;
use super::config::Config;
use super::jobs::StopReason;
use super::notify::Notifier;
use super::state::{Message, Shared};

/// How long a stopping daemon waits for the running job to checkpoint and stop before it
/// kills the workers; with the grace after the kill it stays within systemd's and the
/// protocol's 10 seconds.
const STOP_GRACE: Duration = Duration::from_secs(7);
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Turns SIGTERM, SIGINT and SIGHUP into [`Message`] messages, on a thread of its own.
pub fn forward_signals(shared: &Arc<Shared>) -> Result<(), DaemonError> {
    let mut signals =
        Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(|e| DaemonError::Signals(e.to_string()))?;
    let main_loop = shared.main_loop.clone();
    std::thread::Builder::new()
        .name("gncd-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let message = match signal {
                    SIGHUP => Message::Reload,
                    SIGINT => Message::Stop {
                        why: "SIGINT".into(),
                    },
                    _ => Message::Stop {
                        why: "SIGTERM".into(),
                    },
                };
                if main_loop.send(message).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| DaemonError::Signals(e.to_string()))?;
    Ok(())
}

/// Where a stop stands.
struct Stopping {
    since: Instant,
    killed: bool,
}

/// Runs until a stop request has been carried out.
pub fn main_loop(
    shared: &Arc<Shared>,
    rx: &Receiver<Message>,
    config_path: &Path,
    notifier: &mut Notifier,
) {
    let mut running: Option<u64> = None;
    let mut stopping: Option<Stopping> = None;
    let tick = notifier
        .watchdog_interval()
        .map_or(Duration::from_secs(1), |w| w.min(Duration::from_secs(1)));
    loop {
        if stopping.is_none() && running.is_none() {
            running = start_next(shared);
        }
        notifier.status(status_line(shared));
        match rx.recv_timeout(tick) {
            Ok(Message::Stop { why }) if stopping.is_none() => {
                tracing::info!("{why}: stopping (the running job checkpoints and is re-queued)");
                notifier.stopping();
                shared.set_stopping();
                if let Some(id) = running {
                    let mut jobs = shared.jobs();
                    if let Some(job) = jobs.get_mut(id) {
                        job.stop = Some(StopReason::DaemonStop);
                        if let Some(c) = &job.interrupts {
                            c.request_stop();
                        }
                    }
                }
                stopping = Some(Stopping {
                    since: Instant::now(),
                    killed: false,
                });
            }
            Ok(Message::Stop { .. }) | Ok(Message::Wake) => {}
            Ok(Message::Reload) => reload(shared, config_path),
            Ok(Message::Finished { id, outcome }) => {
                match shared.jobs().finish(id, outcome) {
                    Ok(info) => tracing::info!(
                        job = id,
                        state = %info.state,
                        reason = info.reason.as_deref().unwrap_or(""),
                        sha256 = info.params_sha256.as_deref().unwrap_or(""),
                        "job run ended"
                    ),
                    Err(e) => tracing::error!(job = id, "cannot record the end of the job: {e}"),
                }
                shared.changed();
                if running == Some(id) {
                    running = None;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if let Some(stop) = &mut stopping {
            if running.is_none() {
                return;
            }
            let waited = stop.since.elapsed();
            if waited > STOP_GRACE && !stop.killed {
                // The job did not reach a checkpoint boundary in time: kill its workers. Its
                // record stays `running` on disk, so the next start re-queues it and it
                // resumes from its newest checkpoint.
                tracing::warn!(
                    "the running job did not stop in {STOP_GRACE:?}; killing its workers"
                );
                if let Some(c) = running.and_then(|id| shared.jobs().get(id)?.interrupts.clone()) {
                    c.cancel();
                }
                stop.killed = true;
            }
            if waited > STOP_GRACE + KILL_GRACE {
                tracing::warn!("exiting with the job's workers still stopping");
                return;
            }
        }
        if healthy(shared, running) {
            notifier.watchdog();
        }
    }
}

/// Starts the oldest queued job, if any; a job that cannot start is marked failed.
fn start_next(shared: &Arc<Shared>) -> Option<u64> {
    loop {
        let id = shared.jobs().next_queued()?;
        match super::runner::start(shared, id) {
            Ok(()) => return Some(id),
            Err(message) => {
                tracing::error!(job = id, "cannot start the job: {message}");
                if let Err(e) = shared.jobs().set_state(id, JobState::Failed, Some(message)) {
                    tracing::error!(job = id, "cannot record the failure: {e}");
                    return None;
                }
                shared.changed();
            }
        }
    }
}

/// The daemon is healthy when its loop runs and the running job's workers (if any) have
/// completed an iteration within the hang timeout (the supervisor restarts them after it).
fn healthy(shared: &Shared, running: Option<u64>) -> bool {
    let hang = shared.config().hang_timeout;
    let Some(id) = running else {
        return true;
    };
    shared
        .jobs()
        .get(id)
        .is_some_and(|job| job.last_progress.elapsed() <= hang)
}

fn status_line(shared: &Shared) -> String {
    let jobs = shared.jobs();
    let queued = jobs.queued();
    match jobs.running() {
        Some(job) => {
            let i = &job.record.info;
            format!(
                "running job {} ({}): iteration {}/{}, {} queued",
                i.id, i.name, i.iteration, i.total_iterations, queued
            )
        }
        None => format!("idle, {queued} queued"),
    }
}

/// SIGHUP: reads the config again; devices and limits apply from the next job start, the
/// socket and state directory only after a restart.
fn reload(shared: &Shared, path: &Path) {
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload: {e}; keeping the current config");
            return;
        }
    };
    let old = shared.config();
    let changes = old.changes(&new);
    if changes.is_empty() {
        tracing::info!("reload: {} is unchanged", path.display());
    }
    for change in &changes {
        tracing::info!("reload: {change}");
    }
    if old.socket != new.socket || old.state_dir != new.state_dir {
        tracing::warn!("reload: `socket` and `state_dir` take effect when gncd restarts");
    }
    let mut config = shared.config.write().unwrap_or_else(|p| p.into_inner());
    *config = Config {
        socket: old.socket,
        state_dir: old.state_dir,
        socket_mode: old.socket_mode,
        socket_group: old.socket_group,
        ..new
    };
}
