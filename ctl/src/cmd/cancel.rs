//! `gncctl cancel JOB`.

use std::path::Path;

use gnc_proto::socket::Command;

pub use super::job_action::JobArgs as Args;

pub fn run(args: Args, socket: &Path) -> anyhow::Result<()> {
    super::job_action::run(
        socket,
        "cancel",
        Command::Cancel { job: args.job },
        args.json,
        "cancelled",
    )
}
