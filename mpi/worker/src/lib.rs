//! One rank of a job across hosts (DESIGN.md §5), started by `mpirun`: the engine's one run
//! loop (`gnc_worker::run_loop`) over [`MpiTransport`]. Rank r hosts block r of the logical
//! workers (a subtree), computes its block sum; a host's processes combine theirs over shared
//! memory into the host's block sum, shard by shard ([`host`]), and each exchanges its shard
//! with the other hosts through `gnc_mpi::MpiReducer`, so every rank applies the same update
//! as the one-host run, bit for bit. Checkpoints: every rank writes the part of its block, an MPI barrier, rank 0 writes
//! the manifest — the format of a shared-memory run's, so either resumes the other's.

pub mod agreement;
pub mod heartbeat;
pub mod host;
mod transport;

pub use transport::{MpiTransport, MpiWorkerError, RunRequest, run};
