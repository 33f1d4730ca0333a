//! [`MpiTransport`]: the run loop's [`Transport`] over an MPI communicator.

use std::path::{Path, PathBuf};

use gnc_contract::observer::Unobserved;
use gnc_contract::request::Action;
use gnc_mpi::{MpiReducer, ReduceError};
use gnc_proto::{JobSpec, SpecError};
use gnc_shm::tree::{self, Block, LayoutError};
use gnc_worker::EngineError;
use gnc_worker::device::Device;
use gnc_worker::distributed::WorkerError;
use gnc_worker::distributed::ckpt::{self, PartsBarrier, Share};
use gnc_worker::distributed::flat::{Unflatten, flatten_into};
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
}

/// This rank's place in the job: its block and the reducer over all ranks.
pub struct MpiTransport {
    rank: usize,
    blocks: Vec<Block>,
    shapes: Vec<Vec<i64>>,
    reducer: MpiReducer<SimpleCommunicator>,
    block_sum: Vec<f32>,
    total: Vec<f32>,
}

impl MpiTransport {
    /// Rank `comm.rank()` of `comm.size()`, each hosting one subtree of the spec's M workers.
    pub fn new(comm: SimpleCommunicator, trainer: &Trainer) -> Result<Self, MpiWorkerError> {
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
        Ok(MpiTransport {
            rank: comm.rank() as usize,
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

    fn boundary(&mut self, _t: u64) -> Result<Option<Action>, MpiWorkerError> {
        // No supervisor posts requests to an MPI job yet: it runs to its end or --stop-after.
        Ok(None)
    }

    fn reduce(
        &mut self,
        trainer: &Trainer,
        state: &mut TrainState,
        prepared: &Prepared,
    ) -> Result<Bundle, MpiWorkerError> {
        let mut sums = trainer.compute_blocks(state, prepared, &[self.block()])?;
        let (_, bundle) = sums.pop().expect("one block, one sum");
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
    pub spec: PathBuf,
    pub out: PathBuf,
    pub resume_from: Option<u64>,
    pub stop_after: Option<u64>,
}

/// This rank's part of the job, to its end (or to `stop_after`).
pub fn run(request: &RunRequest) -> Result<(), MpiWorkerError> {
    let universe = mpi::initialize().ok_or(MpiWorkerError::Init)?;
    let spec = JobSpec::load(&request.spec)?;
    gnc_worker::pin::pin_process_environment(spec.reproducibility).map_err(EngineError::Config)?;
    let mut trainer = Trainer::on(&spec, 1, Device::CPU)?;
    let mut transport = MpiTransport::new(universe.world(), &trainer)?;
    let io = |e: std::io::Error| EngineError::Io(request.out.clone(), e.to_string());
    std::fs::create_dir_all(&request.out).map_err(io)?;
    if transport.writes_records() {
        // A record of what ran, as every run keeps it: `gncctl verify` re-runs it.
        let json = serde_json::to_vec_pretty(&*spec).expect("specs serialise");
        gnc_contract::atomic::write_atomic(&request.out.join("spec.json"), &json).map_err(io)?;
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
