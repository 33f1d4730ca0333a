//! `gncctl status [JOB]`: one job in detail, or without a job the daemon itself.

use std::path::Path;

use gnc_proto::socket::{Command, JobRef, Reply};

use super::format;
use crate::daemon;

#[derive(clap::Args)]
pub struct Args {
    /// The job: its id, or its name when unique; without it, the daemon.
    pub job: Option<JobRef>,
    /// Print gncd's reply as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, socket: &Path) -> anyhow::Result<()> {
    let reply = daemon::request(socket, Command::Status { job: args.job })?;
    if args.json {
        return daemon::print_json(&reply);
    }
    match &reply {
        Reply::Daemon { daemon } => println!("{}", format::daemon_detail(daemon)),
        Reply::Job { job } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            println!("{}", format::job_detail(job, now))
        }
        other => return Err(daemon::unexpected("status", other)),
    }
    Ok(())
}
