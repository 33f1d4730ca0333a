//! `gncctl watch JOB`: follows a job with a progress bar and its evaluations until it stops;
//! exits non-zero when it ends failed or cancelled.

use std::path::Path;

use gnc_proto::MetricRecord;
use gnc_proto::socket::{Command, JobInfo, JobRef, JobState, Reply};

use crate::daemon;
use crate::exit::Negative;
use crate::progress::{eval_line, progress_bar};

#[derive(clap::Args)]
pub struct Args {
    /// The job: its id, or its name when unique.
    pub job: JobRef,
    /// Print every reply of the stream as one JSON line on stdout, and no progress bar.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, socket: &Path) -> anyhow::Result<()> {
    follow(socket, &args.job, args.json)
}

/// Streams the job's progress until gncd ends the stream, then judges how the job ended.
pub fn follow(socket: &Path, job: &str, json: bool) -> anyhow::Result<()> {
    let mut client = daemon::connect(socket)?;
    client.send(Command::Watch {
        job: job.to_string(),
        from: 0,
    })?;
    let bar = progress_bar(!json);
    let mut last: Option<JobInfo> = None;
    while let Some(reply) = client.next_reply()? {
        if json {
            daemon::print_json(&reply)?;
        }
        let Reply::Progress { job, records } = reply else {
            bar.finish_and_clear();
            return Err(daemon::unexpected("watch", &reply));
        };
        bar.set_length(job.total_iterations);
        bar.set_position(job.iteration);
        for record in &records {
            match record {
                MetricRecord::Iter(r) => bar.set_message(format!(
                    "epoch {:.2} loss {:.4} lr {:.4}",
                    r.epoch, r.loss, r.lr
                )),
                MetricRecord::Eval(e) if !json => bar.println(eval_line(e)),
                _ => {}
            }
        }
        last = Some(job);
    }
    bar.finish_and_clear();
    let job = last.ok_or_else(|| anyhow::anyhow!("gncd ended the watch stream without a reply"))?;
    ending(&job, json)
}

/// Success for a job that is done or paused; a [`Negative`] answer for one that failed or was
/// cancelled; an error when the stream stopped while the job still runs.
fn ending(job: &JobInfo, json: bool) -> anyhow::Result<()> {
    let reason = job
        .reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    let what = format!("job {} ({}) is {}{reason}", job.id, job.name, job.state);
    match job.state {
        JobState::Done | JobState::Paused => {
            if !json {
                println!("{what}");
                if let Some(hash) = &job.params_sha256 {
                    println!("params sha256  {hash}");
                }
            }
            Ok(())
        }
        JobState::Failed | JobState::Cancelled => Err(Negative(what).into()),
        JobState::Queued | JobState::Running => Err(anyhow::anyhow!(
            "gncd ended the watch stream while {what}; watch again to follow it"
        )),
    }
}
