//! Requests to a running job from outside the supervisor's loop (the daemon's socket and
//! signal handlers): checkpoint now, stop with a checkpoint, or cancel. The supervisor polls
//! them between its checks of the workers and forwards checkpoint and stop requests to the
//! workers through the control block, where the workers agree on the iteration boundary at
//! which to act (see `gnc_contract::protocol`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Shared between the supervisor and whoever may interrupt its run; every method may be
/// called from any thread, any number of times.
#[derive(Debug, Default)]
pub struct Interrupts {
    checkpoint: AtomicBool,
    stop: AtomicBool,
    cancel: AtomicBool,
}

impl Interrupts {
    pub fn new() -> Arc<Interrupts> {
        Arc::new(Interrupts::default())
    }

    /// Write a checkpoint at the next iteration boundary and go on training.
    pub fn request_checkpoint(&self) {
        self.checkpoint.store(true, Ordering::Release);
    }

    /// Checkpoint at the next iteration boundary and end the run there: `supervise` then
    /// returns a summary with `complete == false`, and `resume` continues it bit for bit.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Kill the workers now, without a checkpoint: `supervise` returns
    /// [`crate::SupervisorError::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Release);
    }

    pub(crate) fn take_checkpoint(&self) -> bool {
        self.checkpoint.swap(false, Ordering::AcqRel)
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }
}
