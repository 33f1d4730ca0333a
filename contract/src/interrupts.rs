//! Requests to a running job from outside its loop (the daemon's socket and signal handlers,
//! a caller of the in-process run): checkpoint now, stop with a checkpoint, or cancel. A
//! supervisor polls them between its checks of the workers and forwards checkpoint and stop
//! requests to the workers through the control block, where the workers agree on the
//! iteration boundary at which to act ([`crate::request`]); the in-process run acts on them at
//! its next iteration boundary.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
    /// `SupervisorError::Cancelled`.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Release);
    }

    /// Whether a checkpoint was asked for since the last call.
    pub fn take_checkpoint(&self) -> bool {
        self.checkpoint.swap(false, Ordering::AcqRel)
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// What to do at the next iteration boundary, for a run that acts on these itself: a stop
    /// (which checkpoints) before a checkpoint asked for at the same time.
    pub fn action(&self) -> Option<crate::request::Action> {
        use crate::request::Action;
        let checkpoint = self.take_checkpoint();
        if self.stop_requested() {
            Some(Action::Stop)
        } else {
            checkpoint.then_some(Action::Checkpoint)
        }
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }
}
