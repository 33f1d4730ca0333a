//! The supervisor's side of one generation's in-band control (DESIGN.md §3): how far each
//! worker process got, which checkpoint the workers made whole last, and where checkpoint and
//! stop requests are posted. The workers' side is `gnc_worker::run_loop::Transport`; shared
//! memory carries both today ([`GenerationSegments`]), and a transport across hosts brings its
//! own implementation of each, leaving the supervisor's loop as it is.

use gnc_contract::protocol::{CHECKPOINT_WORD, begun_word, done_word};
use gnc_contract::request::{self, Action};

use crate::segments::GenerationSegments;

/// How far one worker process got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Iterations it has begun.
    pub begun: u64,
    /// Iterations it has completed.
    pub done: u64,
}

/// What the supervisor reads from and posts to a running generation.
pub trait GroupChannel {
    /// Worker processes in the generation.
    fn processes(&self) -> usize;

    /// How far `process` got.
    fn progress(&self, process: usize) -> Progress;

    /// A value that changes whenever any worker makes progress of any kind (iterations,
    /// checkpoint parts): a group whose pulse stands still for the hang timeout is hung.
    fn pulse(&self) -> Vec<u64>;

    /// Iterations completed at the newest checkpoint the workers made whole in this
    /// generation, if any.
    fn last_checkpoint(&self) -> Option<u64>;

    /// Asks every worker to act at one iteration boundary they agree on; `false` while an
    /// earlier request is still being served (post again later).
    fn post(&self, action: Action) -> bool;

    /// Frees the request slot once every worker has passed a served checkpoint's boundary.
    fn clear_served(&self);

    /// The fewest iterations any process has completed: the group's progress.
    fn completed(&self) -> u64 {
        (0..self.processes())
            .map(|p| self.progress(p).done)
            .min()
            .unwrap_or(0)
    }
}

impl GroupChannel for GenerationSegments {
    fn processes(&self) -> usize {
        self.processes()
    }

    fn progress(&self, process: usize) -> Progress {
        let control = self.control();
        Progress {
            begun: control.load(begun_word(process)),
            done: control.load(done_word(process)),
        }
    }

    fn pulse(&self) -> Vec<u64> {
        let control = self.control();
        (0..control.words()).map(|i| control.load(i)).collect()
    }

    fn last_checkpoint(&self) -> Option<u64> {
        // The word holds iterations + 1, so that 0 can mean "none yet".
        self.control().load(CHECKPOINT_WORD).checked_sub(1)
    }

    fn post(&self, action: Action) -> bool {
        request::post(self.control(), action)
    }

    fn clear_served(&self) {
        let min_begun = (0..self.processes())
            .map(|p| self.progress(p).begun)
            .min()
            .unwrap_or(0);
        request::clear_passed(self.control(), min_begun);
    }
}
