//! The seam between the supervisor's one loop ([`crate::supervisor`]) and the ways a job's
//! worker processes are started. A [`Launch`] starts a generation; the [`Generation`] it
//! returns brings its half of the progress channel ([`GroupChannel`]), reports deaths and
//! ends every process it started. The restart rule, the exit-code policy, the hang watchdog
//! and the checkpoint lookup are the loop's, the same for every placement:
//!
//! - [`shm::ProcessGroup`]: one `gnc-worker` per device on this machine, over shared memory;
//! - [`mpirun::Mpirun`]: `gnc-mpi-worker` ranks on the hosts of a hostfile, over MPI.
//!
//! GPU workers (CUDA IPC, NCCL) become a third implementation, not a third loop.

mod beats;
pub mod hosts;
pub mod mpirun;
mod pacemaker;
mod probe;
pub mod shm;

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use gnc_contract::observer::Observer;

use crate::channel::GroupChannel;
use crate::supervisor::SupervisorError;

/// One way of starting the processes of a job.
pub trait Launch {
    /// Starts generation `generation` (0, then one more per restart), every process resuming
    /// from the checkpoint after `resume_from` iterations (`None`: from the start).
    fn start(
        &mut self,
        generation: u64,
        resume_from: Option<u64>,
        events: &mut dyn Observer,
    ) -> Result<Box<dyn Generation>, SupervisorError>;
}

/// What polling a generation found.
pub enum Poll {
    Running,
    /// Every process finished its part of the job.
    Succeeded,
    Failed(Failure),
}

/// A started generation of a job's processes.
pub trait Generation {
    /// Progress, checkpoints and requests.
    fn channel(&self) -> &dyn GroupChannel;

    /// Reaps what has exited; the first failure found ends the generation.
    fn poll(&mut self) -> std::io::Result<Poll>;

    /// The processes known not to be computing (stopped, or silent past the transport's
    /// heartbeat), named for a message: "worker 1 (pid 4242)", "rank 3 on gnch2".
    fn stalled(&self) -> Vec<String>;

    /// The process(es) to blame when the whole generation made no progress for `waited`:
    /// the stalled ones, else the one furthest behind (the others wait for it).
    fn hung(&self, waited: Duration) -> Failure;

    /// Ends every process of the generation, anywhere it runs, and waits for them.
    fn end(&mut self);

    /// Why a failed generation must not be started again, if this launch knows (ranks that
    /// never joined, an unreachable host): the error to end the job with.
    fn fatal(&mut self, _failure: &Failure) -> Option<SupervisorError> {
        None
    }
}

/// Why a generation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureCause {
    /// It exited with this non-zero code.
    Exited(i32),
    /// A signal killed it.
    Signaled(String),
    /// The job made no progress for this long.
    Hung(Duration),
}

impl FailureCause {
    pub fn from_status(status: ExitStatus) -> FailureCause {
        match (status.code(), status.signal()) {
            (Some(code), _) => FailureCause::Exited(code),
            (None, Some(signal)) => FailureCause::Signaled(
                nix::sys::signal::Signal::try_from(signal)
                    .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_string()),
            ),
            (None, None) => FailureCause::Exited(-1),
        }
    }

    /// Whether a restart would fail the same way (the job's own error, or a usage error).
    pub fn recurs(&self) -> bool {
        use gnc_contract::protocol::{EXIT_JOB_FAILED, EXIT_USAGE};
        matches!(self, FailureCause::Exited(c)
            if *c == i32::from(EXIT_JOB_FAILED) || *c == i32::from(EXIT_USAGE))
    }
}

/// A failed generation, for restart decisions and error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The process(es) that failed, named: "worker 2 (pid 4242)", "mpirun (4 ranks)".
    pub who: String,
    pub generation: u64,
    pub cause: FailureCause,
    /// Iterations the job had completed.
    pub iteration: u64,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.who)?;
        match &self.cause {
            FailureCause::Exited(code) => write!(f, "exited with status {code}")?,
            FailureCause::Signaled(signal) => write!(f, "was killed by {signal}")?,
            FailureCause::Hung(waited) => write!(f, "made no progress for {waited:?}")?,
        }
        write!(
            f,
            " in iteration {} (generation {})",
            self.iteration, self.generation
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_read_well() {
        let failure = Failure {
            who: "worker 2 (pid 4242)".into(),
            generation: 1,
            cause: FailureCause::Signaled("SIGKILL".into()),
            iteration: 7,
        };
        assert_eq!(
            failure.to_string(),
            "worker 2 (pid 4242) was killed by SIGKILL in iteration 7 (generation 1)"
        );
        assert!(FailureCause::Exited(4).recurs() && FailureCause::Exited(2).recurs());
        assert!(!FailureCause::Exited(1).recurs());
        assert!(!FailureCause::Hung(Duration::from_secs(1)).recurs());
    }
}
