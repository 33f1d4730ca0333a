//! What a run tells whoever watches it — a progress bar, the daemon's job record, a test —
//! whether it trains in this process or in a supervised group of worker processes. One trait
//! for both, so a watcher is written once; every event has a default that ignores it.

use std::fmt::Display;

use gnc_proto::{EvalRecord, IterRecord};

pub trait Observer {
    /// Training starts, or starts again after a restart, at iteration `from` of `total`, on
    /// `parallelism` compute threads (in this process) or worker processes.
    fn started(&mut self, _from: u64, _total: u64, _parallelism: usize) {}
    /// `completed` iterations are complete (in every worker).
    fn progress(&mut self, _completed: u64) {}
    /// An iteration's record (where this process writes the records).
    fn iteration(&mut self, _record: &IterRecord) {}
    /// An evaluation's record (where this process writes the records).
    fn evaluated(&mut self, _record: &EvalRecord) {}
    /// A checkpoint of `iteration` completed iterations is durable.
    fn checkpointed(&mut self, _iteration: u64) {}
    /// Worker processes of a supervised run: generation `generation` runs as `pids`.
    fn spawned(&mut self, _generation: u64, _pids: &[u32]) {}
    /// A worker failed; every worker restarts from the last checkpoint (restart `restart`
    /// of at most `max`).
    fn restarting(&mut self, _failure: &dyn Display, _restart: u32, _max: u32) {}
    /// A shared-memory segment left by a dead run was removed.
    fn stale_segment_removed(&mut self, _name: &str, _why: &str) {}
    fn warning(&mut self, _message: &str) {}
}

/// Watches nothing.
pub struct Unobserved;

impl Observer for Unobserved {}
