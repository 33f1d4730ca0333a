//! gnc across hosts over MPI (DESIGN.md §5): each host owns an aligned block of logical workers
//! (a subtree of the reduction tree) and contributes that block's sum. MPI moves bytes and
//! never adds: an all-to-all hands every rank one shard of every block sum, the rank combines
//! them in the tree's order (`gnc_tree::combine_blocks`, the code the shared-memory
//! reduction uses), and an all-gather hands every rank every reduced shard. The total has the
//! bits of the one-host sum for any number of hosts.

pub mod reduce;

pub use reduce::{MpiReducer, ReduceError};
