//! Times single gnc training iterations (issue 2): F1 (MLP, 7 hidden layers of 500) on
//! Fashion-MNIST, M logical workers of small batch b, ONE compute thread, method GNC or
//! baseline. `bench/run_step_bench.py` runs it next to `bench/pytorch_reference.py`, which
//! implements the same step in PyTorch, and reports the ratio.
//!
//! Prints one JSON line:
//! `{"impl":"gnc","method":..,"workers":..,"iters":N,"median_ms":..,"mean_ms":..,"min_ms":..,...}`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use gnc_bench::{Method, f1_spec, median, minor_faults, thread_cpu_ns};
use gnc_contract::plan::iterations_per_epoch;
use gnc_proto::ValidSpec;
use gnc_proto::repro::Level;
use gnc_worker::data::order::EpochOrder;
use gnc_worker::engine::Trainer;
use gnc_worker::rng::Purpose;
use gnc_worker::state::TrainState;

/// Times one gnc iteration (F1 MLP on Fashion-MNIST, one thread).
#[derive(Debug, Parser)]
#[command(name = "gnc-bench-step")]
struct Args {
    /// Directory with the Fashion-MNIST IDX files (raw or .gz).
    #[arg(long, default_value = "data/fashion-mnist")]
    root: PathBuf,
    /// M: logical workers.
    #[arg(long, default_value_t = 64)]
    workers: usize,
    /// b: small batch of each logical worker.
    #[arg(long, default_value_t = 32)]
    small_batch: usize,
    #[arg(long, value_enum, default_value_t = Method::Gnc)]
    method: Method,
    /// α, GNC's noise coefficient.
    #[arg(long, default_value_t = 0.1)]
    alpha: f64,
    /// Untimed iterations first (at least 2, so that GNC's noise path is what is timed).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed iterations.
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Also write the initial parameters (`param_<k>.npy`) and epoch 0's data order
    /// (`order.npy`) here, so that `pytorch_reference.py --load-init` can start from the same
    /// point (the equivalence check of `run_step_bench.py`).
    #[arg(long)]
    dump_init: Option<PathBuf>,
    /// Which kernels and pinned environment: `portable` and `native` are the reproducibility
    /// levels; `avx2-libtorch` is libtorch's kernels under the portable level's AVX2 pins
    /// (what every run computed with before the levels existed).
    #[arg(long, value_enum, default_value_t = Kernels::Portable)]
    kernels: Kernels,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Kernels {
    Portable,
    Native,
    Avx2Libtorch,
}

/// Writes the initial parameters and epoch 0's data order of `spec` under `dir`.
fn dump_init(spec: &ValidSpec, state: &TrainState, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (k, p) in state.params.iter().enumerate() {
        p.write_npy(dir.join(format!("param_{k}.npy")))?;
    }
    let data = gnc_worker::data::load(&spec.data, spec.seed)?;
    let (n, m, b) = (
        data.train.len(),
        spec.parallel.workers,
        spec.parallel.small_batch,
    );
    let order = EpochOrder::new(spec.seed, Purpose::DataOrder, 0, n, m, b);
    let mut indices = Vec::new();
    for k in 0..iterations_per_epoch(n, m, b) {
        for w in 0..m {
            indices.extend(order.worker_batch(k, w).iter().map(|&i| i64::from(i)));
        }
    }
    tch::Tensor::from_slice(&indices).write_npy(dir.join("order.npy"))?;
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let (level, environment) = match args.kernels {
        Kernels::Portable => (Level::Portable, Level::Portable),
        Kernels::Native => (Level::Native, Level::Native),
        Kernels::Avx2Libtorch => (Level::Native, Level::Portable),
    };
    gnc_worker::pin::pin_with_environment(level, environment)
        .map_err(anyhow::Error::msg)
        .context("pinning the CPU environment")?;
    if args.warmup < 2 {
        bail!("--warmup must be at least 2 (GNC's noise path needs previous gradients)");
    }
    if args.iters == 0 {
        bail!("--iters must be at least 1");
    }
    let spec = f1_spec(
        args.root.clone(),
        args.workers,
        args.small_batch,
        args.method,
        args.alpha,
    )?
    .validated()?;
    let mut trainer = Trainer::new(&spec, 1).context("building the trainer")?;
    let mut state = trainer.fresh_state();
    if let Some(dir) = &args.dump_init {
        dump_init(&spec, &state, dir)?;
    }
    let mut losses = Vec::with_capacity(args.warmup + args.iters);
    for _ in 0..args.warmup {
        losses.push(trainer.step(&mut state)?.loss);
    }
    let mut times_ms = Vec::with_capacity(args.iters);
    let mut cpu_ms = Vec::with_capacity(args.iters);
    let faults_before = minor_faults();
    for _ in 0..args.iters {
        let cpu = thread_cpu_ns();
        let start = Instant::now();
        let record = trainer.step(&mut state)?;
        times_ms.push(start.elapsed().as_secs_f64() * 1e3);
        if let (Some(a), Some(b)) = (cpu, thread_cpu_ns()) {
            cpu_ms.push(b.saturating_sub(a) as f64 / 1e6);
        }
        losses.push(record.loss);
    }
    let faults_per_iter = faults_before
        .zip(minor_faults())
        .map(|(a, b)| b.saturating_sub(a) as f64 / args.iters as f64);
    let line = serde_json::json!({
        "impl": "gnc",
        "method": args.method.name(),
        "workers": args.workers,
        "small_batch": args.small_batch,
        "warmup": args.warmup,
        "iters": times_ms.len(),
        "median_ms": median(&times_ms),
        "mean_ms": times_ms.iter().sum::<f64>() / times_ms.len() as f64,
        "min_ms": times_ms.iter().copied().fold(f64::INFINITY, f64::min),
        "max_ms": times_ms.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        "times_ms": times_ms,
        "cpu_median_ms": median(&cpu_ms),
        "cpu_ms": cpu_ms,
        "minor_faults_per_iter": faults_per_iter,
        "losses": losses,
        "torch_threads": tch::get_num_threads(),
        "compute_threads": trainer.threads(),
    });
    println!("{line}");
    Ok(())
}
