//! Helpers for end-to-end tests: the real binaries, small real jobs, and their outputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `target/<profile>/`, the directory holding the workspace's binaries.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf()
}

/// The workspace root (for `data/` and `examples/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

pub fn gncctl() -> Command {
    let path = bin_dir().join("gncctl");
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (cargo build --release)",
        path.display()
    );
    let mut c = Command::new(path);
    // Jobs across hosts start mpirun, which refuses root (CI) without consent.
    c.current_dir(repo_root())
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    c
}

/// Ctrl-C at a terminal (SIGINT to gncctl's whole process group) pauses a `gncctl run` with
/// `placement` (none: in-process; `--devices`; `--hosts`): it checkpoints at the next iteration
/// boundary and ends there with `complete: false`, and `--resume` ends with the bits of the
/// run that never stopped.
pub fn ctrl_c_pauses_and_resume_keeps_the_bits(name: &str, placement: &[&str]) {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let toml = teacher_student_job(&TinyJob {
        name,
        method: METHODS[0].1,
        seed: 4,
        train_examples: 16384,
        test_examples: 64,
        workers: 8,
        small_batch: 4,
        parallel: "",
    });
    let spec = write_spec(dir.path(), name, &toml);
    let (paused, straight) = (dir.path().join("paused"), dir.path().join("straight"));
    let child = gncctl()
        .args(["run", spec.to_str().unwrap(), "--json", "--out"])
        .arg(&paused)
        .args(placement)
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once it trains, interrupt it as a terminal does: every process of its group.
    let metrics = paused.join("metrics.jsonl");
    let began = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 2 {
        assert!(
            began.elapsed().as_secs() < 60,
            "no iteration within a minute"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let kill = Command::new("kill")
        .args(["-INT", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{placement:?}: {stderr}");
    assert!(
        stderr.contains("stopping at the next iteration boundary"),
        "{stderr}"
    );
    assert!(!stderr.contains("restart"), "{placement:?}: {stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["complete"], false, "{summary}");
    let stopped_at = summary["iterations"].as_u64().unwrap();
    assert!(
        paused
            .join(format!("checkpoints/ckpt-{stopped_at:09}.json"))
            .is_file(),
        "{placement:?}: no checkpoint at {stopped_at}"
    );
    let mut resume = vec!["--resume"];
    resume.extend_from_slice(placement);
    let resumed = run_job(&spec, &paused, &resume);
    assert_eq!(resumed["complete"], true);
    assert_eq!(hash(&resumed), hash(&run_job(&spec, &straight, &[])));
}

/// A run summary's final parameter hash.
pub fn hash(summary: &serde_json::Value) -> String {
    summary["params_sha256"].as_str().unwrap().to_string()
}

/// A finished command's stdout and stderr, for assertions and their messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The project venv's Python (torch, numpy, onnx: `make setup`), for a test's PyTorch side.
pub fn venv_python() -> Command {
    Command::new(repo_root().join(".venv/bin/python"))
}

/// Runs `gncctl` with `args`, returning its output (whatever its status).
pub fn gncctl_output(args: &[&str]) -> Output {
    gncctl().args(args).output().expect("gncctl runs")
}

/// Runs `gncctl run <spec> --json --out <out> <extra>` and returns the parsed summary; panics
/// with gncctl's stderr if it fails.
pub fn run_job(spec: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "run",
        spec.to_str().unwrap(),
        "--json",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = gncctl_output(&args);
    assert!(
        o.status.success(),
        "gncctl {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("--json prints the summary")
}

/// Writes a spec file into `dir` and returns its path.
pub fn write_spec(dir: &Path, name: &str, toml: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml).unwrap();
    path
}

/// The per-iteration lines of a run's metrics.jsonl (the loss sequence and more), without
/// their wall times ([`without_seconds`]).
pub fn iteration_lines(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"kind\":\"iter\""))
        .map(without_seconds)
        .collect()
}

/// A metrics line without its `"seconds"` field: the wall time of an iteration, the one
/// value two runs of a job do not share.
pub fn without_seconds(line: &str) -> String {
    let Some(start) = line.find(",\"seconds\":") else {
        return line.to_string();
    };
    let rest = &line[start + 1..];
    let end = rest.find([',', '}']).map_or(line.len(), |e| start + 1 + e);
    format!("{}{}", &line[..start], &line[end..])
}

#[test]
fn without_seconds_drops_only_the_wall_time() {
    let line = r#"{"kind":"iter","iter":3,"loss":1.5,"noise_norm":0.25,"seconds":1.25e-3}"#;
    assert_eq!(
        without_seconds(line),
        r#"{"kind":"iter","iter":3,"loss":1.5,"noise_norm":0.25}"#
    );
    let eval = r#"{"kind":"eval","iter":3,"test_accuracy":0.5}"#;
    assert_eq!(without_seconds(eval), eval);
}

/// The method tables of the five methods, each with settings that exercise it.
pub const METHODS: [(&str, &str); 5] = [
    ("baseline", "kind = \"baseline\""),
    ("gnc", "kind = \"gnc\"\nalpha = 0.5"),
    ("rnc", "kind = \"rnc\"\nalpha = 0.05"),
    (
        "gnc_to_rnc",
        "kind = \"gnc_to_rnc\"\nalpha_gnc = 0.5\nalpha_rnc = 0.05\nswitch_epoch = 2",
    ),
    (
        "noise_enhancement",
        "kind = \"noise_enhancement\"\nalpha = 1.5",
    ),
];

/// The knobs of [`teacher_student_job`].
pub struct TinyJob<'a> {
    pub name: &'a str,
    /// The `[method]` table's body.
    pub method: &'a str,
    pub seed: u64,
    pub train_examples: usize,
    pub test_examples: usize,
    pub workers: usize,
    pub small_batch: usize,
    /// Extra `[parallel]` keys, e.g. `devices = "cpu:2"`.
    pub parallel: &'a str,
}

/// A small, fast MLP job on the synthetic teacher–student set: 3 epochs with momentum SGD,
/// warmup and step decay, checkpoints every 4 iterations.
pub fn teacher_student_job(j: &TinyJob) -> String {
    format!(
        r#"
name = "{name}"
seed = {seed}
output_dir = "runs/{name}"

[data]
dataset = "teacher-student"
teacher_student = {{ train_examples = {train}, test_examples = {test}, input_dim = 16, classes = 4, teacher_hidden = 32 }}

[model]
kind = "mlp"
hidden = [32, 32]

[parallel]
workers = {workers}
small_batch = {small_batch}
{parallel}

[method]
{method}

[optimizer]
kind = "momentum"
momentum = 0.9
weight_decay = 1e-4

[schedule]
epochs = 3
base_lr = 0.2
warmup_epochs = 1
warmup_start_lr = 0.02
decay = {{ kind = "step", milestones = [2.5], factor = 0.1 }}

[checkpoint]
every_iterations = 4
keep = 2
"#,
        name = j.name,
        seed = j.seed,
        train = j.train_examples,
        test = j.test_examples,
        workers = j.workers,
        small_batch = j.small_batch,
        parallel = j.parallel,
        method = j.method,
    )
}

/// M = 8 workers of b = 8 on 400 examples: 3 epochs of 6 iterations.
pub fn tiny_job(name: &str, method: &str) -> String {
    teacher_student_job(&TinyJob {
        name,
        method,
        seed: 3,
        train_examples: 400,
        test_examples: 200,
        workers: 8,
        small_batch: 8,
        parallel: "",
    })
}

/// A small CNN job with BatchNorm on a real subset of Fashion-MNIST (the first 512 training
/// images): exercises convolutions, BN statistics over logical workers, LARS and polynomial
/// decay.
pub fn tiny_cnn_job(name: &str, method: &str) -> String {
    format!(
        r#"
name = "{name}"
seed = 5
output_dir = "runs/{name}"

[data]
dataset = "fashion-mnist"
root = "data/fashion-mnist"
train_subset = 512
test_subset = 256

[model]
kind = "vgg"
channels = [4, 8]

[parallel]
workers = 4
small_batch = 16

[method]
{method}

[optimizer]
kind = "lars"
momentum = 0.9
weight_decay = 1e-4
trust = 0.02

[schedule]
epochs = 2
base_lr = 2.0
warmup_epochs = 0.5
warmup_start_lr = 0.1
decay = {{ kind = "polynomial", power = 2.0, collapse_epoch = 1.5, collapse_divisor = 5.0 }}

[eval]
train_examples = 256

[checkpoint]
every_iterations = 5
"#
    )
}

/// Replaces `"field":<number>` in the iteration record of `iter` in `run`'s metrics.jsonl with
/// the next f64 up: the smallest tampering a verify must find.
pub fn bump_one_ulp(run: &Path, iter: u64, field: &str) {
    rewrite_field(run, iter, field, |v| f64::from_bits(v.to_bits() + 1));
}

/// Replaces `"field":<number>` in the iteration record of `iter` in `run`'s metrics.jsonl with
/// `change` of it.
pub fn rewrite_field(run: &Path, iter: u64, field: &str, change: impl Fn(f64) -> f64) {
    let path = run.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let marker = format!("\"kind\":\"iter\",\"iter\":{iter},");
    let key = format!("\"{field}\":");
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            if !line.contains(&marker) {
                return line.to_string();
            }
            let start = line.find(&key).expect("the field is in the record") + key.len();
            let end = start + line[start..].find([',', '}']).unwrap();
            let value: f64 = line[start..end].parse().unwrap();
            let changed = change(value);
            format!("{}{changed:?}{}", &line[..start], &line[end..])
        })
        .collect();
    assert_ne!(
        lines.join("\n") + "\n",
        text,
        "no record of iteration {iter}"
    );
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}
