//! The user's own network (`[model] kind = "onnx"`): PyTorch modules exported by
//! examples/byo/export.py with the venv's torch (as a user would), trained by gncctl on a real
//! Fashion-MNIST subset.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gnc_tests::{gncctl_output, hash, repo_root, run_job, text, venv_python, write_spec};

/// The exported models (mlp.onnx, resnet.onnx), once per test binary.
fn exported() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = repo_root();
        let o = venv_python()
            .arg(root.join("examples/byo/export.py"))
            .arg("--out")
            .arg(dir.path())
            .output()
            .expect("the venv's python runs (make setup makes it)");
        assert!(
            o.status.success(),
            "export.py failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        dir
    })
    .path()
}

/// A GNC job of 8 iterations on 512 Fashion-MNIST images with `model` (a `[model]` table's
/// lines).
fn job(name: &str, model: &str) -> String {
    format!(
        r#"name = "{name}"
seed = 5
output_dir = "runs/{name}"

[data]
dataset = "fashion-mnist"
root = "{root}"
train_subset = 512
test_subset = 256

[model]
{model}

[parallel]
workers = 4
small_batch = 32

[method]
kind = "gnc"
alpha = 0.1

[optimizer]
kind = "momentum"
momentum = 0.9
weight_decay = 1e-4

[schedule]
epochs = 2
base_lr = 0.1

[checkpoint]
every_iterations = 4
keep = 4
"#,
        root = repo_root().join("data/fashion-mnist").display()
    )
}

fn onnx(file: &Path, init: &str) -> String {
    format!(
        "kind = \"onnx\"\npath = \"{}\"\ninit = \"{init}\"",
        file.display()
    )
}

#[test]
fn an_onnx_mlp_trains_to_the_built_in_mlps_bits() {
    // One construction, two descriptions: the demo's MLP written in PyTorch and the built-in
    // `kind = "mlp"`, with the same seed's He draws, give the same hash.
    let dir = tempfile::tempdir().unwrap();
    let builtin = write_spec(
        dir.path(),
        "builtin",
        &job("byo-builtin", "kind = \"mlp\"\nhidden = [512, 256]"),
    );
    let from_file = write_spec(
        dir.path(),
        "onnx",
        &job("byo-onnx", &onnx(&exported().join("mlp.onnx"), "he")),
    );
    let a = run_job(&builtin, &dir.path().join("a"), &["--threads", "1"]);
    let b = run_job(&from_file, &dir.path().join("b"), &["--threads", "2"]);
    assert_eq!(
        hash(&a),
        hash(&b),
        "the ONNX MLP trains as the built-in one"
    );
    assert_eq!(b["iterations"], 8);
}

#[test]
fn an_onnx_cnn_gives_one_hash_on_threads_processes_a_killed_worker_and_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "cnn",
        &job("byo-cnn", &onnx(&exported().join("resnet.onnx"), "file")),
    );
    let one = hash(&run_job(
        &spec,
        &dir.path().join("one"),
        &["--threads", "1"],
    ));
    for placement in [
        &["--threads", "2"][..],
        &["--threads", "4"],
        &["--devices", "cpu:1"],
        &["--devices", "cpu:2"],
        &["--devices", "cpu:4"],
    ] {
        let out = dir.path().join(placement.join("-").replace(':', "_"));
        assert_eq!(hash(&run_job(&spec, &out, placement)), one, "{placement:?}");
    }
    // A worker process killed at iteration 5 (the fault-injection hook of `make test`'s
    // build): the supervisor restarts the group from the checkpoint of iteration 4.
    let out = dir.path().join("killed");
    let o = gnc_tests::gncctl()
        .args([
            "run",
            spec.to_str().unwrap(),
            "--json",
            "--devices",
            "cpu:2",
            "--out",
        ])
        .arg(&out)
        .env("GNC_TEST_KILL_AT", "1:5")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("restart 1 of"), "{}", text(&o));
    let killed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(hash(&killed), one);
    let out = dir.path().join("resumed");
    let paused = run_job(&spec, &out, &["--stop-after", "4"]);
    assert_eq!(paused["complete"], false);
    let resumed = run_job(&spec, &out, &["--resume"]);
    assert_eq!(hash(&resumed), one);
}

#[test]
fn a_model_file_changed_after_the_run_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let model: PathBuf = dir.path().join("net.onnx");
    std::fs::copy(exported().join("mlp.onnx"), &model).unwrap();
    let spec = write_spec(
        dir.path(),
        "changed",
        &job("byo-changed", &onnx(&model, "file")),
    );
    let run = dir.path().join("run");
    run_job(&spec, &run, &[]);
    let verify = || gncctl_output(&["verify", run.to_str().unwrap(), "--iterations", "2"]);
    let o = verify();
    assert!(o.status.success(), "{}", text(&o));
    // A retrained file under the same name: same shapes, other weights.
    let mut bytes = std::fs::read(&model).unwrap();
    let last = bytes.len() - 40;
    bytes[last] ^= 1;
    std::fs::write(&model, &bytes).unwrap();
    let o = verify();
    assert!(!o.status.success());
    assert!(
        text(&o).contains(&format!(
            "{} changed since the job was given it",
            model.display()
        )),
        "{}",
        text(&o)
    );
}

#[test]
fn a_model_that_does_not_fit_the_data_or_is_not_onnx_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    // The residual CNN takes 1x28x28 images with 10 classes; a teacher-student set of 3 classes
    // over 784 inputs has the values but not the classes.
    let mismatch = job("byo-classes", &onnx(&exported().join("resnet.onnx"), "he")).replace(
        "dataset = \"fashion-mnist\"",
        "dataset = \"teacher-student\"\nteacher_student = { train_examples = 512, \
         test_examples = 256, input_dim = 784, classes = 3, teacher_hidden = 8 }",
    );
    let spec = write_spec(dir.path(), "classes", &mismatch);
    let out = dir.path().join("classes-out");
    let o = gncctl_output(&[
        "run",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("the model's output has 10 classes; the data set has 3"),
        "{}",
        text(&o)
    );
    assert!(!out.join("metrics.jsonl").exists());

    let truncated = dir.path().join("truncated.onnx");
    let bytes = std::fs::read(exported().join("mlp.onnx")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let spec = write_spec(
        dir.path(),
        "truncated",
        &job("byo-truncated", &onnx(&truncated, "he")),
    );
    let o = gncctl_output(&[
        "run",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains(&format!("{} is not an ONNX model", truncated.display())),
        "{}",
        text(&o)
    );
}

#[test]
fn gnc_computes_the_first_loss_and_gradients_as_pytorch_does() {
    // One batch (M = 1, b = 32, the first 32 training images), the file's weights: gnc's loss
    // and gradient (kept in the checkpoint after iteration 1, as GNC keeps every worker's
    // previous gradient; GNC's noise is zero at iteration 0) against PyTorch's forward and
    // backward of the same module with the same weights.
    for (kind, file) in [
        ("mlp", "mlp.onnx"),
        ("resnet", "resnet.onnx"),
        ("zoo", "zoo.onnx"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let model = exported().join(file);
        let toml = job(&format!("byo-eq-{kind}"), &onnx(&model, "file"))
            .replace("train_subset = 512", "train_subset = 32")
            .replace("workers = 4", "workers = 1");
        let spec = write_spec(dir.path(), kind, &toml);
        let run = dir.path().join("run");
        run_job(&spec, &run, &["--stop-after", "1"]);
        let root = repo_root();
        let o = venv_python()
            .arg(root.join("tests/assets/onnx_reference.py"))
            .args([model.as_os_str(), std::ffi::OsStr::new(kind)])
            .arg(root.join("data/fashion-mnist"))
            .arg("32")
            .arg(&run)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let loss_error = report["loss_error"].as_f64().unwrap();
        assert!(loss_error <= 1e-5, "{kind}: loss {report}");
        let errors = report["gradient_errors"].as_object().unwrap();
        assert!(errors.len() >= 6, "{kind}: {report}");
        for (name, e) in errors {
            assert!(
                e.as_f64().unwrap() <= 1e-4,
                "{kind}: gradient of {name}: {report}"
            );
        }
    }
}

/// The final hash of a small job of the residual CNN's graph with weights drawn by gnc, at the
/// portable level: it runs only kernels the portable fingerprint covers (convolution, batch
/// norm, ReLU, average pooling, gnc's own product), so it is the same on Intel and AMD, as the
/// built-in CNN's golden hash is (tests/golden_hashes.rs says what to do when it changes;
/// `GNC_PRINT_GOLDEN=1 cargo test --release -p gnc-tests --test onnx -- --nocapture` prints it).
const ONNX_CNN_GOLDEN: &str = "e080c6b29adefe8d3de33391b5896041254874886c65d4c42fdf4d8ec5957110";

#[test]
fn an_onnx_cnns_final_hash_is_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "golden",
        &job("byo-golden", &onnx(&exported().join("resnet.onnx"), "he")),
    );
    let h = hash(&run_job(&spec, &dir.path().join("out"), &[]));
    if std::env::var_os("GNC_PRINT_GOLDEN").is_some() {
        println!("onnx cnn: {h}");
    }
    assert_eq!(h, ONNX_CNN_GOLDEN);
}

#[test]
fn an_onnx_job_on_the_users_arrays_gives_one_hash_across_hosts() {
    // The user's network and the user's data together, in-process and under mpirun on two
    // "hosts" (this machine, twice, as tests/mpi.rs runs them).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let o = venv_python()
        .args([
            "-c",
            &format!(
                "import numpy as np\nr = np.random.default_rng(7)\n\
                 np.save('{d}/x.npy', r.integers(0, 256, (640, 1, 28, 28), dtype=np.uint8))\n\
                 np.save('{d}/y.npy', r.integers(0, 10, 640))"
            ),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let data = format!(
        "dataset = \"tensors\"\nroot = \"{d}\"\ntensors = {{ train = {{ inputs = \"x.npy\", \
         labels = \"y.npy\" }}, test_fraction = 0.2, classes = 10 }}"
    );
    let toml = job("byo-hosts", &onnx(&exported().join("resnet.onnx"), "file")).replace(
        &format!(
            "dataset = \"fashion-mnist\"\nroot = \"{}\"\ntrain_subset = 512\ntest_subset = 256",
            repo_root().join("data/fashion-mnist").display()
        ),
        &data,
    );
    assert!(toml.contains("tensors"), "{toml}");
    let spec = write_spec(dir.path(), "hosts", &toml);
    let here = hash(&run_job(&spec, &dir.path().join("here"), &[]));
    let hostfile = dir.path().join("hostfile");
    std::fs::write(&hostfile, "localhost slots=2\n").unwrap();
    let across = run_job(
        &spec,
        &dir.path().join("across"),
        &["--hosts", hostfile.to_str().unwrap(), "--devices", "cpu:2"],
    );
    assert_eq!(hash(&across), here);
}

#[test]
fn a_network_exported_with_batch_norm_folded_trains_too() {
    // PyTorch's default export folds BatchNorm into the convolutions (biases appear, the
    // BatchNormalization nodes go): the same CNN then trains without BatchNorm, on one hash.
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "folded",
        &job(
            "byo-folded",
            &onnx(&exported().join("resnet-folded.onnx"), "file"),
        ),
    );
    let a = run_job(&spec, &dir.path().join("a"), &["--threads", "1"]);
    let b = run_job(&spec, &dir.path().join("b"), &["--devices", "cpu:2"]);
    assert_eq!(hash(&a), hash(&b));
    assert_eq!(a["iterations"], 8);
}
