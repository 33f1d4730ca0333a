//! `gncctl checkpoint-now JOB`.

use std::path::Path;

use gnc_proto::socket::Command;

pub use super::job_action::JobArgs as Args;

pub fn run(args: Args, socket: &Path) -> anyhow::Result<()> {
    super::job_action::run(
        socket,
        "checkpoint-now",
        Command::CheckpointNow { job: args.job },
        args.json,
        "checkpoint requested at the next iteration boundary",
    )
}
