//! `gncctl metrics JOB`: the job's metric records as JSON lines, as in its `metrics.jsonl`.

use std::path::Path;

use gnc_proto::socket::{Command, JobRef, Reply};

use crate::daemon;

#[derive(clap::Args)]
pub struct Args {
    /// The job: its id, or its name when unique.
    pub job: JobRef,
    /// Skip the first N records.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub from: usize,
    /// Print gncd's whole reply as one JSON object instead of one record per line.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, socket: &Path) -> anyhow::Result<()> {
    let reply = daemon::request(
        socket,
        Command::Metrics {
            job: args.job,
            from: args.from,
        },
    )?;
    if args.json {
        return daemon::print_json(&reply);
    }
    let Reply::Metrics { records } = reply else {
        return Err(daemon::unexpected("metrics", &reply));
    };
    for record in &records {
        println!("{}", serde_json::to_string(record)?);
    }
    Ok(())
}
