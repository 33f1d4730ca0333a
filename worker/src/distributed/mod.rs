//! One worker process of a multi-process run (DESIGN.md §2): the `gnc-worker` binary's
//! logic. Process p of P hosts block p of logical workers — a subtree of the reduction tree —
//! computes its block sum on one thread, writes it in place into its shared-memory slot,
//! takes part in the sharded all-reduce, and applies the same update as every other process
//! to its full replica of the parameters. Since every float addition follows the canonical
//! tree, the result is bit-identical to the in-process engine for any P.
//!
//! What it shares with the supervisor — the command line, segment names, control words, exit
//! codes, checkpoint / stop requests — is in `gnc_contract` (`args`, `protocol`, `request`).
//! - [`start`]: the one start-up of a worker process, whatever its transport; [`run`]: the
//!   shared-memory transport; [`ckpt`]: checkpoints written by all processes;
//! - [`flat`]: bundles as flat f32; [`hooks`]: fault injection for tests.

pub mod ckpt;
pub mod flat;
pub mod hooks;
pub mod run;
pub mod start;

use std::path::PathBuf;
use std::time::Duration;

use gnc_shm::SegmentError;
use gnc_shm::header::HeaderMismatch;
use gnc_shm::reduce::ReduceError;
use gnc_shm::slots::SlotError;
use gnc_tree::LayoutError;

pub use run::run;

use crate::{CheckpointError, EngineError};

/// Why a worker process stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot read the job spec {0}: {1}")]
    Spec(PathBuf, String),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("--device {0}")]
    Device(#[from] gnc_proto::devices::DeviceUnavailable),
    #[error("process {process} does not exist in a layout of {processes} blocks")]
    NoSuchProcess { process: usize, processes: usize },
    #[error("shared memory: {0}")]
    Segment(#[from] SegmentError),
    #[error("reduction: {0}")]
    Reduce(ReduceError),
    #[error(
        "peer process {peer} (logical workers [{lo}, {hi})) did not {what} iteration {iteration} \
         within {waited:?}: it died or hangs"
    )]
    PeerTimeout {
        peer: usize,
        lo: usize,
        hi: usize,
        what: &'static str,
        iteration: u64,
        waited: Duration,
    },
    #[error(
        "the segments carry generation {found}, but this worker belongs to generation {ours}; exiting"
    )]
    GenerationChanged { ours: u64, found: u64 },
    #[error("the supervisor (pid {expected}) is gone, our parent is now pid {found}; exiting")]
    ParentGone { expected: u32, found: i32 },
    #[error("cannot ask to be killed with the supervisor (prctl PR_SET_PDEATHSIG): {0}")]
    DeathSignal(nix::errno::Errno),
}

impl WorkerError {
    /// The process exit code, which tells the supervisor whether a restart can help.
    pub fn exit_code(&self) -> u8 {
        use gnc_contract::protocol::*;
        match self {
            WorkerError::Engine(e) => match e {
                EngineError::Io(..) | EngineError::Thread(_) => EXIT_FAILED,
                EngineError::Checkpoint(CheckpointError::Io(..)) => EXIT_FAILED,
                _ => EXIT_JOB_FAILED,
            },
            WorkerError::Spec(..) | WorkerError::Layout(_) | WorkerError::NoSuchProcess { .. } => {
                EXIT_USAGE
            }
            WorkerError::DeathSignal(_) | WorkerError::Device(_) => EXIT_USAGE,
            WorkerError::GenerationChanged { .. } | WorkerError::ParentGone { .. } => EXIT_STOPPED,
            WorkerError::Segment(SegmentError::NotFound { .. })
            | WorkerError::Segment(SegmentError::Mismatch {
                mismatch: HeaderMismatch::Generation { .. },
                ..
            }) => EXIT_STOPPED,
            WorkerError::Segment(_) | WorkerError::Reduce(_) | WorkerError::PeerTimeout { .. } => {
                EXIT_FAILED
            }
        }
    }

    /// A reduction error, with a timed-out wait turned into one that names the peer.
    fn from_reduce(e: ReduceError, blocks: &[(usize, usize)], generation: u64) -> WorkerError {
        let peer = |peer: usize, what, iteration, waited| {
            let (lo, hi) = blocks.get(peer).copied().unwrap_or((0, 0));
            WorkerError::PeerTimeout {
                peer,
                lo,
                hi,
                what,
                iteration,
                waited,
            }
        };
        match e {
            ReduceError::Slot(SlotError::SlotTimeout {
                slot,
                iteration,
                waited,
                ..
            }) => peer(slot, "publish its sum for", iteration, waited),
            ReduceError::Slot(SlotError::ReaderTimeout {
                reader,
                iteration,
                waited,
                ..
            }) => peer(reader, "finish reading", iteration, waited),
            ReduceError::Slot(SlotError::WrongGeneration { found, .. }) => {
                WorkerError::GenerationChanged {
                    ours: generation,
                    found,
                }
            }
            e => WorkerError::Reduce(e),
        }
    }
}
