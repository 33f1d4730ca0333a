//! `gncctl pause JOB`.

use std::path::Path;

use gnc_proto::socket::Command;

pub use super::job_action::JobArgs as Args;

pub fn run(args: Args, socket: &Path) -> anyhow::Result<()> {
    super::job_action::run(
        socket,
        "pause",
        Command::Pause { job: args.job },
        args.json,
        "pause requested (checkpoint at the next iteration boundary, then stop)",
    )
}
