//! `gncctl logs JOB [--tail N]`: the job's log (worker output and supervisor notices).

use std::path::Path;

use gnc_proto::socket::{Command, JobRef, Reply};

use crate::daemon;

#[derive(clap::Args)]
pub struct Args {
    /// The job: its id, or its name when unique.
    pub job: JobRef,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Print gncd's reply as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, socket: &Path) -> anyhow::Result<()> {
    let reply = daemon::request(
        socket,
        Command::Logs {
            job: args.job,
            tail: args.tail,
        },
    )?;
    if args.json {
        return daemon::print_json(&reply);
    }
    let Reply::Logs { lines } = reply else {
        return Err(daemon::unexpected("logs", &reply));
    };
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
