//! The subcommands that talk to gncd, one file each, and the offline ones (`plot`, `verify`,
//! `analyze`, `doctor`, `completions`, `man`).

pub mod analyze;
pub mod cancel;
pub mod checkpoint_now;
pub mod completions;
pub mod doctor;
pub mod format;
pub mod job_action;
pub mod list;
pub mod logs;
pub mod man;
pub mod metrics;
pub mod pause;
pub mod plot;
pub mod resume;
pub mod shutdown;
pub mod status;
pub mod submit;
pub mod verify;
pub mod watch;
