//! [`MpiTransport`]: the run loop's [`Transport`] over an MPI communicator.

use std::path::{Path, PathBuf};

use gnc_contract::observer::Unobserved;
use gnc_contract::request::Action;
use gnc_mpi::{MpiReducer, ReduceError};
use gnc_proto::{JobSpec, SpecError, ValidSpec};
use gnc_shm::tree::{self, Block, LayoutError};
use gnc_worker::EngineError;
use gnc_worker::device::Device;
use gnc_worker::distributed::WorkerError;
use gnc_worker::distributed::ckpt::{self, PartsBarrier, Share};
use gnc_worker::distributed::flat::{Unflatten, flatten_into};
use gnc_worker::distributed::hooks::Hooks;
use gnc_worker::engine::{Prepared, Trainer};
use gnc_worker::run_loop::{self, Course, Transport};
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
    #[error("{ranks} MPI ranks cannot host M = {workers} logical workers in subtrees: {error}")]
    Layout {
        ranks: usize,
        workers: usize,
        error: LayoutError,
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

/// This rank's place in the job: its block and the reducer over all ranks.
pub struct MpiTransport {
    rank: usize,
    hooks: Hooks,
    blocks: Vec<Block>,
    shapes: Vec<Vec<i64>>,
    reducer: MpiReducer<SimpleCommunicator>,
    block_sum: Vec<f32>,
    total: Vec<f32>,
}

impl MpiTransport {
    /// Rank `comm.rank()` of `comm.size()`, each hosting one subtree of the spec's M workers.
    pub fn new(
        comm: SimpleCommunicator,
        trainer: &Trainer,
        generation: u64,
    ) -> Result<Self, MpiWorkerError> {
        let ranks = comm.size() as usize;
        let workers = trainer.spec().parallel.workers;
        let blocks =
            tree::subtree_layout(workers, ranks).map_err(|error| MpiWorkerError::Layout {
                ranks,
                workers,
                error,
            })?;
        let shapes = trainer.bundle_shapes();
        let len = gnc_contract::protocol::bundle_len(&shapes);
        let rank = comm.rank() as usize;
        Ok(MpiTransport {
            rank,
            hooks: Hooks::from_env(rank, generation),
            reducer: MpiReducer::new(comm, workers, blocks.clone(), len)?,
            blocks,
            shapes,
            block_sum: vec![0.0; len],
            total: vec![0.0; len],
        })
    }

    pub fn block(&self) -> Block {
        self.blocks[self.rank]
    }
}

impl Transport for MpiTransport {
    type Error = MpiWorkerError;

    fn parallelism(&self, _trainer: &Trainer) -> usize {
        self.blocks.len()
    }

    fn writes_records(&self) -> bool {
        self.rank == 0
    }

    fn boundary(&mut self, t: u64) -> Result<Option<Action>, MpiWorkerError> {
        self.hooks.iteration_begins(t);
        // No supervisor posts requests to an MPI job yet: it runs to its end or --stop-after.
        Ok(None)
    }

    fn reduce(
        &mut self,
        trainer: &Trainer,
        state: &mut TrainState,
        prepared: &Prepared,
    ) -> Result<Bundle, MpiWorkerError> {
        let bundle = trainer.compute_block(state, prepared, self.block())?;
        flatten_into(&bundle, &mut self.block_sum);
        self.reducer.all_reduce(&self.block_sum, &mut self.total)?;
        let mut total = Unflatten::new(&self.shapes, trainer.device());
        total.push(0..self.total.len(), &self.total);
        Ok(total.finish())
    }

    fn checkpoint(
        &mut self,
        trainer: &Trainer,
        state: &TrainState,
        out: &Path,
    ) -> Result<(), MpiWorkerError> {
        let barrier = Barrier(self.reducer.comm());
        let share = Share {
            process: self.rank,
            blocks: &self.blocks,
            generation: 0,
            barrier: &barrier,
        };
        Ok(ckpt::write(trainer, state, out, &share)?)
    }
}

/// Every rank's part is durable once every rank has reached the barrier after writing it.
struct Barrier<'c>(&'c SimpleCommunicator);

impl PartsBarrier for Barrier<'_> {
    fn part_durable(&self, _iteration: u64) -> Result<(), WorkerError> {
        self.0.barrier();
        Ok(())
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
}

fn load_spec(path: &Path) -> Result<ValidSpec, MpiWorkerError> {
    if path.extension().is_some_and(|e| e == "json") {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let spec: JobSpec = serde_json::from_str(&text).map_err(|e| SpecError::Parse {
            origin: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(spec.validated()?)
    } else {
        Ok(JobSpec::load(path)?)
    }
}

impl MpiWorkerError {
    /// The exit code, which tells the launcher whether a restart can help (`gnc_contract::protocol`).
    pub fn exit_code(&self) -> u8 {
        use gnc_contract::protocol::*;
        match self {
            MpiWorkerError::Spec(_) | MpiWorkerError::Layout { .. } => EXIT_JOB_FAILED,
            MpiWorkerError::Engine(EngineError::Io(..) | EngineError::Thread(_)) => EXIT_FAILED,
            MpiWorkerError::Engine(_) => EXIT_JOB_FAILED,
            MpiWorkerError::Worker(e) => e.exit_code(),
            MpiWorkerError::Reduce(_) => EXIT_FAILED,
            MpiWorkerError::Init => EXIT_USAGE,
            MpiWorkerError::Disagree { .. } => EXIT_JOB_FAILED,
        }
    }
}

/// This rank's part of the job, to its end (or to `stop_after`).
pub fn run(request: &RunRequest) -> Result<(), MpiWorkerError> {
    let universe = mpi::initialize().ok_or(MpiWorkerError::Init)?;
    let spec = load_spec(&request.spec)?;
    crate::agreement::check(&universe.world(), &crate::agreement::fingerprint(&spec))?;
    gnc_worker::pin::pin_process_environment(spec.reproducibility).map_err(EngineError::Config)?;
    let mut trainer = Trainer::on(&spec, 1, Device::CPU)?;
    let mut transport = MpiTransport::new(universe.world(), &trainer, request.generation)?;
    let io = |e: std::io::Error| EngineError::Io(request.out.clone(), e.to_string());
    std::fs::create_dir_all(&request.out).map_err(io)?;
    if transport.writes_records() {
        // A record of what ran, as every run keeps it: `gncctl verify` re-runs it.
        let json = serde_json::to_vec_pretty(&*spec).expect("specs serialise");
        gnc_contract::atomic::write_atomic(&request.out.join("spec.json"), &json).map_err(io)?;
        // Every rank has joined (the agreement above took all of them).
        let started = request.out.join(gnc_contract::protocol::MPI_STARTED_FILE);
        let generation = request.generation.to_string();
        gnc_contract::atomic::write_atomic(&started, generation.as_bytes()).map_err(io)?;
    }
    let mut state = trainer.fresh_state();
    if let Some(iteration) = request.resume_from {
        ckpt::resume(
            &trainer,
            &mut state,
            &request.out,
            iteration,
            transport.block(),
        )?;
    }
    let course = Course {
        out: &request.out,
        stop_after: request.stop_after,
        resumed: request.resume_from.is_some(),
    };
    run_loop::run(
        &mut trainer,
        &mut state,
        &mut transport,
        &course,
        &mut Unobserved,
    )?;
    Ok(())
}
