//! Reading a run's output directory (of `gncctl run`, or a gncd job): `metrics.jsonl`.

use std::path::Path;

use anyhow::Context;
use gnc_proto::MetricRecord;

/// The records of `<dir>/metrics.jsonl`, in order; errors name the file and line.
pub fn read_metrics(dir: &Path) -> anyhow::Result<Vec<MetricRecord>> {
    let path = dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (is {} a run's output directory?)",
            path.display(),
            dir.display()
        )
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).with_context(|| {
                format!("{} line {} is not a metric record", path.display(), i + 1)
            })
        })
        .collect()
}
