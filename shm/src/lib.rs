//! gnc data plane: shared-memory segments, the slot protocol and the fixed-tree reduction
//! (DESIGN.md §4.2 and §5).
//!
//! * [`naming`]: the one place segment names `/gnc-<job>-<generation>-<what>` are built.
//! * [`header`], [`segment`]: a mapped segment with a `#[repr(C)]` header published last and
//!   checked by every opener; the creator's handle unlinks it on drop.
//! * [`slots`]: per-slot (generation, iteration) stamps with Release/Acquire pairs, in-place
//!   writes, per-reader done words for reuse; no mutex.
//! * the canonical reduction tree and its layouts are `gnc_tree` (pure arithmetic, no unsafe).
//! * [`reduce`]: the sharded cross-process all-reduce built from the two.
//! * [`cleaner`]: removes segments whose creator died.
//! * [`control`]: a block of single-writer `u64` words (progress, checkpoint marks).
//! * [`file_map`]: a read-only mapping of a whole file (data sets read in place).
//! * [`heap`]: glibc malloc settings that keep freed memory for reuse (training processes).
//! * [`lifeline`]: a child process that dies with the thread that launched it.
//!
//! All unsafe code of the workspace lives in this crate, behind these safe types; each unsafe
//! block states why it is sound in a `// SAFETY:` comment (the workspace's lints forbid unsafe
//! code in every other crate and deny undocumented unsafe blocks: see the root Cargo.toml).

mod backoff;
pub mod cleaner;
pub mod control;
pub mod file_map;
pub mod geometry;
pub mod header;
pub mod heap;
pub mod lifeline;
mod mapping;
pub mod naming;
pub mod reduce;
pub mod segment;
pub mod slots;
pub mod stamp;

pub use control::ControlBlock;
pub use file_map::MappedFile;
pub use geometry::Geometry;
pub use header::SegmentSpec;
pub use naming::{SegmentName, job_id, parse_segment_name, segment_name};
pub use reduce::{ReductionGeometry, ShardedReducer, shard_range};
pub use segment::{Segment, SegmentError};
pub use slots::{Producer, Reader, SlotArray, SlotError, SlotWrite};
pub use stamp::Stamp;
