//! `gncctl run --devices cpu:N`: the embedded supervisor (gnc-daemon) runs the job in N
//! `gnc-worker` processes over shared memory, restarting the group on failure.

use std::time::Duration;

use std::path::Path;

use gnc_daemon::{Observer, SupervisorOptions, supervise, supervise_across_hosts};
use gnc_proto::{Devices, ValidSpec};
use indicatif::ProgressBar;

use gnc_ctl::progress::progress_bar;
use gnc_ctl::run_args::RunArgs;

/// Progress bar and notices on stderr.
struct Report {
    bar: ProgressBar,
}

impl Report {
    fn say(&self, message: String) {
        // Shown also under --json, where the bar is hidden.
        self.bar.suspend(|| eprintln!("{message}"));
    }
}

impl Observer for Report {
    fn stale_segment_removed(&mut self, name: &str, why: &str) {
        self.say(format!("removed stale segment /dev/shm/{name}: {why}"));
    }

    fn spawned(&mut self, generation: u64, pids: &[u32]) {
        self.bar.println(format!(
            "{} worker processes (generation {generation}, pids {pids:?})",
            pids.len()
        ));
    }

    fn started(&mut self, from: u64, total: u64, _parallelism: usize) {
        self.bar.set_length(total);
        self.bar.set_position(from);
        self.bar.reset_eta();
        self.bar.println(format!(
            "training {total} iterations, from iteration {from}"
        ));
    }

    fn progress(&mut self, completed: u64) {
        self.bar.set_position(completed);
    }

    fn restarting(&mut self, failure: &dyn std::fmt::Display, restart: u32, max: u32) {
        self.say(format!(
            "warning: {failure}; restarting every worker from the last checkpoint (restart {restart} of {max})"
        ));
    }

    fn warning(&mut self, message: &str) {
        self.say(format!("warning: {message}"));
    }
}

/// The options every supervised placement takes from `gncctl run`'s arguments.
fn options(args: &RunArgs, devices: Devices) -> anyhow::Result<SupervisorOptions> {
    anyhow::ensure!(
        args.hang_timeout.is_finite() && args.hang_timeout > 0.0,
        "--hang-timeout must be a positive number of seconds"
    );
    Ok(SupervisorOptions {
        output_dir: args.out.clone(),
        resume: args.resume,
        stop_after: args.stop_after,
        hang_timeout: Duration::from_secs_f64(args.hang_timeout),
        max_restarts: args.max_restarts,
        interrupts: Some(crate::run::interrupts_from_signals()?),
        ..SupervisorOptions::new(devices)
    })
}

/// `gncctl run --hosts HOSTFILE [--devices cpu:N]`: the job across hosts through `mpirun`.
pub fn run_across_hosts(
    spec: &ValidSpec,
    args: &RunArgs,
    hostfile: &Path,
    devices: Option<&Devices>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.join_timeout.is_finite() && args.join_timeout > 0.0,
        "--join-timeout must be a positive number of seconds"
    );
    let options = SupervisorOptions {
        join_timeout: Duration::from_secs_f64(args.join_timeout),
        min_hosts: args.min_hosts.map(|n| n as usize),
        ..options(args, Devices::Cpu(1))?
    };
    let mut report = Report {
        bar: progress_bar(!args.json),
    };
    let result = supervise_across_hosts(spec, hostfile, devices, &options, &mut report);
    report.bar.finish_and_clear();
    crate::run::report(result.map_err(anyhow::Error::from), spec, args.json)
}

pub fn run(spec: &ValidSpec, args: &RunArgs, devices: Devices) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.threads.is_none(),
        "--threads does not apply with worker processes (each computes on one thread); \
         choose the process count with --devices"
    );
    let options = options(args, devices)?;
    let mut report = Report {
        bar: progress_bar(!args.json),
    };
    let result = supervise(spec, &options, &mut report);
    report.bar.finish_and_clear();
    crate::run::report(result, spec, args.json)
}
