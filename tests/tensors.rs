//! The user's own data (`dataset = "tensors"`): Fashion-MNIST written as NumPy arrays by
//! examples/byo/write_data.py (as a user would), as a .npz archive and as a .safetensors file,
//! trained by gncctl; and bad files refused by name.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gnc_tests::{gncctl_output, hash, repo_root, run_job, text, venv_python, write_spec};

/// The arrays of write_data.py, and a .safetensors file of the training split, once.
fn arrays() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        python(&[
            repo_root()
                .join("examples/byo/write_data.py")
                .to_str()
                .unwrap(),
            "--data",
            repo_root().join("data/fashion-mnist").to_str().unwrap(),
            "--out",
            dir.path().to_str().unwrap(),
        ]);
        // The same arrays as .safetensors, written with the safetensors crate from the .npy
        // files' data (which ends each file).
        let tail = |name: &str, bytes: usize| {
            let all = std::fs::read(dir.path().join(name)).unwrap();
            all[all.len() - bytes..].to_vec()
        };
        let (inputs, labels) = (
            tail("train_inputs.npy", 60_000 * 784),
            tail("train_labels.npy", 60_000 * 8),
        );
        use safetensors::tensor::{Dtype, TensorView};
        let views = [
            (
                "inputs",
                TensorView::new(Dtype::U8, vec![60_000, 28, 28], &inputs).unwrap(),
            ),
            (
                "labels",
                TensorView::new(Dtype::I64, vec![60_000], &labels).unwrap(),
            ),
        ];
        safetensors::serialize_to_file(views, &None, &dir.path().join("train.safetensors"))
            .unwrap();
        dir
    })
    .path()
}

fn python(args: &[&str]) {
    let o = venv_python()
        .args(args)
        .output()
        .expect("the venv's python runs (make setup makes it)");
    assert!(
        o.status.success(),
        "python {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A baseline job of 8 iterations on 1,024 training examples of `data` (a `[data]` table's
/// lines).
fn job(name: &str, data: &str) -> String {
    format!(
        r#"name = "{name}"
seed = 2
output_dir = "runs/{name}"

[data]
{data}
train_subset = 1024
test_subset = 512

[model]
kind = "mlp"
hidden = [64]

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
epochs = 1
base_lr = 0.1
"#
    )
}

fn tensors(root: &Path, tensors: &str) -> String {
    format!(
        "dataset = \"tensors\"\nroot = \"{}\"\ntensors = {{ {tensors}, classes = 10 }}",
        root.display()
    )
}

const NPY_SPLITS: &str = "train = { inputs = \"train_inputs.npy\", labels = \"train_labels.npy\" }, \
     test = { inputs = \"test_inputs.npy\", labels = \"test_labels.npy\" }";

#[test]
fn npy_files_train_to_the_idx_files_bits_in_process_and_in_worker_processes() {
    let dir = tempfile::tempdir().unwrap();
    let idx = format!(
        "dataset = \"fashion-mnist\"\nroot = \"{}\"",
        repo_root().join("data/fashion-mnist").display()
    );
    let idx = write_spec(dir.path(), "idx", &job("tensors-idx", &idx));
    let npy = write_spec(
        dir.path(),
        "npy",
        &job("tensors-npy", &tensors(arrays(), NPY_SPLITS)),
    );
    let a = run_job(&idx, &dir.path().join("a"), &["--threads", "1"]);
    let b = run_job(&npy, &dir.path().join("b"), &["--threads", "1"]);
    let c = run_job(&npy, &dir.path().join("c"), &["--devices", "cpu:2"]);
    assert_eq!(hash(&a), hash(&b), "the same examples, the same bits");
    assert_eq!(hash(&b), hash(&c));
    assert_eq!(a["test_accuracy"], b["test_accuracy"]);
}

#[test]
fn npz_safetensors_and_npy_hold_out_the_same_test_split() {
    let dir = tempfile::tempdir().unwrap();
    let held_out = |name: &str, train: &str| {
        let spec = write_spec(
            dir.path(),
            name,
            &job(
                &format!("tensors-{name}"),
                &tensors(arrays(), &format!("train = {train}, test_fraction = 0.1")),
            ),
        );
        run_job(&spec, &dir.path().join(name), &[])
    };
    let npy = held_out(
        "npy",
        "{ inputs = \"train_inputs.npy\", labels = \"train_labels.npy\" }",
    );
    let npz = held_out("npz", "\"fashion-mnist.npz\"");
    let st = held_out("safetensors", "\"train.safetensors\"");
    assert_eq!(hash(&npy), hash(&npz));
    assert_eq!(hash(&npy), hash(&st));
    assert_eq!(npy["test_accuracy"], st["test_accuracy"]);
}

#[test]
fn bad_arrays_are_refused_naming_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // Small arrays with one thing wrong each, written by NumPy.
    python(&[
        "-c",
        &format!(
            r#"
import numpy as np
d = "{d}"
x = np.zeros((64, 28, 28), np.uint8); y = np.arange(64) % 10
np.save(d + "/x.npy", x); np.save(d + "/y.npy", y)
np.save(d + "/y_eleven.npy", np.where(y == 3, 10, y))
np.save(d + "/x_f64.npy", x.astype(np.float64))
np.save(d + "/y_short.npy", y[:60])
raw = open(d + "/x.npy", "rb").read(); open(d + "/x_cut.npy", "wb").write(raw[:-100])
"#
        ),
    ]);
    let refused = |name: &str, inputs: &str, labels: &str, wanted: &str| {
        let files = format!(
            "train = {{ inputs = \"{inputs}\", labels = \"{labels}\" }}, test_fraction = 0.25"
        );
        let toml = job(name, &tensors(dir.path(), &files))
            .replace("train_subset = 1024\ntest_subset = 512\n", "")
            .replace("workers = 4", "workers = 1");
        let spec = write_spec(dir.path(), name, &toml);
        let out = dir.path().join(format!("{name}-out"));
        let o = gncctl_output(&[
            "run",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(!o.status.success(), "{name} was accepted");
        assert!(text(&o).contains(wanted), "{name}: {}", text(&o));
        assert!(!out.join("metrics.jsonl").exists(), "{name} trained");
    };
    let file = |f: &str| -> PathBuf { dir.path().join(f) };
    let shown = |f: &str| file(f).display().to_string();
    refused(
        "label-ten",
        "x.npy",
        "y_eleven.npy",
        &format!(
            "{} is not valid: label 10 of example 3 is not in 0..10",
            shown("y_eleven.npy")
        ),
    );
    refused(
        "float64",
        "x_f64.npy",
        "y.npy",
        &format!(
            "{} is not valid: elements of type \"<f8\"",
            shown("x_f64.npy")
        ),
    );
    refused(
        "truncated",
        "x_cut.npy",
        "y.npy",
        &format!(
            "{} is not valid: shape [64, 28, 28] of |u1 needs 50176 bytes of data, the file has \
             50076 (truncated)",
            shown("x_cut.npy")
        ),
    );
    refused(
        "mismatch",
        "x.npy",
        "y_short.npy",
        &format!(
            "{} is not valid: 60 labels for 64 inputs",
            shown("y_short.npy")
        ),
    );
    refused(
        "outside",
        "x.npy",
        "../y.npy",
        "data.tensors.train` names ../y.npy, which is not a path inside data.root",
    );
    refused(
        "missing",
        "x.npy",
        "nowhere.npy",
        &format!(
            "data.tensors.train` names {}, which is not a file",
            shown("nowhere.npy")
        ),
    );
}

#[test]
fn a_set_larger_than_memory_is_never_read_whole() {
    // 64 GiB of inputs (a sparse file: no disk, and more than this machine's memory) with
    // small test files: training on a subset touches only the pages its batches read. A loader
    // that read the file whole could not run here.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    python(&[
        "-c",
        &format!(
            r#"
import numpy as np
n = (64 << 30) // 784
x = np.lib.format.open_memmap("{d}/x.npy", mode="w+", dtype=np.uint8, shape=(n, 28, 28))
x[:4096] = np.arange(4096 * 784, dtype=np.uint64).reshape(4096, 28, 28) % 251
x.flush()
np.save("{d}/y.npy", (np.arange(n) % 10).astype(np.uint8))
np.save("{d}/tx.npy", np.zeros((64, 28, 28), np.uint8))
np.save("{d}/ty.npy", np.arange(64) % 10)
"#
        ),
    ]);
    let size = std::fs::metadata(dir.path().join("x.npy")).unwrap().len();
    assert!(size > 63 << 30, "{size}");
    let files = "train = { inputs = \"x.npy\", labels = \"y.npy\" }, \
                 test = { inputs = \"tx.npy\", labels = \"ty.npy\" }";
    let toml = job("tensors-huge", &tensors(dir.path(), files)).replace("test_subset = 512\n", "");
    let spec = write_spec(dir.path(), "huge", &toml);
    let summary = run_job(&spec, &dir.path().join("out"), &[]);
    assert_eq!(summary["iterations"], 8);
}
