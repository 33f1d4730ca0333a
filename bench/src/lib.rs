//! gnc's benchmarks (issue 2): the job they time, shared by the benchmark binaries.
//!
//! - `gnc-bench-step` times whole iterations of `gnc_worker::engine::Trainer`;
//!   `bench/run_step_bench.py` runs it next to `bench/pytorch_reference.py` and writes
//!   `bench/RESULTS.md`.
//! - `gnc-bench-reduce` times the shared-memory all-reduce against memcpy of the same bytes;
//!   `bench/run_shm_bench.py` runs it next to `bench/gloo_allreduce.py` and a 1- vs 2-process
//!   training run.
//! - `gnc-bench-gemm` times `gnc-kernels`' portable product on every ISA path beside libtorch's
//!   `matmul` and the FMA peak, on F1's linear products; `bench/run_gemm_bench.py` writes its
//!   section of `bench/RESULTS.md`.

use std::path::PathBuf;

use gnc_proto::{JobSpec, MethodSpec};

/// The method being timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    Gnc,
    Baseline,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Gnc => "gnc",
            Method::Baseline => "baseline",
        }
    }
}

/// `bench/f1-step.toml`: F1 (MLP, 7 hidden layers of 500) on Fashion-MNIST, momentum 0.9,
/// weight decay 1e-4, constant rate 0.1 without warmup, seed 1.
pub const F1_STEP_TOML: &str = include_str!("../f1-step.toml");

/// The benchmark job, `bench/f1-step.toml` with the data under `root`, M = `workers` logical
/// workers of small batch b = `small_batch` on one compute thread, and `method` (GNC with
/// noise coefficient `alpha`, or the baseline).
pub fn f1_spec(
    root: PathBuf,
    workers: usize,
    small_batch: usize,
    method: Method,
    alpha: f64,
) -> anyhow::Result<JobSpec> {
    let mut spec = JobSpec::from_toml(F1_STEP_TOML, "bench/f1-step.toml")?;
    spec.data.root = Some(root);
    spec.parallel.workers = workers;
    spec.parallel.small_batch = small_batch;
    spec.parallel.threads = Some(1);
    spec.method = match method {
        Method::Gnc => MethodSpec::Gnc { alpha },
        Method::Baseline => MethodSpec::Baseline,
    };
    // Validated by the caller, where the data files are (`JobSpec::validated`).
    Ok(spec)
}

/// CPU time this thread has run, in nanoseconds (Linux `/proc/thread-self/schedstat`), or
/// `None` where that is not available. Unlike wall time it leaves out time the thread waited
/// for a core, so it shows whether other processes on a shared machine skewed a measurement.
pub fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Minor page faults of this process so far (Linux `/proc/self/stat`), or `None`. Many per
/// iteration mean that the allocator hands memory back to the kernel and maps it again.
pub fn minor_faults() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces): state, ppid, pgrp, session,
    // tty_nr, tpgid, flags, minflt, ...
    let rest = &text[text.rfind(')')? + 1..];
    rest.split_whitespace().nth(7)?.parse().ok()
}

/// Median of `values` (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn the_spec_is_f1_with_the_flags_applied() {
        let spec = f1_spec("data/fashion-mnist".into(), 64, 32, Method::Gnc, 0.1).unwrap();
        assert_eq!(spec.large_batch(), 2048);
        assert_eq!(
            spec.model,
            gnc_proto::ModelSpec::Mlp {
                hidden: vec![500; 7],
                init: gnc_proto::WeightInit::He,
            }
        );
        assert_eq!(spec.parallel.threads, Some(1));
        assert_eq!(spec.method, MethodSpec::Gnc { alpha: 0.1 });
        let base = f1_spec("x".into(), 8, 4, Method::Baseline, 0.1).unwrap();
        assert_eq!(base.method, MethodSpec::Baseline);
        assert_eq!(base.large_batch(), 32);
    }
}
