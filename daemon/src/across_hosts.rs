//! Running a job across hosts (DESIGN.md §5): `mpirun` starts N `gnc-mpi-worker` ranks on each
//! host of the hostfile (`cpu:N`, or each host's slots), each hosting an aligned block of
//! logical workers; a host's processes reduce over shared memory, the hosts over MPI. MPI ends the whole job when
//! a rank or host dies; this launcher then starts it again from the newest intact checkpoint
//! (every rank's part of it), at most `max_restarts` times — torchrun's rule, as for a worker
//! group on one host. A job error that would recur (`EXIT_JOB_FAILED`, `EXIT_USAGE`) ends it.
//! Checkpoint and stop requests (`SupervisorOptions::interrupts`: Ctrl-C, SIGUSR1) reach the
//! ranks as a request file in the shared output directory (`gnc_contract::request::file`).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use gnc_contract::interrupts::Interrupts;
use gnc_contract::observer::Observer;
use gnc_contract::plan::RunPlan;
use gnc_contract::protocol;
use gnc_contract::request::{self, Action};
use gnc_contract::{RunSummary, atomic};
use gnc_proto::{Devices, MetricRecord, ValidSpec};

use crate::hostfile::{self, Host, HostfileError};
use crate::metrics_tail::MetricsTail;
use crate::supervisor::{SupervisorError, SupervisorOptions, latest_checkpoint, read_result};

/// Overrides where `gnc-mpi-worker` is (else next to the running executable).
pub const WORKER_ENV: &str = "GNC_MPI_WORKER_BIN";

/// Why a job across hosts did not finish.
#[derive(Debug, thiserror::Error)]
pub enum AcrossHostsError {
    #[error(transparent)]
    Hostfile(#[from] HostfileError),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error("--hosts {hostfile}: {hosts} host(s) of {per_host} process(es): {error}")]
    Layout {
        hostfile: PathBuf,
        hosts: usize,
        per_host: usize,
        error: Box<gnc_shm::tree::LayoutError>,
    },
    #[error(
        "--hosts {hostfile}: its hosts have different slot counts ({slots}); say how many \
         processes each host runs with --devices cpu:N (or the spec's parallel.devices)"
    )]
    UnequalSlots { hostfile: PathBuf, slots: String },
    #[error(
        "--hosts {hostfile}: host {host} has {slots} slot(s), fewer than the {per_host} \
         processes per host of {devices}"
    )]
    FewSlots {
        hostfile: PathBuf,
        host: String,
        slots: usize,
        per_host: usize,
        devices: Devices,
    },
    #[error("{0} with --hosts: jobs across hosts run CPU worker processes only (cpu:N)")]
    NotCpu(Devices),
    #[error("cannot start {program}: {message} (is Open MPI installed? `make` installs it)")]
    Launch { program: String, message: String },
    #[error("the job across hosts failed: {0}; not restarting, since it would fail the same way")]
    JobFailed(String),
    #[error(
        "{failure} before all {ranks} ranks on the hosts of {hostfile} had started (see mpirun's \
         message above: an unreachable host, or a rank that never joined); not restarting"
    )]
    NeverStarted {
        failure: String,
        ranks: usize,
        hostfile: PathBuf,
    },
    #[error(
        "{what} within {timeout:?} of mpirun's start (--join-timeout); every rank was stopped; \
         not restarting"
    )]
    NeverJoined { what: String, timeout: Duration },
    #[error(
        "the job across hosts failed: {0}; not restarting, since a stop was asked for (resume \
         from the last checkpoint with --resume)"
    )]
    Interrupted(String),
    #[error("the job across hosts failed: {last}; giving up after {restarts} restart(s)")]
    TooManyRestarts { last: String, restarts: u32 },
}

/// Trains `spec` on the hosts of `hostfile`, with `devices` (`cpu:N`) processes on each host,
/// or as many as each host has slots.
pub fn supervise_across_hosts(
    spec: &ValidSpec,
    hostfile: &Path,
    devices: Option<&Devices>,
    options: &SupervisorOptions,
    events: &mut dyn Observer,
) -> Result<RunSummary, AcrossHostsError> {
    let hosts = hostfile::read(hostfile)?;
    let per_host = processes_per_host(hostfile, &hosts, devices)?;
    gnc_shm::tree::host_layout(spec.parallel.workers, hosts.len(), per_host).map_err(|error| {
        AcrossHostsError::Layout {
            hostfile: hostfile.to_path_buf(),
            hosts: hosts.len(),
            per_host,
            error: Box::new(error),
        }
    })?;
    let ranks = hosts.len() * per_host;
    let worker = worker_bin()?;
    let total = RunPlan::read(spec)
        .map_err(SupervisorError::from)?
        .total_iterations;
    let out = options
        .output_dir
        .clone()
        .unwrap_or_else(|| spec.output_dir.clone());
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| AcrossHostsError::from(SupervisorError::Io(path, e.to_string()))
    };
    std::fs::create_dir_all(&out).map_err(io(&out))?;
    let spec_file = out.join("spec.json");
    let json = serde_json::to_vec_pretty(&**spec).expect("specs serialise");
    atomic::write_atomic(&spec_file, &json).map_err(io(&spec_file))?;
    let mut resume_from = if options.resume {
        latest_checkpoint(spec, &out, events)?
    } else {
        None
    };
    let mut restarts = 0;
    for generation in 0.. {
        let mut command = mpirun(hostfile, hosts.len(), per_host, spec.reproducibility);
        command
            .arg(&worker)
            .arg(&spec_file)
            .arg("--out")
            .arg(&out)
            .args(["--generation", &generation.to_string()])
            .args(["--processes-per-host", &per_host.to_string()]);
        if let Some(iteration) = resume_from {
            command.args(["--resume-from", &iteration.to_string()]);
        }
        if let Some(stop) = options.stop_after {
            command.args(["--stop-after", &stop.to_string()]);
        }
        if let Some(log) = &options.worker_log {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(io(log))?;
            command.stderr(file);
        }
        // Rank 0 writes it again once every rank of this generation has joined; each rank
        // leaves its arrival file as it starts.
        let _ = std::fs::remove_file(out.join(protocol::MPI_STARTED_FILE));
        let _ = std::fs::remove_dir_all(out.join(protocol::MPI_ARRIVED_DIR));
        // A request left by an earlier start must not act on this one.
        let _ = std::fs::remove_file(out.join(protocol::MPI_REQUEST_FILE));
        events.started(resume_from.unwrap_or(0), total, ranks);
        let launch = |e: std::io::Error| AcrossHostsError::Launch {
            program: "mpirun".into(),
            message: e.to_string(),
        };
        let mut child = command
            // A terminal's Ctrl-C reaches this launcher alone, which asks the ranks for a stop
            // with a checkpoint (mpirun would kill them).
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(launch)?;
        let mut watch = Watch {
            out: &out,
            generation,
            join_timeout: options.join_timeout,
            interrupts: options.interrupts.as_deref(),
            metrics: MetricsTail::new(out.join("metrics.jsonl"), 0),
        };
        let Some(status) = watch.wait(&mut child, events).map_err(launch)? else {
            let host_of = |rank: usize| hosts[rank / per_host].name.as_str();
            return Err(never_joined(&out, ranks, host_of, options.join_timeout));
        };
        if status.success() {
            break;
        }
        let failure = format!("mpirun ({ranks} ranks, generation {generation}) {status}");
        if status.code().is_some_and(|c| {
            c == i32::from(protocol::EXIT_JOB_FAILED) || c == i32::from(protocol::EXIT_USAGE)
        }) {
            return Err(AcrossHostsError::JobFailed(failure));
        }
        if options
            .interrupts
            .as_deref()
            .is_some_and(Interrupts::stop_requested)
        {
            return Err(AcrossHostsError::Interrupted(failure));
        }
        if !started(&out, generation) {
            return Err(AcrossHostsError::NeverStarted {
                failure,
                ranks,
                hostfile: hostfile.to_path_buf(),
            });
        }
        if restarts >= options.max_restarts {
            return Err(AcrossHostsError::TooManyRestarts {
                last: failure,
                restarts,
            });
        }
        restarts += 1;
        events.restarting(&failure, restarts, options.max_restarts);
        resume_from = latest_checkpoint(spec, &out, events)?;
    }
    Ok(read_result(&out)?)
}

/// One generation's `mpirun`, watched from this launcher.
struct Watch<'a> {
    out: &'a Path,
    generation: u64,
    join_timeout: Duration,
    interrupts: Option<&'a Interrupts>,
    /// Rank 0's records: the job's progress.
    metrics: MetricsTail,
}

impl Watch<'_> {
    /// Waits for `mpirun` to end, allowing its ranks `join_timeout` to join, posting the
    /// requests of `interrupts` to them and telling `events` of their progress. `None` when
    /// they did not join: `mpirun` (and through it every rank) has then been stopped.
    fn wait(
        &mut self,
        child: &mut Child,
        events: &mut dyn Observer,
    ) -> std::io::Result<Option<ExitStatus>> {
        let start = Instant::now();
        let mut joined = false;
        let mut stop_posted = false;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(status));
            }
            joined = joined || started(self.out, self.generation);
            if !joined && start.elapsed() >= self.join_timeout {
                stop(child)?;
                return Ok(None);
            }
            if let Some(interrupts) = self.interrupts {
                // A stop checkpoints too, so it replaces a checkpoint not yet taken.
                if interrupts.stop_requested() {
                    if !stop_posted {
                        request::file::post(self.out, Action::Stop)?;
                        stop_posted = true;
                    }
                } else if interrupts.take_checkpoint() {
                    request::file::post(self.out, Action::Checkpoint)?;
                }
            }
            for record in self.metrics.read_new() {
                if let MetricRecord::Iter(iteration) = record {
                    events.progress(iteration.iter + 1);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// SIGTERM to `mpirun`, which passes it to every rank; SIGKILL if it has not ended in 10 s.
fn stop(child: &mut Child) -> std::io::Result<()> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?;
    child.wait().map(|_| ())
}

/// The error for a generation whose ranks did not all join: the ranks that never left their
/// arrival file, with their hosts, or, if all did, MPI's own start-up.
fn never_joined<'h>(
    out: &Path,
    ranks: usize,
    host_of: impl Fn(usize) -> &'h str,
    timeout: Duration,
) -> AcrossHostsError {
    let arrived = out.join(protocol::MPI_ARRIVED_DIR);
    let missing: Vec<String> = (0..ranks)
        .filter(|rank| !arrived.join(rank.to_string()).exists())
        .map(|rank| format!("rank {rank} on {}", host_of(rank)))
        .collect();
    let what = if missing.is_empty() {
        format!(
            "every one of the {ranks} ranks started, but MPI's start-up (MPI_Init) did not \
             complete"
        )
    } else {
        format!(
            "{} never joined (it did not start, or hung before MPI's start-up)",
            missing.join(", ")
        )
    };
    AcrossHostsError::NeverJoined { what, timeout }
}

/// Whether every rank of `generation` joined: rank 0 records it once all have (after
/// `gnc-mpi-worker`'s agreement check).
fn started(out: &Path, generation: u64) -> bool {
    std::fs::read_to_string(out.join(protocol::MPI_STARTED_FILE))
        .is_ok_and(|text| text.trim() == generation.to_string())
}

/// Processes on every host: `cpu:N` where given, else each host's slots (all equal).
fn processes_per_host(
    hostfile: &Path,
    hosts: &[Host],
    devices: Option<&Devices>,
) -> Result<usize, AcrossHostsError> {
    match devices {
        Some(&Devices::Cpu(per_host)) => match hosts.iter().find(|h| h.slots < per_host) {
            None => Ok(per_host),
            Some(host) => Err(AcrossHostsError::FewSlots {
                hostfile: hostfile.to_path_buf(),
                host: host.name.clone(),
                slots: host.slots,
                per_host,
                devices: Devices::Cpu(per_host),
            }),
        },
        Some(other) => Err(AcrossHostsError::NotCpu(other.clone())),
        None if hosts.iter().all(|h| h.slots == hosts[0].slots) => Ok(hosts[0].slots),
        None => Err(AcrossHostsError::UnequalSlots {
            hostfile: hostfile.to_path_buf(),
            slots: hosts
                .iter()
                .map(|h| format!("{}: {}", h.name, h.slots))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// `mpirun` over the hostfile with the level's environment, here and (`-x`) on every host:
/// `per_host` ranks on each host, consecutive ranks on one host (what the workers' host
/// groups assume, and check).
fn mpirun(
    hostfile: &Path,
    hosts: usize,
    per_host: usize,
    level: gnc_proto::repro::Level,
) -> Command {
    let mut command = Command::new("mpirun");
    level.apply(&mut command);
    command
        .arg("--hostfile")
        .arg(hostfile)
        .args(["-np", &(hosts * per_host).to_string()])
        .args(["--map-by", &format!("ppr:{per_host}:node")]);
    for (key, _) in level.environment() {
        command.args(["-x", key]);
    }
    command
}

fn worker_bin() -> Result<PathBuf, AcrossHostsError> {
    let launch = |message: String| AcrossHostsError::Launch {
        program: "gnc-mpi-worker".into(),
        message,
    };
    let path = crate::worker_bin::locate_named("gnc-mpi-worker", WORKER_ENV).map_err(launch)?;
    if !path.is_file() {
        return Err(AcrossHostsError::Launch {
            program: path.display().to_string(),
            message: format!("no such file (build the workspace, or set {WORKER_ENV})"),
        });
    }
    Ok(path)
}
