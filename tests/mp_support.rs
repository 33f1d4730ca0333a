//! Helpers shared by the multi-process tests (multiprocess.rs, restart.rs): small jobs with
//! M = 16 logical workers, runs of the real `gncctl` with worker processes, and checks that
//! no shared-memory segment outlives a run.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

/// The tests of one binary run one at a time: each already runs up to 8 processes on a small
/// machine, and a run's cleaner must not race another test's deliberately stale segments.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A teacher–student MLP job with `workers` logical workers of 4 examples, 3 epochs of
/// 512 / (4 M) iterations, checkpoints every 4 iterations; `parallel` adds keys to
/// `[parallel]`.
pub fn job(name: &str, method: &str, workers: usize, parallel: &str) -> String {
    gnc_tests::teacher_student_job(&gnc_tests::TinyJob {
        name,
        method,
        seed: 11,
        train_examples: 512,
        test_examples: 128,
        workers,
        small_batch: 4,
        parallel,
    })
}

/// `gncctl run <spec> --json --out <out> <extra>` with extra environment variables.
pub fn run(spec: &Path, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    gncctl_command(spec, out, extra, env)
        .output()
        .expect("gncctl runs")
}

pub fn gncctl_command(spec: &Path, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = gnc_tests::gncctl();
    command
        .args(["run", spec.to_str().unwrap(), "--json", "--out"])
        .arg(out)
        .args(extra)
        .envs(env.iter().copied());
    command
}

/// The summary of a run that must have succeeded.
pub fn summary(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "gncctl failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("--json prints the summary")
}

pub use gnc_tests::hash;

/// Every line of metrics.jsonl but the final record (whose train_seconds is wall time):
/// the per-iteration records (loss sequence…, without their wall times) and the evaluations.
pub fn records(out: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.contains("\"kind\":\"final\""))
        .map(gnc_tests::without_seconds)
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("\"kind\":\"iter\"")),
        "{text}"
    );
    lines
}

/// Files in /dev/shm belonging to job `name` (any output directory, any generation).
pub fn segments_of(name: &str) -> Vec<String> {
    let prefix = format!("gnc-{name}_");
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

pub fn assert_no_segments(name: &str) {
    let left = segments_of(name);
    assert!(left.is_empty(), "segments left behind: {left:?}");
}

/// The in-process run of `spec` (the reference every layout must reproduce).
pub fn reference(dir: &Path, spec: &Path) -> (String, Vec<String>) {
    let out = dir.join("in-process");
    let s = summary(&run(spec, &out, &[], &[]));
    (hash(&s), records(&out))
}
