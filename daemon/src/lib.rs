//! gnc supervisor library (DESIGN.md §2): runs one job as a group of `gnc-worker`
//! processes over shared memory, used by `gncctl run --devices` now and by `gncd` next.
//!
//! - [`layout`]: which logical workers each process hosts (subtrees of the reduction tree);
//! - [`worker_bin`]: where the `gnc-worker` binary is;
//! - [`segments`]: one generation's shared-memory segments, unlinked on drop;
//! - [`channel`]: the supervisor's side of a generation's in-band control (progress,
//!   checkpoints, requests), whatever transport carries it;
//! - [`group`]: spawning, watching and killing the worker processes on this machine;
//! - [`launch`]: the seam between the loop and the placements — a process group over shared
//!   memory on this machine, or `mpirun` across the hosts of a [`hostfile`];
//! - [`supervisor`]: the one run loop — on any death or hang, end the generation everywhere,
//!   and start the next from the last checkpoint; one restart rule, one exit-code policy,
//!   one hang watchdog for every placement;
//! - [`metrics_tail`]: following a job's `metrics.jsonl` (gncd's progress and metrics, and
//!   the progress of a job across hosts, whose ranks have no control block to read);
//! - [`gncd`]: the daemon (queue, socket server, signals, sd_notify) around it.

pub mod channel;
mod descendants;
mod forward;
pub mod gncd;
pub mod group;
pub mod hostfile;
pub mod launch;
pub mod layout;
pub mod metrics_tail;
pub mod segments;
pub mod supervisor;
pub mod worker_bin;

pub use gnc_contract::interrupts::Interrupts;
pub use gnc_contract::observer::Observer;
pub use launch::{Failure, FailureCause};
pub use supervisor::{SupervisorError, SupervisorOptions, supervise, supervise_across_hosts};
