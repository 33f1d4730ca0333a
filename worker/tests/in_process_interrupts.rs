//! The in-process run acts on checkpoint and stop requests as a worker group does (one run
//! loop for both): a checkpoint asked during iteration k is written at boundary k + 1 and the
//! run goes on; a stop checkpoints and ends the run there (a pause); resuming it gives the
//! bits of the run that never stopped.

use std::path::Path;
use std::sync::Arc;

use gnc_contract::interrupts::Interrupts;
use gnc_proto::{IterRecord, JobSpec, ValidSpec};
use gnc_worker::{Observer, RunOptions, train};

fn spec() -> ValidSpec {
    let text = r#"
name = "in-process-interrupts"
seed = 5
output_dir = "unused"
[data]
dataset = "teacher-student"
teacher_student = { train_examples = 192, test_examples = 32, input_dim = 6, classes = 3, teacher_hidden = 5 }
[model]
kind = "mlp"
hidden = [8]
[parallel]
workers = 4
small_batch = 8
[method]
kind = "gnc"
alpha = 0.5
[optimizer]
kind = "momentum"
momentum = 0.9
weight_decay = 0.0
[schedule]
epochs = 2
base_lr = 0.1
[checkpoint]
every_iterations = 0
keep = 5
"#;
    JobSpec::from_toml(text, "interrupts")
        .unwrap()
        .validated()
        .unwrap()
}

/// Asks for a checkpoint when iteration 3 is recorded, and for a stop at iteration 6.
struct Asker(Arc<Interrupts>);

impl Observer for Asker {
    fn iteration(&mut self, record: &IterRecord) {
        match record.iter {
            3 => self.0.request_checkpoint(),
            6 => self.0.request_stop(),
            _ => {}
        }
    }
}

struct Quiet;
impl Observer for Quiet {}

fn options(out: &Path) -> RunOptions {
    RunOptions {
        output_dir: Some(out.to_path_buf()),
        threads: Some(2),
        ..RunOptions::default()
    }
}

fn checkpoints(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

#[test]
fn checkpoint_now_and_pause_in_process_keep_the_bits() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec();
    let straight = train(&spec, &options(&dir.path().join("straight")), &mut Quiet).unwrap();
    assert!(straight.complete);

    let out = dir.path().join("asked");
    let interrupts = Interrupts::new();
    let paused = train(
        &spec,
        &RunOptions {
            interrupts: Some(interrupts.clone()),
            ..options(&out)
        },
        &mut Asker(interrupts),
    )
    .unwrap();
    assert!(!paused.complete, "{paused:?}");
    assert_eq!(
        paused.iterations, 7,
        "stopped at the boundary after iteration 6"
    );
    assert_eq!(
        checkpoints(&out),
        ["ckpt-000000004.json", "ckpt-000000007.json"],
        "the asked checkpoint, then the stop's"
    );

    let resumed = train(
        &spec,
        &RunOptions {
            resume: true,
            ..options(&out)
        },
        &mut Quiet,
    )
    .unwrap();
    assert!(resumed.complete);
    assert_eq!(resumed.params_sha256, straight.params_sha256);
}
