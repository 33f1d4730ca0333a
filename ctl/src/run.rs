//! `gncctl run job.toml`: trains a job in this process and prints a summary.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use gnc_proto::{EvalRecord, IterRecord, JobSpec};
use gnc_worker::{train, Observer, RunOptions, RunSummary};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(clap::Args)]
pub struct RunArgs {
    /// The job spec (TOML).
    pub spec: PathBuf,
    /// Continue from the newest checkpoint in the output directory.
    #[arg(long)]
    pub resume: bool,
    /// Write outputs here instead of the spec's output_dir.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Stop, with a checkpoint, after this many iterations (resume later with --resume).
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Compute threads (changes speed, never results).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the summary as JSON on stdout, and no progress bar.
    #[arg(long)]
    pub json: bool,
    /// Train in worker processes over shared memory, e.g. `cpu:4` (same bits as in-process);
    /// overrides the spec's `parallel.devices`.
    #[arg(long)]
    pub devices: Option<gnc_proto::Devices>,
    /// With worker processes: restart the group when it makes no progress for this many
    /// seconds (start-up, evaluation and checkpoints included).
    #[arg(long, default_value_t = 300.0)]
    pub hang_timeout: f64,
    /// With worker processes: how many group restarts to allow before giving up.
    #[arg(long, default_value_t = 3)]
    pub max_restarts: u32,
}

/// Progress bar on stderr, updated a few times a second.
struct Progress {
    bar: ProgressBar,
    last_eval: Option<EvalRecord>,
}

/// A progress bar on stderr, updated a few times a second; hidden when `visible` is false
/// (under --json). Shared by the in-process and the supervised run.
pub(crate) fn progress_bar(visible: bool) -> ProgressBar {
    let target = if visible {
        ProgressDrawTarget::stderr_with_hz(4)
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(None, target);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} it ({per_sec}, eta {eta}) {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// One evaluation as a line of progress output (shared with `gncctl watch`).
pub(crate) fn eval_line(e: &EvalRecord) -> String {
    format!(
        "epoch {:>6.2}  train loss {:.4} acc {:.2}%  test loss {:.4} acc {:.2}%",
        e.epoch,
        e.train_loss,
        100.0 * e.train_accuracy,
        e.test_loss,
        100.0 * e.test_accuracy
    )
}

impl Progress {
    fn new(visible: bool) -> Progress {
        Progress {
            bar: progress_bar(visible),
            last_eval: None,
        }
    }
}

impl Observer for Progress {
    fn started(&mut self, start: u64, total: u64, threads: usize) {
        self.bar.set_length(total);
        self.bar.set_position(start);
        self.bar.reset_eta();
        self.bar.println(format!(
            "training {total} iterations on {threads} thread(s), from iteration {start}"
        ));
    }

    fn iteration(&mut self, r: &IterRecord) {
        self.bar.set_position(r.iter + 1);
        let acc = self
            .last_eval
            .as_ref()
            .map(|e| format!(" test acc {:.2}%", 100.0 * e.test_accuracy))
            .unwrap_or_default();
        self.bar.set_message(format!(
            "epoch {:.2} loss {:.4} lr {:.4}{acc}",
            r.epoch, r.loss, r.lr
        ));
    }

    fn evaluated(&mut self, e: &EvalRecord) {
        self.bar.println(eval_line(e));
        self.last_eval = Some(e.clone());
    }

    fn warning(&mut self, message: &str) {
        // Always shown, also under --json where the bar is hidden.
        self.bar.suspend(|| eprintln!("warning: {message}"));
    }
}

/// The end of `gncctl run`: the summary as JSON on stdout, or as a one-screen table.
pub(crate) fn report(
    result: Result<RunSummary, impl Into<anyhow::Error>>,
    spec: &JobSpec,
    json: bool,
) -> anyhow::Result<()> {
    let summary = result
        .map_err(Into::into)
        .with_context(|| format!("job {} failed", spec.name))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(())
}

fn print_summary(s: &RunSummary) {
    let pct = |v: Option<f64>| v.map_or("-".into(), |a| format!("{:.2}%", 100.0 * a));
    println!();
    println!("job            {} ({})", s.job, s.method);
    println!(
        "iterations     {}/{}{}",
        s.iterations,
        s.total_iterations,
        if s.complete {
            ""
        } else {
            " (stopped early; continue with --resume)"
        }
    );
    println!("test accuracy  {}", pct(s.test_accuracy));
    println!(
        "train time     {:.1} s on {} thread(s)",
        s.train_seconds, s.threads
    );
    println!("outputs        {}", s.output_dir.display());
    println!("params sha256  {}", s.params_sha256);
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let spec = JobSpec::load(&args.spec)?;
    if let Some(devices) = args.devices.or(spec.devices()?) {
        return crate::supervised::run(&spec, &args, devices);
    }
    let options = RunOptions {
        output_dir: args.out,
        resume: args.resume,
        stop_after: args.stop_after,
        threads: args.threads,
        generation: 0,
    };
    let mut progress = Progress::new(!args.json);
    let result = train(&spec, &options, &mut progress);
    progress.bar.finish_and_clear();
    report(result, &spec, args.json)
}
