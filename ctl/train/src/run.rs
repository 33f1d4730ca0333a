//! `gncctl run job.toml`: trains a job in this process (or, with devices, in worker
//! processes under the embedded supervisor) and prints a summary.

use std::sync::Arc;

use anyhow::Context;
use gnc_contract::interrupts::Interrupts;
use gnc_ctl::progress::{eval_line, progress_bar};
use gnc_ctl::run_args::RunArgs;
use gnc_proto::{EvalRecord, IterRecord, JobSpec};
use gnc_worker::{Observer, RunOptions, RunSummary, train};
use indicatif::ProgressBar;

/// Progress bar on stderr, updated a few times a second.
struct Progress {
    bar: ProgressBar,
    last_eval: Option<EvalRecord>,
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
        match (s.complete, s.converged_at) {
            (true, Some(_)) =>
                " (converged: the training loss fell below the loss trigger's stop_below)",
            (true, None) => "",
            (false, _) => " (stopped early; continue with --resume)",
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
    gnc_worker::pin::pin_process_environment(spec.reproducibility).map_err(anyhow::Error::msg)?;
    let devices = args.devices.clone().or(spec.devices()?);
    if let Some(hostfile) = args.hosts.clone().or(spec.parallel.hosts.clone()) {
        anyhow::ensure!(
            args.threads.is_none(),
            "--threads does not apply across hosts (each process computes on one thread); \
             choose the processes per host with --devices cpu:N"
        );
        return crate::supervised::run_across_hosts(&spec, &args, &hostfile, devices.as_ref());
    }
    anyhow::ensure!(
        args.min_hosts.is_none(),
        "--min-hosts applies to jobs across hosts only (--hosts, or the spec's parallel.hosts)"
    );
    if let Some(devices) = devices {
        return crate::supervised::run(&spec, &args, devices);
    }
    // One job at a time in an output directory (the supervised placements lock it too).
    let out = args.out.clone().unwrap_or_else(|| spec.output_dir.clone());
    let _lock = gnc_contract::output_lock::OutputLock::acquire(&out, &spec.name)?;
    let interrupts = interrupts_from_signals()?;
    let options = RunOptions {
        output_dir: args.out,
        resume: args.resume,
        stop_after: args.stop_after,
        threads: args.threads,
        generation: 0,
        interrupts: Some(interrupts),
    };
    let mut progress = Progress::new(!args.json);
    let result = train(&spec, &options, &mut progress);
    progress.bar.finish_and_clear();
    report(result, &spec, args.json)
}

/// Requests from this process's signals, for every way `gncctl run` trains (in this process,
/// in worker processes, across hosts). Ctrl-C or SIGTERM: checkpoint at the next iteration
/// boundary and stop there (a pause: `--resume` continues with the same bits); a second one
/// ends the process at once. SIGUSR1: a checkpoint at the next boundary, and training goes on.
pub(crate) fn interrupts_from_signals() -> anyhow::Result<Arc<Interrupts>> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGUSR1])
        .context("cannot handle signals")?;
    let interrupts = Interrupts::new();
    let forwarded = interrupts.clone();
    std::thread::Builder::new()
        .name("gnc-run-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGUSR1 {
                    forwarded.request_checkpoint();
                } else if forwarded.stop_requested() {
                    std::process::exit(130);
                } else {
                    eprintln!(
                        "gncctl: stopping at the next iteration boundary with a checkpoint \
                         (continue with --resume; again to quit at once)"
                    );
                    forwarded.request_stop();
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(interrupts)
}
