//! `gncctl shutdown`: gncd checkpoints its running job and exits.

use std::path::Path;

use gnc_proto::socket::{Command, Reply};

use crate::daemon;

#[derive(clap::Args)]
pub struct Args {
    /// Print gncd's reply as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, socket: &Path) -> anyhow::Result<()> {
    let reply = daemon::request(socket, Command::Shutdown {})?;
    if args.json {
        return daemon::print_json(&reply);
    }
    match reply {
        Reply::ShuttingDown => {
            println!("gncd is shutting down (the running job checkpoints first)");
            Ok(())
        }
        other => Err(daemon::unexpected("shutdown", &other)),
    }
}
