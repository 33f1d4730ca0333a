//! Pinning what libtorch computes with, so that a logical worker's arithmetic is the same in
//! every process and on every x86-64 machine with AVX2 (DESIGN.md §4.3):
//! one intra-op thread (no thread-count-dependent reductions), ATen's vectorised kernels at the
//! AVX2 level, oneDNN limited to AVX2, and MKL's conditional numerical reproducibility at AVX2.
//! These are read when the libraries first run, so they must be set before any tensor work.

/// The variables set, and their values. Also written into each run's `result.json`.
pub const PINNED_ENVIRONMENT: &[(&str, &str)] = &[
    ("OMP_NUM_THREADS", "1"),
    ("MKL_NUM_THREADS", "1"),
    ("ATEN_CPU_CAPABILITY", "avx2"),
    ("ONEDNN_MAX_CPU_ISA", "AVX2"),
    ("MKL_CBWR", "AVX2,STRICT"),
];

/// Sets the pinned environment of this process. Call first thing in `main`, before any thread
/// starts and before any tensor exists. Fails on a CPU without AVX2, which could not honour it.
pub fn pin_process_environment() -> Result<(), String> {
    #[cfg(target_arch = "x86_64")]
    if !std::arch::is_x86_feature_detected!("avx2") {
        return Err("this CPU has no AVX2; gnc pins its CPU kernels at the AVX2 level".into());
    }
    for (key, value) in PINNED_ENVIRONMENT {
        std::env::set_var(key, value);
    }
    tch::set_num_threads(1);
    Ok(())
}
