//! [`MpiTransport`]: the run loop's [`Transport`] over an MPI communicator.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gnc_contract::request::{self, Action};
use gnc_mpi::{MpiReducer, ReduceError};
use gnc_proto::{JobSpec, SpecError, ValidSpec};
use gnc_shm::{SegmentError, ShardedReducer};
use gnc_tree::{Block, LayoutError};
use std::time::Duration;

use crate::heartbeat::Pulse;
use crate::host::{Comms, HostSegments, Placement};
use gnc_worker::EngineError;
use gnc_worker::device::Device;
use gnc_worker::distributed::WorkerError;
use gnc_worker::distributed::ckpt::{self, PartsBarrier, Share};
use gnc_worker::distributed::flat::{Unflatten, flatten_into};
use gnc_worker::distributed::hooks::Hooks;
use gnc_worker::distributed::start::{Part, train_part};
use gnc_worker::engine::{Prepared, Trainer};
use gnc_worker::run_loop::Transport;
use gnc_worker::state::TrainState;
use gnc_worker::tree::Bundle;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

/// Why a rank stopped.
#[derive(Debug, thiserror::Error)]
pub enum MpiWorkerError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error("MPI all-reduce: {0}")]
    Reduce(#[from] ReduceError),
    #[error(
        "{hosts} host(s) of {per_host} process(es) cannot host M = {workers} logical workers in \
         subtrees: {error}"
    )]
    Layout {
        hosts: usize,
        per_host: usize,
        workers: usize,
        error: LayoutError,
    },
    #[error(
        "{ranks} MPI ranks cannot form hosts of {per_host} processes each (--processes-per-host)"
    )]
    PerHost { ranks: usize, per_host: usize },
    #[error("the host's shared memory: {0}")]
    Segment(#[from] SegmentError),
    #[error("the reduction over the host's shared memory: {0}")]
    HostReduce(gnc_shm::reduce::ReduceError),
    #[error(
        "process {process} of this host could not {step} the host's shared memory (its own \
         error says why)"
    )]
    HostPeer { process: usize, step: &'static str },
    #[error(
        "rank {rank} runs on {host}, but rank {first} on {first_host}: ranks {first}..{end} are \
         one host's processes, which reduce over shared memory, so they must run on one \
         machine (mpirun --map-by ppr:{per_host}:node)"
    )]
    SplitHost {
        rank: usize,
        host: String,
        first: usize,
        first_host: String,
        end: usize,
        per_host: usize,
    },
    #[error("MPI did not initialise (is this process started by mpirun?)")]
    Init,
    #[error(
        "rank {rank} on {host} runs {theirs}, but rank 0 on {host0} runs {first}: every host \
         must run the same gnc build on the same spec"
    )]
    Disagree {
        rank: usize,
        host: String,
        theirs: String,
        host0: String,
        first: String,
    },
}

/// How long a process waits for another process of its host in the reduction before it
/// gives up. Only a hung process is this slow (a dead one ends the whole job through
/// `mpirun`), and a wait includes the other process's exchange with the other hosts.
const HOST_PEER_TIMEOUT: Duration = Duration::from_secs(600);

/// This rank's place in the job, and the two-level reduction: its host's processes combine
/// their block sums over shared memory (each reducing one shard of the vector), each process
/// exchanges its shard with the same lane of every other host over MPI, and the host's
/// processes read the total's shards where they lie in shared memory.
pub struct MpiTransport {
    placement: Placement,
    hooks: Hooks,
    shapes: Vec<Vec<i64>>,
    world: SimpleCommunicator,
    host: ShardedReducer,
    lane: MpiReducer<SimpleCommunicator>,
    /// The output directory, where the launcher posts requests.
    out: PathBuf,
    /// This rank's progress, as its heartbeat tells the launcher.
    pulse: Arc<Pulse>,
}

impl MpiTransport {
    /// The transport of `placement.rank`, collective over `world`: it splits the host and
    /// lane communicators and maps the host's segments.
    pub fn new(
        world: SimpleCommunicator,
        placement: Placement,
        trainer: &Trainer,
        shm_job: &str,
        generation: u64,
        out: &Path,
        pulse: Arc<Pulse>,
    ) -> Result<Self, MpiWorkerError> {
        let shapes = trainer.bundle_shapes();
        let len = gnc_contract::protocol::bundle_len(&shapes);
        let Comms { host, lane } = Comms::split(&world, &placement);
        let job = format!("{shm_job}_h{}", placement.host());
        let segments = HostSegments::open(&host, &job, generation, len)?;
        let host = ShardedReducer::new(
            placement.lane(),
            placement.host_workers(),
            &placement.local_blocks(),
            len,
            segments.block_sums,
            segments.shards,
        )
        .map_err(MpiWorkerError::HostReduce)?;
        let shard_len = gnc_shm::shard_range(len, placement.per_host, placement.lane()).len();
        let lane = MpiReducer::new(
            lane,
            trainer.spec().parallel.workers,
            placement.host_blocks.clone(),
            shard_len,
        )?;
        Ok(MpiTransport {
            hooks: Hooks::from_env(placement.rank, generation),
            placement,
            shapes,
            world,
            host,
            lane,
            out: out.to_path_buf(),
            pulse,
        })
    }

    pub fn block(&self) -> Block {
        self.placement.block()
    }
}

impl Transport for MpiTransport {
    type Error = MpiWorkerError;

    fn parallelism(&self, _trainer: &Trainer) -> usize {
        self.placement.blocks.len()
    }

    fn writes_records(&self) -> bool {
        self.placement.rank == 0
    }

    fn boundary(&mut self, t: u64) -> Result<Option<Action>, MpiWorkerError> {
        self.hooks.iteration_begins(t);
        // Rank 0 takes the launcher's request, if any, and every rank acts on what it says
        // at this same boundary (one byte broadcast per iteration).
        let mut code = [0u8];
        if self.placement.rank == 0 {
            code[0] = match request::file::take(&self.out) {
                Ok(None) => 0,
                Ok(Some(Action::Checkpoint)) => 1,
                Ok(Some(Action::Stop)) => 2,
                Err(message) => {
                    eprintln!("gnc-mpi-worker: ignoring a request: {message}");
                    0
                }
            };
        }
        self.world.process_at_rank(0).broadcast_into(&mut code[..]);
        Ok(match code[0] {
            1 => Some(Action::Checkpoint),
            2 => Some(Action::Stop),
            _ => None,
        })
    }

    fn begin(&mut self, t: u64) {
        self.pulse.begun(t + 1);
    }

    fn complete(&mut self, done: u64) {
        self.pulse.done(done);
    }

    fn reduce(
        &mut self,
        trainer: &Trainer,
        state: &mut TrainState,
        prepared: &Prepared,
    ) -> Result<Bundle, MpiWorkerError> {
        let bundle = trainer.compute_block(state, prepared, self.block())?;
        let mut total = Unflatten::new(&self.shapes, trainer.device());
        let mut across = Ok(());
        let lane = &mut self.lane;
        self.host
            .all_reduce_across(
                state.iteration,
                |slot| flatten_into(&bundle, slot),
                |shard| across = lane.all_reduce_in_place(shard),
                |range, shard| total.push(range, shard),
                HOST_PEER_TIMEOUT,
            )
            .map_err(MpiWorkerError::HostReduce)?;
        across?;
        Ok(total.finish())
    }

    fn checkpoint(
        &mut self,
        trainer: &Trainer,
        state: &TrainState,
        out: &Path,
    ) -> Result<(), MpiWorkerError> {
        let barrier = Barrier(&self.world, &self.pulse);
        let share = Share {
            process: self.placement.rank,
            blocks: &self.placement.blocks,
            generation: 0,
            barrier: &barrier,
        };
        Ok(ckpt::write(trainer, state, out, &share)?)
    }
}

/// Every rank's part is durable once every rank has reached the barrier after writing it.
struct Barrier<'c>(&'c SimpleCommunicator, &'c Pulse);

impl PartsBarrier for Barrier<'_> {
    fn part_durable(&self, _iteration: u64) -> Result<(), WorkerError> {
        self.0.barrier();
        Ok(())
    }

    fn checkpoint_complete(&self, iteration: u64) {
        self.1.checkpointed(iteration);
    }
}

/// What `gnc-mpi-worker` is asked to do.
pub struct RunRequest {
    /// The spec: TOML, or the JSON a launcher records (`spec.json`).
    pub spec: PathBuf,
    /// Which start of the job this is (0, then one more per restart).
    pub generation: u64,
    pub out: PathBuf,
    pub resume_from: Option<u64>,
    pub stop_after: Option<u64>,
    /// Processes on each host (ranks `h·N .. (h+1)·N` are host h's).
    pub processes_per_host: usize,
    /// The launch that started this rank, which the launcher's beat names
    /// (`gnc_contract::heartbeat::LauncherWatch`); `None` where no launcher beats.
    pub launch: Option<String>,
}

impl MpiWorkerError {
    /// The exit code, which tells the launcher whether a restart can help (`gnc_contract::protocol`).
    pub fn exit_code(&self) -> u8 {
        use gnc_contract::protocol::*;
        match self {
            MpiWorkerError::Spec(_)
            | MpiWorkerError::Layout { .. }
            | MpiWorkerError::PerHost { .. }
            | MpiWorkerError::SplitHost { .. } => EXIT_JOB_FAILED,
            MpiWorkerError::Segment(_)
            | MpiWorkerError::HostReduce(_)
            | MpiWorkerError::HostPeer { .. } => EXIT_FAILED,
            MpiWorkerError::Engine(EngineError::Io(..) | EngineError::Thread(_)) => EXIT_FAILED,
            MpiWorkerError::Engine(_) => EXIT_JOB_FAILED,
            MpiWorkerError::Worker(e) => e.exit_code(),
            MpiWorkerError::Reduce(_) => EXIT_FAILED,
            MpiWorkerError::Init => EXIT_USAGE,
            MpiWorkerError::Disagree { .. } => EXIT_JOB_FAILED,
        }
    }
}

/// Before MPI's start-up, which waits for every rank: leaves this rank's (empty) arrival file
/// for the launcher, which names the ranks that never arrived if the job does not start in
/// time, and starts the rank's heartbeat. The rank is the one Open MPI's launcher gives in
/// the environment (without one, as under a test's own `mpirun`-less start, there is no
/// launcher to tell).
fn arrive(request: &RunRequest) -> Result<Arc<Pulse>, MpiWorkerError> {
    let Some(rank) = std::env::var("OMPI_COMM_WORLD_RANK")
        .ok()
        .and_then(|r| r.parse::<usize>().ok())
    else {
        return Ok(Arc::default());
    };
    Hooks::from_env(rank, request.generation).before_join();
    let dir = request.out.join(gnc_contract::protocol::MPI_ARRIVED_DIR);
    let io = |e: std::io::Error| EngineError::Io(dir.clone(), e.to_string());
    std::fs::create_dir_all(&dir).map_err(io)?;
    gnc_contract::atomic::write_atomic(&dir.join(rank.to_string()), b"").map_err(io)?;
    let out = &request.out;
    crate::heartbeat::start(out, rank, request.launch.as_deref())
        .map_err(|e| EngineError::Io(out.join(gnc_contract::heartbeat::DIR), e.to_string()).into())
}

/// This rank's part of the job, to its end (or to `stop_after`).
pub fn run(request: &RunRequest) -> Result<(), MpiWorkerError> {
    let pulse = arrive(request)?;
    let universe = mpi::initialize().ok_or(MpiWorkerError::Init)?;
    let world = universe.world();
    let spec = JobSpec::load_for_worker(&request.spec)?;
    let per_host = request.processes_per_host;
    crate::agreement::check(&world, &crate::agreement::fingerprint(&spec), per_host)?;
    let placement = Placement::new(
        spec.parallel.workers,
        world.rank() as usize,
        world.size() as usize,
        per_host,
    )?;
    let part = Part {
        spec: &spec,
        device: Device::CPU,
        block: placement.block(),
        out: &request.out,
        resume_from: request.resume_from,
        stop_after: request.stop_after,
    };
    train_part(&part, |trainer| {
        let shm_job = gnc_contract::protocol::shm_job(&spec.name, &request.out);
        let transport = MpiTransport::new(
            world,
            placement,
            trainer,
            &shm_job,
            request.generation,
            &request.out,
            pulse,
        )?;
        if transport.writes_records() {
            record_start(&spec, request)?;
        }
        Ok(transport)
    })
}

/// Rank 0, once every rank has joined: the spec it runs (`gncctl verify` re-runs it) and the
/// record that this generation started.
fn record_start(spec: &ValidSpec, request: &RunRequest) -> Result<(), MpiWorkerError> {
    let io = |e: std::io::Error| EngineError::Io(request.out.clone(), e.to_string());
    std::fs::create_dir_all(&request.out).map_err(io)?;
    let json = serde_json::to_vec_pretty(&**spec).expect("specs serialise");
    gnc_contract::atomic::write_atomic(&request.out.join("spec.json"), &json).map_err(io)?;
    let started = request.out.join(gnc_contract::protocol::MPI_STARTED_FILE);
    let generation = request.generation.to_string();
    gnc_contract::atomic::write_atomic(&started, generation.as_bytes()).map_err(io)?;
    Ok(())
}
