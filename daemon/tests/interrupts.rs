//! `Interrupts` against real worker processes: a checkpoint asked mid-run is written and
//! training goes on; a stop ends the run at an iteration boundary with a checkpoint that
//! resumes to the same bits as a run never stopped; a cancel kills the group and leaves no
//! shared memory behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gnc_daemon::{Interrupts, Observer, SupervisorError, SupervisorOptions, supervise};
use gnc_proto::{Devices, JobSpec, ValidSpec};

/// A teacher–student job long enough (3,072 iterations of a tiny MLP) that requests made
/// after its first iterations land long before its end; no periodic checkpoints, and a
/// learning rate small enough for B = 16.
fn long_job(dir: &Path, name: &str) -> ValidSpec {
    let toml = gnc_tests::teacher_student_job(&gnc_tests::TinyJob {
        name,
        method: "kind = \"gnc\"\nalpha = 0.5",
        seed: 5,
        train_examples: 16384,
        test_examples: 64,
        workers: 4,
        small_batch: 4,
        parallel: "",
    })
    .replace("every_iterations = 4", "every_iterations = 0")
    .replace("base_lr = 0.2", "base_lr = 0.02")
    .replace("warmup_start_lr = 0.02", "warmup_start_lr = 0.002");
    let path = gnc_tests::write_spec(dir, name, &toml);
    JobSpec::load(&path).unwrap()
}

fn options(out: PathBuf, interrupts: Option<Arc<Interrupts>>) -> SupervisorOptions {
    SupervisorOptions {
        output_dir: Some(out),
        worker_bin: Some(gnc_tests::bin_dir().join("gnc-worker")),
        interrupts,
        ..SupervisorOptions::new(Devices::Cpu(2))
    }
}

/// Asks for a checkpoint after 10 iterations and, once it is written and 10 more are done,
/// for a stop (or a cancel).
struct Asker {
    interrupts: Arc<Interrupts>,
    cancel: bool,
    asked_checkpoint: bool,
    checkpoints: Vec<u64>,
    asked_stop: bool,
    pids: Vec<u32>,
}

impl Observer for Asker {
    fn spawned(&mut self, _generation: u64, pids: &[u32]) {
        self.pids.extend_from_slice(pids);
    }

    fn progress(&mut self, completed: u64) {
        if completed >= 10 && !self.asked_checkpoint {
            self.asked_checkpoint = true;
            self.interrupts.request_checkpoint();
        }
        let after_checkpoint = self
            .checkpoints
            .first()
            .is_some_and(|&c| completed >= c + 10);
        if after_checkpoint && !self.asked_stop {
            self.asked_stop = true;
            if self.cancel {
                self.interrupts.cancel();
            } else {
                self.interrupts.request_stop();
            }
        }
    }

    fn checkpointed(&mut self, iteration: u64) {
        self.checkpoints.push(iteration);
    }
}

fn asker(cancel: bool) -> Asker {
    Asker {
        interrupts: Interrupts::new(),
        cancel,
        asked_checkpoint: false,
        checkpoints: Vec::new(),
        asked_stop: false,
        pids: Vec::new(),
    }
}

#[test]
fn a_requested_checkpoint_and_stop_resume_to_the_bits_of_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let spec = long_job(dir.path(), "rc-stop");
    let reference = supervise(
        &spec,
        &options(dir.path().join("reference"), None),
        &mut asker(false),
    )
    .unwrap();
    assert!(reference.complete);

    let out = dir.path().join("stopped");
    let mut events = asker(false);
    let stopped = supervise(
        &spec,
        &options(out.clone(), Some(events.interrupts.clone())),
        &mut events,
    )
    .unwrap();
    assert!(!stopped.complete, "the stop ended the run early");
    assert!(stopped.iterations < stopped.total_iterations);
    // The asked checkpoint, then the stop's own at the iteration the run ended.
    assert_eq!(events.checkpoints.len(), 2, "{:?}", events.checkpoints);
    let (asked, last) = (events.checkpoints[0], events.checkpoints[1]);
    assert!(asked >= 10 && asked < stopped.iterations, "{asked}");
    assert_eq!(last, stopped.iterations);
    for iteration in [asked, last] {
        let manifest = gnc_contract::manifest::manifest_file(&out.join("checkpoints"), iteration);
        assert!(manifest.is_file(), "{} is missing", manifest.display());
    }

    let resumed = supervise(
        &spec,
        &SupervisorOptions {
            resume: true,
            ..options(out, None)
        },
        &mut asker(false),
    )
    .unwrap();
    assert!(resumed.complete);
    assert_eq!(resumed.params_sha256, reference.params_sha256);
}

#[test]
fn a_cancel_kills_every_worker_and_removes_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let spec = long_job(dir.path(), "rc-cancel");
    let mut events = asker(true);
    let result = supervise(
        &spec,
        &options(dir.path().join("out"), Some(events.interrupts.clone())),
        &mut events,
    );
    assert!(
        matches!(result, Err(SupervisorError::Cancelled)),
        "{result:?}"
    );
    assert_eq!(events.pids.len(), 2);
    for pid in &events.pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} outlived the cancel"
        );
    }
    let left: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gnc-rc_cancel_"))
        .collect();
    assert!(left.is_empty(), "segments left behind: {left:?}");
}
