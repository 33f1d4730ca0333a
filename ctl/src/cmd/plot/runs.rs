//! A run to plot: its metric records (from `metrics.jsonl` in its directory) and its name
//! (from `result.json`, else `spec.json`, else the directory's name).

use std::path::{Path, PathBuf};

use gnc_proto::{AnalysisLine, DiagnosticsRecord, EvalRecord, IterRecord, MetricRecord};

use crate::run_dir::read_metrics;

/// One run's records.
pub struct Run {
    pub label: String,
    pub dir: PathBuf,
    pub iters: Vec<IterRecord>,
    pub evals: Vec<EvalRecord>,
    pub diagnostics: Vec<DiagnosticsRecord>,
    /// (α, loss) on the line towards another run's end point, from the run's
    /// `analysis.json` (`gncctl analyze --towards`), if it has one.
    pub line: Vec<(f64, f64)>,
}

/// The line points of `dir/analysis.json`, if it holds any (a NaN loss is no point).
fn analysed_line(dir: &Path) -> Vec<(f64, f64)> {
    /// The part of `analysis.json` the plot reads.
    #[derive(serde::Deserialize)]
    struct Analysis {
        line: Option<AnalysisLine>,
    }
    std::fs::read_to_string(dir.join("analysis.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Analysis>(&text).ok())
        .and_then(|analysis| analysis.line)
        .map(|line| {
            line.points
                .iter()
                .filter(|p| !p.loss.is_nan())
                .map(|p| (p.alpha, p.loss))
                .collect()
        })
        .unwrap_or_default()
}

/// The name a run directory records for its job, if any.
fn recorded_name(dir: &Path) -> Option<String> {
    [("result.json", "job"), ("spec.json", "name")]
        .iter()
        .find_map(|(file, key)| {
            let text = std::fs::read_to_string(dir.join(file)).ok()?;
            let value: serde_json::Value = serde_json::from_str(&text).ok()?;
            value.get(key)?.as_str().map(str::to_string)
        })
}

fn dir_name(dir: &Path) -> String {
    std::path::absolute(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string())
}

/// Reads every run; two runs of the same job name are told apart by their directories.
pub fn load(dirs: &[PathBuf]) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let mut iters = Vec::new();
        let mut evals = Vec::new();
        let mut diagnostics = Vec::new();
        for record in read_metrics(dir)? {
            match record {
                MetricRecord::Iter(r) => iters.push(r),
                MetricRecord::Eval(e) => evals.push(e),
                MetricRecord::Diagnostics(d) => diagnostics.push(*d),
                MetricRecord::Final(_) => {}
            }
        }
        runs.push(Run {
            label: recorded_name(dir).unwrap_or_else(|| dir_name(dir)),
            dir: dir.clone(),
            iters,
            evals,
            diagnostics,
            line: analysed_line(dir),
        });
    }
    let labels: Vec<String> = runs.iter().map(|r| r.label.clone()).collect();
    for run in &mut runs {
        if labels.iter().filter(|l| **l == run.label).count() > 1 {
            run.label = format!("{} ({})", run.label, run.dir.display());
        }
    }
    Ok(runs)
}
