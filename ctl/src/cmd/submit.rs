//! `gncctl submit job.toml`: checks the spec here, so mistakes show before queueing, and
//! queues it on gncd.

use std::path::{Path, PathBuf};

use anyhow::Context;
use gnc_proto::socket::{Command, Reply};
use gnc_proto::{Devices, JobSpec};

use crate::daemon;

#[derive(clap::Args)]
pub struct Args {
    /// The job spec (TOML).
    pub spec: PathBuf,
    /// Worker processes for the job, e.g. `cpu:4` (speed only, never results); else the
    /// spec's `parallel.devices`, else the daemon's.
    #[arg(long)]
    pub devices: Option<Devices>,
    /// Then follow the job as `gncctl watch` does.
    #[arg(long)]
    pub watch: bool,
    /// Print gncd's reply as JSON on stdout (with --watch: every reply, one per line).
    #[arg(long)]
    pub json: bool,
}

/// The spec with `data.root` and `model.path` made absolute against the working directory: the
/// daemon runs elsewhere.
pub fn absolute_spec(path: &Path) -> anyhow::Result<JobSpec> {
    let mut spec = JobSpec::load(path)?.into_inner();
    if let Some(root) = &spec.data.root {
        let absolute = std::path::absolute(root)
            .with_context(|| format!("cannot make data.root {} absolute", root.display()))?;
        spec.data.root = Some(absolute);
    }
    if let gnc_proto::ModelSpec::Onnx { path, .. } = &mut spec.model {
        *path = std::path::absolute(&*path)
            .with_context(|| format!("cannot make model.path {} absolute", path.display()))?;
    }
    Ok(spec)
}

pub fn run(args: Args, socket: &Path) -> anyhow::Result<()> {
    let spec = absolute_spec(&args.spec)?;
    let reply = daemon::request(
        socket,
        Command::Submit {
            spec: Box::new(spec),
            devices: args.devices.map(|d| d.to_string()),
        },
    )?;
    let Reply::Job { job } = &reply else {
        return Err(daemon::unexpected("submit", &reply));
    };
    let id = job.id;
    if args.json {
        daemon::print_json(&reply)?;
    } else {
        println!(
            "submitted job {} ({}): {} on {}, outputs in {}",
            job.id,
            job.name,
            job.state,
            job.devices,
            job.output_dir.display()
        );
    }
    if args.watch {
        super::watch::follow(socket, &id.to_string(), args.json)?;
    }
    Ok(())
}
