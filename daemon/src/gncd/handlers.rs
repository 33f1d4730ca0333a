//! One request → its reply (or, for `watch`, its stream of replies), with the permission
//! rules: only a job's owner or root may pause, resume, cancel or checkpoint it; only root or
//! the daemon's own user may shut the daemon down.

use std::io::Write;
use std::time::Duration;

use gnc_proto::JobSpec;
use gnc_proto::socket::{Command, DaemonInfo, ErrorKind, JobState, Reply, Response};

use super::jobs::{Refusal, StopReason};
use super::state::{Message, Shared};
use crate::metrics_tail::MetricsTail;

/// Lines `logs` returns when the request names no count.
const DEFAULT_LOG_TAIL: usize = 200;

/// How often a `watch` stream looks at the metrics file when nothing else wakes it.
const WATCH_POLL: Duration = Duration::from_millis(200);

fn refuse((kind, message): Refusal) -> Reply {
    Reply::error(kind, message)
}

pub fn write_reply(out: &mut dyn Write, reply: Reply) -> std::io::Result<()> {
    out.write_all(Response::new(reply).to_line().as_bytes())?;
    out.flush()
}

/// Answers `command` from a peer of uid `peer` on `out`.
pub fn handle(
    shared: &Shared,
    peer: u32,
    command: Command,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let reply = match command {
        Command::Watch { job, from } => return watch(shared, &job, from, out),
        Command::Submit { spec, devices } => submit(shared, peer, *spec, devices),
        Command::List {} => Reply::Jobs {
            jobs: shared.jobs().infos(),
        },
        Command::Status { job: None } => daemon_status(shared),
        Command::Status { job: Some(job) } => match shared.jobs().lookup(&job) {
            Ok(j) => Reply::Job {
                job: j.record.info.clone(),
            },
            Err(r) => refuse(r),
        },
        Command::Logs { job, tail } => logs(shared, &job, tail.unwrap_or(DEFAULT_LOG_TAIL)),
        Command::Metrics { job, from } => {
            let path = shared
                .jobs()
                .lookup(&job)
                .map(|j| j.spec.output_dir.clone());
            match path {
                Ok(out_dir) => Reply::Metrics {
                    records: MetricsTail::new(out_dir.join("metrics.jsonl"), from).read_new(),
                },
                Err(r) => refuse(r),
            }
        }
        Command::Pause { job } => change(shared, peer, &job, Change::Pause),
        Command::Resume { job } => change(shared, peer, &job, Change::Resume),
        Command::Cancel { job } => change(shared, peer, &job, Change::Cancel),
        Command::CheckpointNow { job } => change(shared, peer, &job, Change::Checkpoint),
        Command::Shutdown {} => {
            if peer != 0 && peer != shared.uid {
                Reply::error(
                    ErrorKind::PermissionDenied,
                    format!(
                        "only root or the daemon's user (uid {}) may shut gncd down; you are uid {peer}",
                        shared.uid
                    ),
                )
            } else {
                let _ = shared.main_loop.send(Message::Stop {
                    why: format!("shutdown requested by uid {peer}"),
                });
                Reply::ShuttingDown
            }
        }
    };
    write_reply(out, reply)
}

fn daemon_status(shared: &Shared) -> Reply {
    let config = shared.config();
    let jobs = shared.jobs();
    Reply::Daemon {
        daemon: DaemonInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_seconds: shared.started.elapsed().as_secs_f64(),
            devices: config.devices.to_string(),
            state_dir: config.state_dir.clone(),
            running: jobs.running().map(|j| j.record.info.id),
            queued: jobs.queued(),
            jobs: jobs.len(),
        },
    }
}

fn submit(shared: &Shared, peer: u32, spec: JobSpec, devices: Option<String>) -> Reply {
    if shared.stopping() {
        return Reply::error(ErrorKind::ShuttingDown, "gncd is shutting down");
    }
    let config = shared.config();
    let bad = |message: String| Reply::error(ErrorKind::BadSpec, message);
    // The root is checked before the spec is validated, since validation reads the data
    // directory, and it must not be probed outside the allowed roots.
    if let Some(root) = &spec.data.root
        && let Err(message) = super::roots::check("data.root", root, &config.allowed_data_roots)
    {
        return bad(message);
    }
    if let gnc_proto::ModelSpec::Onnx { path, .. } = &spec.model
        && let Err(message) = super::roots::check("model.path", path, &config.allowed_data_roots)
    {
        return bad(message);
    }
    // A client other than gncctl may send a spec whose model file is not pinned yet.
    let mut spec = spec;
    if let Err(e) = spec.pin_model_file() {
        return bad(e.to_string());
    }
    // Checked now so the user hears at once; checked again when the job starts, since its
    // data may change while it waits in the queue (and its model file must not).
    let mut spec = match spec.validated() {
        Ok(valid) => valid.into_inner(),
        Err(e) => return bad(e.to_string()),
    };
    if let Some(hosts) = &spec.parallel.hosts
        && config.hosts.is_none()
    {
        return bad(format!(
            "parallel.hosts = {}: this gncd has no hosts (its config's `hosts`, a hostfile, \
             names the hosts jobs across hosts run on); train across your own hosts with \
             `gncctl run --hosts`",
            hosts.display()
        ));
    }
    if spec.diagnostics.is_some() {
        return bad(
            "[diagnostics]: gncd trains jobs in worker processes, and the diagnostics \
             need every logical worker in one process; train it with `gncctl run` (in-process)"
                .into(),
        );
    }
    let requested = devices.or_else(|| spec.parallel.devices.clone());
    // What it would run on now; chosen again when it starts (a reload may change the
    // daemon's devices meanwhile).
    let planned = match super::runner::devices_for(
        requested.as_deref(),
        &config.devices,
        spec.parallel.workers,
    ) {
        Ok(planned) => planned,
        Err(message) => return bad(format!("devices: {message}")),
    };
    if let Some(cap) = config.checkpoint_keep {
        spec.checkpoint.keep = spec.checkpoint.keep.min(cap);
    }
    let info = {
        let mut jobs = shared.jobs();
        // The daemon chooses where the job writes, whatever the spec said.
        spec.output_dir = jobs.store.output_dir(jobs.next_id());
        match jobs.submit(spec, requested, planned, peer, 0) {
            Ok(info) => info,
            Err(e) => return Reply::error(ErrorKind::Internal, e.to_string()),
        }
    };
    tracing::info!(job = info.id, name = %info.name, owner = peer, "job queued");
    shared.changed();
    let _ = shared.main_loop.send(Message::Wake);
    Reply::Job { job: info }
}

enum Change {
    Pause,
    Resume,
    Cancel,
    Checkpoint,
}

fn change(shared: &Shared, peer: u32, job: &str, change: Change) -> Reply {
    let mut jobs = shared.jobs();
    let id = match jobs.find(job) {
        Ok(id) => id,
        Err(r) => return refuse(r),
    };
    let (owner, state, interrupts) = {
        let j = jobs.get(id).expect("found");
        (
            j.record.info.owner_uid,
            j.record.info.state,
            j.interrupts.clone(),
        )
    };
    if peer != 0 && peer != owner {
        return Reply::error(
            ErrorKind::PermissionDenied,
            format!(
                "job {id} belongs to uid {owner}; only its owner or root may change it (you are uid {peer})"
            ),
        );
    }
    let wrong = |what: &str| {
        Reply::error(
            ErrorKind::WrongState,
            format!("job {id} is {state}; {what}"),
        )
    };
    let result = match (change, state) {
        (Change::Pause, JobState::Queued) => jobs.set_state(
            id,
            JobState::Paused,
            Some("paused before it started".into()),
        ),
        (Change::Pause, JobState::Running) => {
            jobs.get_mut(id).expect("found").stop = Some(StopReason::Pause);
            if let Some(c) = interrupts {
                c.request_stop();
            }
            Ok(jobs.info(id))
        }
        (Change::Pause, _) => return wrong("only a queued or running job can be paused"),
        (Change::Resume, JobState::Paused) => {
            let result = jobs.set_state(id, JobState::Queued, None);
            let _ = shared.main_loop.send(Message::Wake);
            result
        }
        (Change::Resume, _) => return wrong("only a paused job can be resumed"),
        (Change::Cancel, JobState::Queued | JobState::Paused) => jobs.set_state(
            id,
            JobState::Cancelled,
            Some(format!("cancelled by uid {peer}")),
        ),
        (Change::Cancel, JobState::Running) => {
            if let Some(c) = interrupts {
                c.cancel();
            }
            Ok(jobs.info(id))
        }
        (Change::Cancel, _) => return wrong("it has already ended"),
        (Change::Checkpoint, JobState::Running) => {
            if let Some(c) = interrupts {
                c.request_checkpoint();
            }
            Ok(jobs.info(id))
        }
        (Change::Checkpoint, _) => return wrong("only a running job can be checkpointed"),
    };
    drop(jobs);
    shared.changed();
    match result {
        Ok(info) => Reply::Job { job: info },
        Err(e) => Reply::error(ErrorKind::Internal, e.to_string()),
    }
}

fn logs(shared: &Shared, job: &str, tail: usize) -> Reply {
    let path = {
        let jobs = shared.jobs();
        match jobs.find(job) {
            Ok(id) => jobs.store.log_path(id),
            Err(r) => return refuse(r),
        }
    };
    let text = match std::fs::read(&path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Reply::error(
                ErrorKind::Internal,
                format!("cannot read {}: {e}", path.display()),
            );
        }
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(tail);
    Reply::Logs {
        lines: lines[start..].iter().map(|l| l.to_string()).collect(),
    }
}

/// Streams `progress` replies until the job is finished or paused; a write error (the client
/// left) ends it too.
fn watch(shared: &Shared, job: &str, from: usize, out: &mut dyn Write) -> std::io::Result<()> {
    let (id, metrics) = {
        match shared.jobs().lookup(job) {
            Ok(j) => (j.record.info.id, j.spec.output_dir.join("metrics.jsonl")),
            Err(r) => return write_reply(out, refuse(r)),
        }
    };
    let mut tail = MetricsTail::new(metrics, from);
    let mut last_sent = None;
    loop {
        // Read the records before looking at the state, so that the reply announcing the end
        // carries every record written before it.
        let records = tail.read_new();
        let info = {
            let jobs = shared.jobs();
            jobs.get(id)
                .expect("jobs are never removed")
                .record
                .info
                .clone()
        };
        let ended = info.state.is_final() || info.state == JobState::Paused;
        if !records.is_empty() || last_sent.as_ref() != Some(&info) || ended {
            last_sent = Some(info.clone());
            write_reply(out, Reply::Progress { job: info, records })?;
        }
        if ended {
            return Ok(());
        }
        let jobs = shared.jobs();
        drop(shared.wait_change(jobs, WATCH_POLL));
    }
}
