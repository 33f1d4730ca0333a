//! Running one job: choosing its devices (or the daemon's hosts, for a job across hosts),
//! starting the supervisor on a thread with an [`Interrupts`], turning the supervisor's
//! events into updates of the job's record and lines of its log, and reporting the outcome
//! to the main loop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use gnc_proto::socket::JobState;
use gnc_proto::{Devices, MetricRecord};

use super::jobs::{Outcome, now_seconds};
use super::state::{Message, Shared};
use crate::metrics_tail::MetricsTail;
use crate::{
    Interrupts, Observer, SupervisorError, SupervisorOptions, supervise, supervise_across_hosts,
};

/// The worker processes a job gets: what it asked for (else all the daemon has), capped to
/// the daemon's devices and to its logical workers, then lowered to the largest power of two
/// whose layout is valid. The process count changes speed only, never bits. GPU lists are
/// taken as they are (the supervisor checks them against the machine).
pub fn choose_devices(requested: Option<Devices>, daemon: &Devices, workers: usize) -> Devices {
    let wanted = requested.unwrap_or_else(|| daemon.clone());
    let (&Devices::Cpu(asked), &Devices::Cpu(have)) = (&wanted, daemon) else {
        return wanted;
    };
    let mut n = asked.min(have).min(workers).max(1);
    if crate::layout::plan(workers, n).is_err() {
        n = 1 << n.ilog2();
        while n > 1 && crate::layout::plan(workers, n).is_err() {
            n /= 2;
        }
    }
    Devices::Cpu(n)
}

/// [`choose_devices`] for a job's requested devices as stored (`cpu:N`, or none); an
/// unreadable request is an error naming it.
pub fn devices_for(
    requested: Option<&str>,
    daemon: &Devices,
    workers: usize,
) -> Result<Devices, String> {
    let requested = requested.map(str::parse::<Devices>).transpose()?;
    Ok(choose_devices(requested, daemon, workers))
}

/// Marks job `id` running and starts its run on a thread; the outcome comes back to the main
/// loop as [`Message::Finished`].
pub fn start(shared: &Arc<Shared>, id: u64) -> Result<(), String> {
    let config = shared.config();
    let mut jobs = shared.jobs();
    let log = jobs.store.log_path(id);
    let job = jobs.get_mut(id).ok_or_else(|| format!("no job {id}"))?;
    // Its data may have changed since it was submitted.
    let spec = job.spec.clone().validated().map_err(|e| e.to_string())?;
    // A job across hosts runs on the daemon's hosts (never on a hostfile of the client's),
    // with the processes per host it asked for, else one per slot.
    let across = match (&spec.parallel.hosts, &config.hosts) {
        (None, _) => None,
        (Some(_), Some(hosts)) => Some(hosts.clone()),
        (Some(asked), None) => {
            return Err(format!(
                "parallel.hosts = {}: this gncd has no hosts any more (its config's `hosts`)",
                asked.display()
            ));
        }
    };
    let per_host = match &across {
        Some(_) => job
            .record
            .requested_devices
            .as_deref()
            .map(str::parse::<Devices>)
            .transpose()?,
        None => None,
    };
    let devices = devices_for(
        job.record.requested_devices.as_deref(),
        &config.devices,
        spec.parallel.workers,
    )?;
    // A job that ran before continues from its newest checkpoint.
    let resume = job.record.info.started_at.is_some();
    let interrupts = Interrupts::new();
    job.interrupts = Some(interrupts.clone());
    job.stop = None;
    job.last_progress = Instant::now();
    job.record.info.devices = match &across {
        Some(hosts) => format!(
            "{} on each of {}",
            per_host
                .as_ref()
                .map_or("a process per slot".into(), Devices::to_string),
            hosts.names.join(", ")
        ),
        None => devices.to_string(),
    };
    job.record.info.started_at.get_or_insert_with(now_seconds);
    jobs.set_state(id, JobState::Running, None)
        .map_err(|e| e.to_string())?;
    drop(jobs);
    shared.changed();
    let options = SupervisorOptions {
        output_dir: Some(spec.output_dir.clone()),
        resume,
        hang_timeout: config.hang_timeout,
        max_restarts: config.max_restarts,
        interrupts: Some(interrupts),
        worker_log: Some(log.clone()),
        min_hosts: across.as_ref().and_then(|h| h.min_hosts),
        ..SupervisorOptions::new(devices.clone())
    };
    tracing::info!(job = id, name = %spec.name, %devices, resume, "starting job");
    let shared = shared.clone();
    std::thread::Builder::new()
        .name(format!("gncd-job-{id}"))
        .spawn(move || {
            let mut events = JobEvents::new(shared.clone(), id, &log, &spec.output_dir);
            if resume {
                events.line("resuming from the newest checkpoint");
            }
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &across {
                Some(hosts) => {
                    events.line(&format!(
                        "across the daemon's hosts ({}: {})",
                        hosts.hostfile.display(),
                        hosts.names.join(", ")
                    ));
                    supervise_across_hosts(
                        &spec,
                        &hosts.hostfile,
                        per_host.as_ref(),
                        &options,
                        &mut events,
                    )
                }
                None => supervise(&spec, &options, &mut events),
            }));
            let outcome = match result {
                Ok(Ok(summary)) if summary.complete => Outcome::Complete(Box::new(summary)),
                Ok(Ok(summary)) => Outcome::Stopped {
                    iterations: summary.iterations,
                },
                Ok(Err(SupervisorError::Cancelled)) => Outcome::Cancelled,
                Ok(Err(e)) => Outcome::Failed(e.to_string()),
                Err(_) => Outcome::Failed("the supervisor thread panicked".into()),
            };
            events.line(&format!("run ended: {outcome:?}"));
            let _ = shared.main_loop.send(Message::Finished { id, outcome });
        })
        .map_err(|e| format!("cannot start the job's thread: {e}"))?;
    Ok(())
}

/// The supervisor's events for one job: record updates and log lines.
struct JobEvents {
    shared: Arc<Shared>,
    id: u64,
    log: Option<std::fs::File>,
    metrics: MetricsTail,
}

impl JobEvents {
    fn new(shared: Arc<Shared>, id: u64, log: &Path, out: &Path) -> JobEvents {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| tracing::warn!(job = id, "cannot open {}: {e}", log.display()))
            .ok();
        JobEvents {
            shared,
            id,
            log: file,
            metrics: MetricsTail::new(PathBuf::from(out).join("metrics.jsonl"), 0),
        }
    }

    /// Appends a supervisor notice to the job's log (the workers append their stderr to the
    /// same file; each line is written whole).
    fn line(&mut self, message: &str) {
        if let Some(f) = &mut self.log {
            let _ = f.write_all(format!("[gncd {}] {message}\n", now_seconds()).as_bytes());
        }
    }

    /// Changes the job's record; `persist` also writes it to disk.
    fn update(&self, persist: bool, f: impl FnOnce(&mut super::jobs::Job)) {
        let mut jobs = self.shared.jobs();
        if let Some(job) = jobs.get_mut(self.id) {
            f(job);
            if persist && let Err(e) = jobs.save(self.id) {
                tracing::warn!(job = self.id, "cannot save the job's record: {e}");
            }
        }
        drop(jobs);
        self.shared.changed();
    }
}

impl Observer for JobEvents {
    fn stale_segment_removed(&mut self, name: &str, why: &str) {
        tracing::info!("removed stale segment /dev/shm/{name}: {why}");
        self.line(&format!("removed stale segment /dev/shm/{name}: {why}"));
    }

    fn spawned(&mut self, generation: u64, pids: &[u32]) {
        self.line(&format!(
            "generation {generation}: {} worker processes (pids {pids:?})",
            pids.len()
        ));
    }

    fn started(&mut self, from: u64, total: u64, _parallelism: usize) {
        self.line(&format!("training iterations {from}..{total}"));
        self.update(true, |job| {
            job.record.info.iteration = from;
            job.record.info.total_iterations = total;
            job.last_progress = Instant::now();
        });
    }

    fn progress(&mut self, completed: u64) {
        let accuracy = self
            .metrics
            .read_new()
            .into_iter()
            .rev()
            .find_map(|r| match r {
                MetricRecord::Eval(e) => Some(e.test_accuracy),
                _ => None,
            });
        self.update(false, |job| {
            job.record.info.iteration = completed;
            job.last_progress = Instant::now();
            if accuracy.is_some() {
                job.record.info.test_accuracy = accuracy;
            }
        });
    }

    fn restarting(&mut self, failure: &dyn std::fmt::Display, restart: u32, max: u32) {
        tracing::warn!(job = self.id, "{failure}; restart {restart} of {max}");
        self.line(&format!(
            "{failure}; restarting every worker from the last checkpoint (restart {restart} of {max})"
        ));
        self.update(true, |job| job.record.info.restarts += 1);
    }

    fn warning(&mut self, message: &str) {
        self.line(&format!("warning: {message}"));
    }

    fn checkpointed(&mut self, iteration: u64) {
        self.line(&format!("checkpoint of iteration {iteration} written"));
        self.update(true, |_| {});
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_capped_and_lowered_to_a_valid_layout() {
        let cpu = Devices::Cpu;
        assert_eq!(choose_devices(None, &cpu(4), 16), cpu(4));
        assert_eq!(choose_devices(Some(cpu(8)), &cpu(4), 16), cpu(4));
        assert_eq!(choose_devices(Some(cpu(2)), &cpu(4), 16), cpu(2));
        // 3 processes cannot split 16 workers into subtrees; 2 can.
        assert_eq!(choose_devices(None, &cpu(3), 16), cpu(2));
        assert_eq!(choose_devices(None, &cpu(6), 16), cpu(4));
        // Never more processes than logical workers.
        assert_eq!(choose_devices(None, &cpu(8), 2), cpu(2));
        assert_eq!(choose_devices(None, &cpu(1), 16), cpu(1));
        // GPU lists go to the supervisor as they are, which checks them against the machine.
        let gpus = Devices::Cuda(vec![0, 1]);
        assert_eq!(choose_devices(None, &gpus, 16), gpus);
        assert_eq!(choose_devices(Some(gpus.clone()), &cpu(4), 16), gpus);
    }
}
