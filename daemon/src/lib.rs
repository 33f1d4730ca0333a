//! gnc supervisor library (DESIGN.md §2): runs one job as a group of `gnc-worker`
//! processes over shared memory, used by `gncctl run --devices` now and by `gncd` next.
//!
//! - [`layout`]: which logical workers each process hosts (subtrees of the reduction tree);
//! - [`worker_bin`]: where the `gnc-worker` binary is;
//! - [`segments`]: one generation's shared-memory segments, unlinked on drop;
//! - [`channel`]: the supervisor's side of a generation's in-band control (progress,
//!   checkpoints, requests), whatever transport carries it;
//! - [`group`]: spawning, watching and killing the worker processes;
//! - [`supervisor`]: the run loop — on any worker death or hang, stop the group, bump the
//!   generation, recreate the segments and restart everyone from the last checkpoint;
//! - [`hostfile`], [`across_hosts`]: a job across hosts, started by `mpirun` and restarted
//!   from its checkpoint when a rank dies;
//! - [`metrics_tail`]: following a job's `metrics.jsonl` (gncd's progress and metrics, and
//!   the progress of a job across hosts, whose ranks have no control block to read);
//! - [`gncd`]: the daemon (queue, socket server, signals, sd_notify) around it.

pub mod across_hosts;
pub mod channel;
mod forward;
pub mod gncd;
pub mod group;
pub mod hostfile;
pub mod layout;
pub mod metrics_tail;
pub mod segments;
pub mod supervisor;
pub mod worker_bin;

pub use gnc_contract::interrupts::Interrupts;
pub use gnc_contract::observer::Observer;
pub use group::{FailureCause, WorkerFailure};
pub use supervisor::{SupervisorError, SupervisorOptions, supervise};
