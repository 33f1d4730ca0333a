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

use gnc_contract::heartbeat;
use gnc_contract::observer::Observer;
use gnc_contract::protocol;
use gnc_proto::{Devices, ValidSpec};
use nix::sys::signal::Signal;

use super::beats::Beats;
use super::hosts::{HostsError, largest_layout, processes_per_host, worker_bin};
use super::pacemaker::Pacemaker;
use super::probe::{self, list};
use super::{Failure, FailureCause, Generation, Launch, Poll};
use crate::channel::GroupChannel;
use crate::descendants::Descendants;
use crate::hostfile::{self, Host};
use crate::supervisor::{SupervisorError, SupervisorOptions, io_err};

/// The hosts, the layout over them and how to start the ranks.
pub struct Mpirun {
    hostfile: PathBuf,
    /// Every host of the hostfile.
    all_hosts: Vec<Host>,
    /// The hosts of the current layout: all of them, unless the job is elastic and some could
    /// not be reached when the current generation started.
    hosts: Vec<Host>,
    /// Processes on each host of the current layout.
    per_host: usize,
    /// The most processes a host runs (`cpu:N`, or the hosts' slots).
    max_per_host: usize,
    /// Logical workers of the job.
    workers: usize,
    /// Elastic: a generation may start on as few as this many reachable hosts.
    min_hosts: Option<usize>,
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
        gnc_tree::host_layout(spec.parallel.workers, hosts.len(), per_host).map_err(|error| {
            HostsError::Layout {
                hostfile: hostfile.to_path_buf(),
                hosts: hosts.len(),
                per_host,
                error: Box::new(error),
            }
        })?;
        Ok(Mpirun {
            hostfile: hostfile.to_path_buf(),
            all_hosts: hosts.clone(),
            hosts,
            per_host,
            max_per_host: per_host,
            workers: spec.parallel.workers,
            min_hosts: options.min_hosts,
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

    /// Elastic jobs: the hosts that can be reached now, in the largest valid layout of the
    /// job's logical workers over them (most processes; then most hosts), told to `events`
    /// when it differs from the current one. The layout changes speed, never bits:
    /// checkpoints and the reduction tree are the same for every layout.
    fn place(
        &mut self,
        resume_from: Option<u64>,
        events: &mut dyn Observer,
    ) -> Result<(), HostsError> {
        let Some(min) = self.min_hosts else {
            return Ok(());
        };
        let unreachable = probe::unreachable(&self.all_hosts);
        let reachable: Vec<Host> = self
            .all_hosts
            .iter()
            .filter(|h| !unreachable.iter().any(|u| u.host == h.name))
            .cloned()
            .collect();
        if reachable.len() < min {
            return Err(HostsError::TooFewHosts {
                min,
                reachable: reachable.len(),
                hostfile: self.hostfile.clone(),
                unreachable: list(&unreachable),
            });
        }
        let (hosts, per_host) =
            largest_layout(self.workers, reachable.len(), self.max_per_host, min).ok_or(
                HostsError::NoLayout {
                    min,
                    workers: self.workers,
                    reachable: reachable.len(),
                    per_host: self.max_per_host,
                },
            )?;
        let chosen = reachable[..hosts].to_vec();
        if chosen != self.hosts || per_host != self.per_host {
            let why = if unreachable.is_empty() {
                "every host can be reached".to_string()
            } else {
                format!("cannot reach {}", list(&unreachable))
            };
            events.warning(&format!(
                "{why}; continuing on {hosts} host(s) x {per_host} process(es) ({}) from \
                 iteration {}",
                chosen
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                resume_from.unwrap_or(0)
            ));
            self.hosts = chosen;
            self.per_host = per_host;
        }
        Ok(())
    }

    /// Waits until the ranks of an earlier start of this job (a launcher that was killed: its
    /// `mpirun` and ranks end within seconds of it) have stopped beating.
    fn wait_for_earlier_ranks(&self) -> Result<(), HostsError> {
        // Many heartbeat intervals: a live rank rewrites its file every one.
        let quiet = 4 * heartbeat::INTERVAL;
        let limit = Duration::from_secs(20);
        let start = Instant::now();
        while let Some(silent) = heartbeat::silent_for(&self.out)
            && silent < quiet
        {
            if start.elapsed() > limit {
                return Err(HostsError::EarlierRanks {
                    out: self.out.clone(),
                    silent,
                    waited: start.elapsed(),
                });
            }
            std::thread::sleep(heartbeat::INTERVAL / 4);
        }
        Ok(())
    }

    /// The hostfile `mpirun` reads: the user's, or, for an elastic job, the current hosts'.
    fn hostfile_in_use(&self) -> std::io::Result<PathBuf> {
        if self.min_hosts.is_none() {
            return Ok(self.hostfile.clone());
        }
        let path = self.out.join(".mpi-hostfile");
        let text: String = self
            .hosts
            .iter()
            .map(|h| format!("{} slots={}\n", h.name, h.slots))
            .collect();
        gnc_contract::atomic::write_atomic(&path, text.as_bytes())?;
        Ok(path)
    }

    /// `mpirun` over the hostfile with the level's environment, here and (`-x`) on every
    /// host: `per_host` ranks on each host, consecutive ranks on one host (what the ranks'
    /// host groups assume, and check).
    fn command(
        &self,
        hostfile: &Path,
        launch: &str,
        generation: u64,
        resume_from: Option<u64>,
    ) -> Command {
        let mut command = Command::new("mpirun");
        self.level.apply(&mut command);
        command
            .arg("--hostfile")
            .arg(hostfile)
            .args(["-np", &self.ranks().to_string()])
            .args(["--map-by", &format!("ppr:{}:node", self.per_host)])
            // No `vader` (Open MPI's shared-memory transport between ranks of one host): its
            // files in /dev/shm outlive ranks that mpirun ends after its launcher died. A host's
            // ranks reduce over gnc's own segments; MPI carries the lanes between hosts, so
            // vader would only ever carry the few small messages of start-up and barriers.
            .args(["--mca", "btl", "^vader"]);
        // An ssh to a host that has dropped off the network gives up after 30 s without an
        // answer, not TCP's quarter of an hour (it matters where nobody kills it: a launcher
        // killed by SIGKILL). A user's own `plm_rsh_args` (environment) are kept.
        if std::env::var_os("OMPI_MCA_plm_rsh_args").is_none() {
            command.args([
                "--mca",
                "plm_rsh_args",
                "-o ServerAliveInterval=10 -o ServerAliveCountMax=3",
            ]);
        }
        for (key, _) in self.level.environment() {
            command.args(["-x", key]);
        }
        command
            .arg(&self.worker)
            .arg(&self.spec_file)
            .arg("--out")
            .arg(&self.out)
            .args(["--generation", &generation.to_string()])
            .args(["--launch", launch])
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
    fn start(
        &mut self,
        generation: u64,
        resume_from: Option<u64>,
        events: &mut dyn Observer,
    ) -> Result<Box<dyn Generation>, SupervisorError> {
        // Ranks of an earlier launch in this directory exit once they read its first beat.
        let pacemaker = Pacemaker::start(&self.out, generation).map_err(io_err(&self.out))?;
        self.wait_for_earlier_ranks()?;
        self.place(resume_from, events)?;
        let hostfile = self.hostfile_in_use().map_err(io_err(&self.out))?;
        let mut command = self.command(&hostfile, pacemaker.launch(), generation, resume_from);
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
        heartbeat::clear_ranks(out);
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
            elastic: self.min_hosts.is_some(),
            started: Instant::now(),
            join_timeout: self.join_timeout,
            joined: false,
            never_joined: None,
            beats: Beats::new(out.clone(), ranks),
            pacemaker,
        }))
    }
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
    /// An unreachable host does not end an elastic job: the next generation leaves it out.
    elastic: bool,
    started: Instant,
    join_timeout: Duration,
    joined: bool,
    /// Set when the ranks did not all join in time: the error that ends the job.
    never_joined: Option<HostsError>,
    beats: Beats,
    /// The launcher's beat, which the ranks watch.
    pacemaker: Pacemaker,
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
        let unreachable = probe::unreachable(&self.hosts);
        if !unreachable.is_empty() {
            return format!("cannot reach {}", list(&unreachable));
        }
        let arrived = self.out.join(protocol::MPI_ARRIVED_DIR);
        let missing: Vec<String> = (0..self.beats.processes())
            .filter(|rank| !arrived.join(rank.to_string()).exists())
            .map(|rank| self.rank_name(rank))
            .collect();
        if missing.is_empty() {
            format!(
                "every one of the {} ranks started, but MPI's start-up (MPI_Init) did not \
                 complete",
                self.beats.processes()
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
            let who = format!("mpirun ({} ranks)", self.beats.processes());
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
            let who = format!("mpirun ({} ranks)", self.beats.processes());
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
        (0..self.beats.processes())
            .filter(|&rank| {
                // Every rank beats from its arrival on; silence since then counts too.
                let moved = self.beats.moved(rank).unwrap_or(self.started);
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
            let unreachable = probe::unreachable(&self.hosts);
            if !unreachable.is_empty() {
                format!("the ranks on unreachable host(s) {}", list(&unreachable))
            } else {
                // The laggard: the rank that began the fewest iterations.
                let laggard = (0..self.beats.processes())
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
        // mpirun's ssh clients run in process groups of their own: found now, killed below.
        let descendants = Descendants::of(self.child.id());
        if !self.exited {
            // A stopped rank cannot act on mpirun's SIGTERM: continue the ranks here first,
            // so that mpirun ends them and cleans up after them (Open MPI's shared-memory
            // files) rather than being killed with them.
            let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::killpg(group, Signal::SIGCONT);
            stop(&mut self.child);
            self.exited = true;
        }
        // Whatever is left in mpirun's process group (local ranks).
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
        descendants.kill();
        // And on hosts that mpirun could not reach to end them, once they read it.
        self.pacemaker.end();
    }

    fn fatal(&mut self, failure: &Failure) -> Option<SupervisorError> {
        if !self.elastic {
            // Its message already names the hosts it could not reach (`not_joined`).
            if let Some(error) = self.never_joined.take() {
                return Some(error.into());
            }
            if self.all_joined() {
                // Every rank had joined: a death or a hang, which a restart may mend.
                return None;
            }
        }
        let unreachable = probe::unreachable(&self.hosts);
        if self.elastic && !unreachable.is_empty() {
            // The next generation starts without them.
            return None;
        }
        if let Some(error) = self.never_joined.take() {
            return Some(error.into());
        }
        if self.all_joined() {
            return None;
        }
        let why = if unreachable.is_empty() {
            "see mpirun's message above (a rank that never joined)".to_string()
        } else {
            format!("cannot reach {}", list(&unreachable))
        };
        Some(
            HostsError::NeverStarted {
                failure: failure.to_string(),
                ranks: self.beats.processes(),
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
