//! `gncctl list`: every job, oldest first, as a table.

use std::path::Path;

use gnc_proto::socket::{Command, Reply};

use super::format;
use crate::daemon;

#[derive(clap::Args)]
pub struct Args {
    /// Print gncd's reply as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, socket: &Path) -> anyhow::Result<()> {
    let reply = daemon::request(socket, Command::List {})?;
    if args.json {
        return daemon::print_json(&reply);
    }
    let Reply::Jobs { jobs } = reply else {
        return Err(daemon::unexpected("list", &reply));
    };
    if jobs.is_empty() {
        println!("no jobs");
        return Ok(());
    }
    println!("{}", format::table_header());
    for job in &jobs {
        println!("{}", format::table_row(job));
    }
    Ok(())
}
