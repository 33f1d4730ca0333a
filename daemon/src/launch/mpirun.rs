//! [`Mpirun`]: a job across hosts (DESIGN.md §5). `mpirun` starts N `gnc-mpi-worker` ranks on
//! each host of the hostfile (`cpu:N`, or each host's slots), each hosting an aligned block of
//! logical workers; a host's processes reduce over shared memory, the hosts over MPI.
//!
//! The launcher's half of the progress channel is the output directory, the one thing every
//! host shares with it: each rank beats into its file there (`gnc_contract::heartbeat`:
//! progress, checkpoints, and a counter that moves while the rank runs), and requests go the
//! other way as a file that rank 0 takes (`gnc_contract::request::file`). `mpirun` dies with
//! its launcher (`gnc_shm::lifeline`), and each rank with its local parent (`mpirun` or
//! `orted`), so no rank outlives a killed launcher.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gnc_contract::heartbeat::{self, Beat};
use gnc_contract::observer::Observer;
use gnc_contract::protocol;
use gnc_contract::request::{self, Action};
use gnc_proto::{Devices, ValidSpec};
use nix::sys::signal::Signal;

use super::{Failure, FailureCause, Generation, Launch, Poll};
use crate::channel::{GroupChannel, Progress};
use crate::hostfile::{self, Host, HostfileError};
use crate::supervisor::{SupervisorError, SupervisorOptions, io_err};

/// Overrides where `gnc-mpi-worker` is (else next to the running executable).
pub const WORKER_ENV: &str = "GNC_MPI_WORKER_BIN";

/// Why a job across hosts cannot start, or must not be started again.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error(transparent)]
    Hostfile(#[from] HostfileError),
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
    #[error("--hosts with --devices {0}")]
    Device(#[from] gnc_proto::devices::DeviceUnavailable),
    #[error("cannot start {program}: {message} (is Open MPI installed? `make` installs it)")]
    Launch { program: String, message: String },
    #[error(
        "{failure} before all {ranks} ranks on the hosts of {hostfile} had started: {why}; \
         not restarting"
    )]
    NeverStarted {
        failure: String,
        ranks: usize,
        hostfile: PathBuf,
        why: String,
    },
    #[error(
        "{what} within {timeout:?} of mpirun's start (--join-timeout); every rank was stopped; \
         not restarting"
    )]
    NeverJoined { what: String, timeout: Duration },
}

/// The hosts, the layout over them and how to start the ranks: fixed for the whole run.
pub struct Mpirun {
    hostfile: PathBuf,
    hosts: Vec<Host>,
    per_host: usize,
    worker: PathBuf,
    level: gnc_proto::repro::Level,
    out: PathBuf,
    spec_file: PathBuf,
    stop_after: Option<u64>,
    worker_log: Option<PathBuf>,
    join_timeout: Duration,
}

impl Mpirun {
    /// Reads the hostfile and checks the layout of the job's logical workers over its hosts.
    pub fn new(
        spec: &ValidSpec,
        hostfile: &Path,
        devices: Option<&Devices>,
        options: &SupervisorOptions,
    ) -> Result<Mpirun, HostsError> {
        let hosts = hostfile::read(hostfile)?;
        let per_host = processes_per_host(hostfile, &hosts, devices)?;
        gnc_shm::tree::host_layout(spec.parallel.workers, hosts.len(), per_host).map_err(
            |error| HostsError::Layout {
                hostfile: hostfile.to_path_buf(),
                hosts: hosts.len(),
                per_host,
                error: Box::new(error),
            },
        )?;
        Ok(Mpirun {
            hostfile: hostfile.to_path_buf(),
            hosts,
            per_host,
            worker: worker_bin()?,
            level: spec.reproducibility,
            out: PathBuf::new(),
            spec_file: PathBuf::new(),
            stop_after: options.stop_after,
            worker_log: options.worker_log.clone(),
            join_timeout: options.join_timeout,
        })
    }

    /// Where the job writes, and the spec the ranks read (once the supervisor has them).
    pub fn set_out(&mut self, out: &Path, spec_file: &Path) {
        self.out = out.to_path_buf();
        self.spec_file = spec_file.to_path_buf();
    }

    fn ranks(&self) -> usize {
        self.hosts.len() * self.per_host
    }

    /// `mpirun` over the hostfile with the level's environment, here and (`-x`) on every
    /// host: `per_host` ranks on each host, consecutive ranks on one host (what the ranks'
    /// host groups assume, and check).
    fn command(&self, generation: u64, resume_from: Option<u64>) -> Command {
        let mut command = Command::new("mpirun");
        self.level.apply(&mut command);
        command
            .arg("--hostfile")
            .arg(&self.hostfile)
            .args(["-np", &self.ranks().to_string()])
            .args(["--map-by", &format!("ppr:{}:node", self.per_host)]);
        for (key, _) in self.level.environment() {
            command.args(["-x", key]);
        }
        command
            .arg(&self.worker)
            .arg(&self.spec_file)
            .arg("--out")
            .arg(&self.out)
            .args(["--generation", &generation.to_string()])
            .args(["--processes-per-host", &self.per_host.to_string()]);
        if let Some(iteration) = resume_from {
            command.args(["--resume-from", &iteration.to_string()]);
        }
        if let Some(stop) = self.stop_after {
            command.args(["--stop-after", &stop.to_string()]);
        }
        command
    }
}

impl Launch for Mpirun {
    fn out(&self) -> &Path {
        &self.out
    }

    fn start(
        &mut self,
        generation: u64,
        resume_from: Option<u64>,
        events: &mut dyn Observer,
    ) -> Result<Box<dyn Generation>, SupervisorError> {
        let mut command = self.command(generation, resume_from);
        if let Some(log) = &self.worker_log {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(io_err(log))?;
            command.stderr(file);
        }
        // Rank 0 writes it again once every rank of this generation has joined; each rank
        // leaves its arrival file as it starts, and beats into its progress file.
        let out = &self.out;
        let _ = std::fs::remove_file(out.join(protocol::MPI_STARTED_FILE));
        let _ = std::fs::remove_dir_all(out.join(protocol::MPI_ARRIVED_DIR));
        let _ = std::fs::remove_dir_all(out.join(heartbeat::DIR));
        // A request left by an earlier start must not act on this one.
        let _ = std::fs::remove_file(out.join(protocol::MPI_REQUEST_FILE));
        // Ended with its launcher (mpirun then ends every rank), whatever kills the launcher.
        gnc_shm::lifeline::die_with_launcher(&mut command, Signal::SIGTERM);
        let child = command
            // A terminal's Ctrl-C reaches this launcher alone, which asks the ranks for a stop
            // with a checkpoint (mpirun would kill them).
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| HostsError::Launch {
                program: "mpirun".into(),
                message: e.to_string(),
            })?;
        events.spawned(generation, &[child.id()]);
        let ranks = self.ranks();
        Ok(Box::new(Running {
            child,
            exited: false,
            out: out.clone(),
            generation,
            hosts: self.hosts.clone(),
            hostfile: self.hostfile.clone(),
            per_host: self.per_host,
            started: Instant::now(),
            join_timeout: self.join_timeout,
            joined: false,
            never_joined: None,
            beats: Beats {
                out: out.clone(),
                ranks: vec![RankBeat::default(); ranks],
                read_at: None,
            },
        }))
    }
}

/// What the launcher last read of one rank's beat.
#[derive(Debug, Clone, Copy, Default)]
struct RankBeat {
    beat: Option<Beat>,
    /// When the beat counter last moved (by this launcher's clock).
    moved: Option<Instant>,
}

/// The launcher's side of the progress channel: the ranks' beats, read at most every
/// [`READ_EVERY`] (one small file per rank).
struct Beats {
    out: PathBuf,
    ranks: Vec<RankBeat>,
    read_at: Option<Instant>,
}

const READ_EVERY: Duration = Duration::from_millis(100);

impl Beats {
    fn refresh(&mut self) {
        if self.read_at.is_some_and(|t| t.elapsed() < READ_EVERY) {
            return;
        }
        let now = Instant::now();
        self.read_at = Some(now);
        for (rank, last) in self.ranks.iter_mut().enumerate() {
            let Some(beat) = heartbeat::read(&self.out, rank) else {
                continue;
            };
            if last.beat.is_none_or(|b| b.beat != beat.beat) {
                last.moved = Some(now);
            }
            last.beat = Some(beat);
        }
    }

    fn beat(&self, rank: usize) -> Beat {
        self.ranks[rank].beat.unwrap_or_default()
    }
}

impl GroupChannel for Beats {
    fn processes(&self) -> usize {
        self.ranks.len()
    }

    fn progress(&self, rank: usize) -> Progress {
        let beat = self.beat(rank);
        Progress {
            begun: beat.begun,
            done: beat.done,
        }
    }

    fn pulse(&self) -> Vec<u64> {
        (0..self.ranks.len())
            .flat_map(|r| {
                let b = self.beat(r);
                [b.begun, b.done, b.checkpoint]
            })
            .collect()
    }

    fn last_checkpoint(&self) -> Option<u64> {
        // Rank 0 says so once every rank's part and the manifest are durable.
        self.beat(0).checkpoint.checked_sub(1)
    }

    fn post(&self, action: Action) -> bool {
        // Rank 0 takes the file at its next boundary; a request still lying there is
        // replaced, which is what a second request would ask for anyway.
        request::file::post(&self.out, action).is_ok()
    }

    fn clear_served(&self) {}
}

/// One generation's `mpirun`.
struct Running {
    child: Child,
    exited: bool,
    out: PathBuf,
    generation: u64,
    hosts: Vec<Host>,
    hostfile: PathBuf,
    per_host: usize,
    started: Instant,
    join_timeout: Duration,
    joined: bool,
    /// Set when the ranks did not all join in time: the error that ends the job.
    never_joined: Option<HostsError>,
    beats: Beats,
}

impl Running {
    fn host_of(&self, rank: usize) -> &str {
        &self.hosts[rank / self.per_host].name
    }

    fn rank_name(&self, rank: usize) -> String {
        format!("rank {rank} on {}", self.host_of(rank))
    }

    fn failure(&self, who: String, cause: FailureCause) -> Failure {
        Failure {
            who,
            generation: self.generation,
            cause,
            iteration: self.beats.completed(),
        }
    }

    /// Whether every rank of this generation joined: rank 0 records it once all have (after
    /// `gnc-mpi-worker`'s agreement check).
    fn all_joined(&self) -> bool {
        std::fs::read_to_string(self.out.join(protocol::MPI_STARTED_FILE))
            .is_ok_and(|text| text.trim() == self.generation.to_string())
    }

    /// The error for ranks that did not all join: the hosts that cannot be reached, else the
    /// ranks that never left their arrival file, else MPI's own start-up.
    fn not_joined(&self) -> String {
        let unreachable = super::probe::unreachable(&self.hosts);
        if !unreachable.is_empty() {
            return format!("cannot reach {}", unreachable.join(", "));
        }
        let arrived = self.out.join(protocol::MPI_ARRIVED_DIR);
        let missing: Vec<String> = (0..self.beats.ranks.len())
            .filter(|rank| !arrived.join(rank.to_string()).exists())
            .map(|rank| self.rank_name(rank))
            .collect();
        if missing.is_empty() {
            format!(
                "every one of the {} ranks started, but MPI's start-up (MPI_Init) did not \
                 complete",
                self.beats.ranks.len()
            )
        } else {
            format!(
                "{} never joined (it did not start, or hung before MPI's start-up)",
                missing.join(", ")
            )
        }
    }
}

impl Generation for Running {
    fn channel(&self) -> &dyn GroupChannel {
        &self.beats
    }

    fn poll(&mut self) -> std::io::Result<Poll> {
        if let Some(status) = self.child.try_wait()? {
            self.exited = true;
            if status.success() {
                return Ok(Poll::Succeeded);
            }
            let who = format!("mpirun ({} ranks)", self.beats.ranks.len());
            return Ok(Poll::Failed(
                self.failure(who, FailureCause::from_status(status)),
            ));
        }
        self.beats.refresh();
        self.joined = self.joined || self.all_joined();
        if !self.joined && self.started.elapsed() >= self.join_timeout {
            let what = self.not_joined();
            self.never_joined = Some(HostsError::NeverJoined {
                what,
                timeout: self.join_timeout,
            });
            let who = format!("mpirun ({} ranks)", self.beats.ranks.len());
            return Ok(Poll::Failed(
                self.failure(who, FailureCause::Hung(self.started.elapsed())),
            ));
        }
        Ok(Poll::Running)
    }

    fn stalled(&self) -> Vec<String> {
        if !self.joined {
            return Vec::new();
        }
        (0..self.beats.ranks.len())
            .filter(|&rank| {
                // Every rank beats from its arrival on; silence since then counts too.
                let moved = self.beats.ranks[rank].moved.unwrap_or(self.started);
                moved.elapsed() > heartbeat::STALE
            })
            .map(|rank| self.rank_name(rank))
            .collect()
    }

    fn hung(&self, waited: Duration) -> Failure {
        let stalled = self.stalled();
        let who = if !stalled.is_empty() {
            format!("{} (no heartbeat)", stalled.join(", "))
        } else {
            let unreachable = super::probe::unreachable(&self.hosts);
            if !unreachable.is_empty() {
                format!("the ranks on {} (unreachable)", unreachable.join(", "))
            } else {
                // The laggard: the rank that began the fewest iterations.
                let laggard = (0..self.beats.ranks.len())
                    .min_by_key(|&r| {
                        let p = self.beats.progress(r);
                        (p.begun, p.done)
                    })
                    .unwrap_or(0);
                self.rank_name(laggard)
            }
        };
        self.failure(who, FailureCause::Hung(waited))
    }

    fn end(&mut self) {
        if !self.exited {
            stop(&mut self.child);
            self.exited = true;
        }
        // Whatever is left in mpirun's process group (its ssh clients, local ranks).
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
    }

    fn fatal(&mut self, failure: &Failure) -> Option<SupervisorError> {
        if let Some(error) = self.never_joined.take() {
            return Some(error.into());
        }
        if self.all_joined() {
            return None;
        }
        let unreachable = super::probe::unreachable(&self.hosts);
        let why = if unreachable.is_empty() {
            "see mpirun's message above (a rank that never joined)".to_string()
        } else {
            format!("cannot reach {}", unreachable.join(", "))
        };
        Some(
            HostsError::NeverStarted {
                failure: failure.to_string(),
                ranks: self.beats.ranks.len(),
                hostfile: self.hostfile.clone(),
                why,
            }
            .into(),
        )
    }
}

/// SIGTERM to `mpirun`, which passes it to every rank; SIGKILL if it has not ended in 10 s.
fn stop(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Processes on every host: `cpu:N` where given, else each host's slots (all equal).
fn processes_per_host(
    hostfile: &Path,
    hosts: &[Host],
    devices: Option<&Devices>,
) -> Result<usize, HostsError> {
    match devices {
        Some(&Devices::Cpu(per_host)) => match hosts.iter().find(|h| h.slots < per_host) {
            None => Ok(per_host),
            Some(host) => Err(HostsError::FewSlots {
                hostfile: hostfile.to_path_buf(),
                host: host.name.clone(),
                slots: host.slots,
                per_host,
                devices: Devices::Cpu(per_host),
            }),
        },
        Some(other) => Err(gnc_proto::devices::DeviceUnavailable {
            device: other.to_string(),
        }
        .into()),
        None if hosts.iter().all(|h| h.slots == hosts[0].slots) => Ok(hosts[0].slots),
        None => Err(HostsError::UnequalSlots {
            hostfile: hostfile.to_path_buf(),
            slots: hosts
                .iter()
                .map(|h| format!("{}: {}", h.name, h.slots))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn worker_bin() -> Result<PathBuf, HostsError> {
    let launch = |message: String| HostsError::Launch {
        program: "gnc-mpi-worker".into(),
        message,
    };
    let path = crate::worker_bin::locate_named("gnc-mpi-worker", WORKER_ENV).map_err(launch)?;
    if !path.is_file() {
        return Err(HostsError::Launch {
            program: path.display().to_string(),
            message: format!("no such file (build the workspace, or set {WORKER_ENV})"),
        });
    }
    Ok(path)
}
