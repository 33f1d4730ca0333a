//! How jobs and the daemon are shown to people: one table row per job, or a detail block.

use gnc_proto::socket::{DaemonInfo, JobInfo};

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

/// Every field of a job, one per line; times relative to `now` (Unix seconds) too.
pub fn job_detail(job: &JobInfo, now: u64) -> String {
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
        format!("submitted at   {}", time(Some(job.submitted_at), now)),
        format!("started at     {}", time(job.started_at, now)),
        format!("finished at    {}", time(job.finished_at, now)),
        format!("outputs        {}", job.output_dir.display()),
        format!("spec hash      {}", job.spec_hash),
    ]);
    if let Some(hash) = &job.params_sha256 {
        lines.push(format!("params sha256  {hash}"));
    }
    lines.join("\n")
}

/// A time in Unix seconds as UTC in RFC 3339 and how long before `now` it was, or `-`.
pub fn time(t: Option<u64>, now: u64) -> String {
    let Some(t) = t else {
        return "-".into();
    };
    let utc = time::OffsetDateTime::from_unix_timestamp(t as i64)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{t} (Unix seconds)"));
    match now.checked_sub(t) {
        Some(ago) => format!("{utc} ({} ago)", duration(ago)),
        None => utc,
    }
}

/// Seconds as the two largest units: `42 s`, `5 min 3 s`, `2 h 7 min`, `3 d 4 h`.
pub fn duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

/// The daemon's state, one field per line.
pub fn daemon_detail(d: &DaemonInfo) -> String {
    [
        format!("gncd           {} (pid {})", d.version, d.pid),
        format!("uptime         {}", duration(d.uptime_seconds as u64)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_utc_and_relative_to_now() {
        let t = 1_796_041_200; // 2026-11-30T12:20:00Z
        assert_eq!(
            time(Some(t), t + 303),
            "2026-11-30T12:20:00Z (5 min 3 s ago)"
        );
        assert_eq!(time(Some(t), t), "2026-11-30T12:20:00Z (0 s ago)");
        assert_eq!(time(Some(t), t - 1), "2026-11-30T12:20:00Z");
        assert_eq!(time(None, t), "-");
        assert_eq!(duration(2 * 3600 + 7 * 60 + 9), "2 h 7 min");
        assert_eq!(duration(3 * 86_400 + 4 * 3600), "3 d 4 h");
    }
}
