//! Pinning what libtorch computes with, per reproducibility level (`gnc_proto::repro`): one
//! intra-op thread (no thread-count-dependent reductions), and at the portable level ATen's
//! vectorised kernels at AVX2 and oneDNN capped at AVX2. The libraries read their variables as
//! they load or first run, so the process's launcher sets them (`gncctl`, the supervisor;
//! `Level::apply`) and the process only checks them here — it never changes its own
//! environment. A process pins once, before any tensor exists, and keeps that level for its
//! life: [`level`] tells the kernels which one it is.

use std::sync::OnceLock;

use gnc_proto::repro::Level;

static PINNED: OnceLock<Level> = OnceLock::new();

/// Fixes this process at `level`: checks that it started with `level`'s environment, and sets
/// libtorch to one intra-op thread. Call before any tensor exists. A second call with the same
/// level does nothing; with another it fails, as the libraries have already read the first.
/// Fails on a CPU that cannot honour the level.
pub fn pin_process_environment(level: Level) -> Result<(), String> {
    pin_with_environment(level, level)
}

/// [`pin_process_environment`] with `level`'s kernels but the libraries pinned as
/// `environment` pins them (the process must start with that one's variables): for
/// benchmarks that compare what each part of a level costs.
pub fn pin_with_environment(level: Level, environment: Level) -> Result<(), String> {
    if level == Level::Portable || environment == Level::Portable {
        gnc_proto::repro::portable_supported()?;
    }
    if PINNED.get().is_none() {
        environment.check_environment()?;
    }
    let pinned = *PINNED.get_or_init(|| {
        tch::set_num_threads(1);
        // Not a pin of the bits: an iteration's allocations then reuse freed memory instead
        // of faulting fresh pages in (gnc_shm::heap).
        gnc_shm::heap::retain_freed_memory();
        level
    });
    if pinned != level {
        return Err(format!(
            "this process already computes at the {pinned} reproducibility level and cannot \
             switch to {level}; run the job in a process of its own"
        ));
    }
    Ok(())
}

/// The level this process pinned; portable if it has not pinned one (unit tests).
pub fn level() -> Level {
    PINNED.get().copied().unwrap_or_default()
}

/// The pinned variables and their values in this process, for `result.json`.
pub fn environment() -> Vec<(String, String)> {
    level()
        .environment()
        .iter()
        .map(|(k, _)| (k.to_string(), std::env::var(k).unwrap_or_default()))
        .collect()
}

/// This process's reproducibility key: its level, this machine, the libraries and gnc.
pub fn key() -> gnc_proto::repro::Key {
    let level = level();
    let cpu = gnc_proto::repro::Cpu::detect();
    let isa = match level {
        Level::Portable => "avx2".to_string(),
        Level::Native => cpu.isa.clone(),
    };
    gnc_proto::repro::Key {
        level,
        cpu,
        isa,
        libtorch: option_env!("GNC_LIBTORCH_VERSION")
            .unwrap_or("unknown")
            .into(),
        mkl: option_env!("GNC_MKL_VERSION").unwrap_or("unknown").into(),
        onednn: option_env!("GNC_ONEDNN_VERSION")
            .unwrap_or("unknown")
            .into(),
        gnc: env!("CARGO_PKG_VERSION").into(),
        gnc_commit: env!("GNC_COMMIT").into(),
        // The only kind of device a worker computes on so far (gnc_proto::Device).
        device: gnc_proto::Device::Cpu.to_string(),
    }
}
