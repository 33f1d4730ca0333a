//! What `pause`, `resume`, `cancel` and `checkpoint-now` share: a job reference, `--json`,
//! one command and a `job` reply.

use std::path::Path;

use gnc_proto::socket::{Command, JobRef, Reply};

use crate::daemon;

#[derive(clap::Args)]
pub struct JobArgs {
    /// The job: its id, or its name when unique.
    pub job: JobRef,
    /// Print gncd's reply as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Sends `command` and prints the job as it is once the daemon accepted it, after `done`.
pub fn run(
    socket: &Path,
    name: &str,
    command: Command,
    json: bool,
    done: &str,
) -> anyhow::Result<()> {
    let reply = daemon::request(socket, command)?;
    if json {
        return daemon::print_json(&reply);
    }
    match reply {
        Reply::Job { job } => {
            println!("job {} ({}): {done}; now {}", job.id, job.name, job.state);
            Ok(())
        }
        other => Err(daemon::unexpected(name, &other)),
    }
}
