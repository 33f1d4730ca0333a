//! Re-running a recorded job into a fresh directory, in this process or in worker processes,
//! with a progress bar on stderr.

use std::path::Path;

use gnc_daemon::{SupervisorOptions, supervise};
use gnc_proto::{Devices, ValidSpec};
use gnc_worker::{Observer, RunOptions, RunSummary, train};
use indicatif::ProgressBar;

use gnc_ctl::progress::progress_bar;

struct Bar(ProgressBar);

impl Observer for Bar {
    fn started(&mut self, from: u64, total: u64, _parallelism: usize) {
        self.0.set_length(total);
        self.0.set_position(from);
    }
    fn progress(&mut self, completed: u64) {
        self.0.set_position(completed);
    }
    fn warning(&mut self, message: &str) {
        self.0.suspend(|| eprintln!("warning: {message}"));
    }
}

/// Trains `spec` from scratch into `out`, stopping after `stop` iterations if given.
pub fn rerun(
    spec: &ValidSpec,
    out: &Path,
    stop: Option<u64>,
    devices: Option<Devices>,
) -> anyhow::Result<RunSummary> {
    let mut bar = Bar(progress_bar(true));
    let result = match devices {
        None => train(
            spec,
            &RunOptions {
                output_dir: Some(out.to_path_buf()),
                stop_after: stop,
                ..RunOptions::default()
            },
            &mut bar,
        )
        .map_err(anyhow::Error::from),
        Some(devices) => supervise(
            spec,
            &SupervisorOptions {
                output_dir: Some(out.to_path_buf()),
                stop_after: stop,
                ..SupervisorOptions::new(devices)
            },
            &mut bar,
        )
        .map_err(anyhow::Error::from),
    };
    bar.0.finish_and_clear();
    result
}
