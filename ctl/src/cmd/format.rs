//! How jobs and the daemon are shown to people: one table row per job, or a detail block.

use gnc_proto::control::{DaemonInfo, JobInfo};

/// The header of the job table.
pub fn table_header() -> String {
    format!(
        "{:>4}  {:<20} {:<9} {:>13} {:>8} {:<7} {:>8}",
        "ID", "NAME", "STATE", "ITERATIONS", "TEST ACC", "DEVICES", "RESTARTS"
    )
}

/// One job as a table row.
pub fn table_row(job: &JobInfo) -> String {
    format!(
        "{:>4}  {:<20} {:<9} {:>13} {:>8} {:<7} {:>8}",
        job.id,
        job.name,
        job.state.as_str(),
        format!("{}/{}", job.iteration, job.total_iterations),
        percent(job.test_accuracy),
        job.devices,
        job.restarts
    )
}

/// A percentage with two decimals, or `-`.
pub fn percent(v: Option<f64>) -> String {
    v.map_or("-".into(), |a| format!("{:.2}%", 100.0 * a))
}

/// Every field of a job, one per line.
pub fn job_detail(job: &JobInfo) -> String {
    let mut lines = vec![
        format!("job            {} ({})", job.id, job.name),
        format!("state          {}", job.state),
    ];
    if let Some(reason) = &job.reason {
        lines.push(format!("reason         {reason}"));
    }
    lines.extend([
        format!("iterations     {}/{}", job.iteration, job.total_iterations),
        format!("test accuracy  {}", percent(job.test_accuracy)),
        format!("devices        {}", job.devices),
        format!("restarts       {}", job.restarts),
        format!("owner uid      {}", job.owner_uid),
        format!("submitted at   {}", job.submitted_at),
        format!("started at     {}", time(job.started_at)),
        format!("finished at    {}", time(job.finished_at)),
        format!("outputs        {}", job.output_dir.display()),
        format!("spec hash      {}", job.spec_hash),
    ]);
    if let Some(hash) = &job.params_sha256 {
        lines.push(format!("params sha256  {hash}"));
    }
    lines.join("\n")
}

fn time(t: Option<u64>) -> String {
    t.map_or("-".into(), |t| t.to_string())
}

/// The daemon's state, one field per line.
pub fn daemon_detail(d: &DaemonInfo) -> String {
    [
        format!("gncd           {} (pid {})", d.version, d.pid),
        format!("uptime         {:.0} s", d.uptime_seconds),
        format!("devices        {}", d.devices),
        format!("state dir      {}", d.state_dir.display()),
        format!(
            "running        {}",
            d.running.map_or("-".into(), |id| format!("job {id}"))
        ),
        format!("queued         {}", d.queued),
        format!("jobs           {}", d.jobs),
    ]
    .join("\n")
}
