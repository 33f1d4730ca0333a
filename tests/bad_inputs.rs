//! Every bad input gets a clear error naming the problem, and loses nothing: bad job specs,
//! a diverging run, a damaged checkpoint, a checkpoint of another spec.

use gnc_tests::*;

/// Runs gncctl on a spec and returns (success, stderr).
fn run_spec(dir: &std::path::Path, toml: &str, extra: &[&str]) -> (bool, String) {
    let spec = write_spec(dir, "job", toml);
    let out = dir.join("out");
    let mut args = vec![
        "run",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = gncctl_output(&args);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn assert_refused(toml: &str, expected: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr) = run_spec(dir.path(), toml, &[]);
    assert!(!ok, "gncctl accepted a bad spec");
    for e in expected {
        assert!(
            stderr.contains(e),
            "error {stderr:?} does not mention {e:?}"
        );
    }
    assert!(
        !dir.path().join("out").join("metrics.jsonl").exists(),
        "no training started"
    );
}

fn base() -> String {
    tiny_job("bad", "kind = \"gnc\"\nalpha = 0.1")
}

#[test]
fn unknown_key_is_named() {
    assert_refused(
        &base().replace("small_batch = 8", "small_batch = 8\nsmal_batch = 8"),
        &["smal_batch"],
    );
}

#[test]
fn zero_workers_is_refused() {
    assert_refused(
        &base().replace("workers = 8", "workers = 0"),
        &["parallel.workers"],
    );
}

#[test]
fn small_batch_larger_than_the_data_set_is_refused() {
    assert_refused(
        &base().replace("small_batch = 8", "small_batch = 500"),
        &["parallel.small_batch", "400 training examples"],
    );
}

#[test]
fn negative_alpha_is_refused() {
    assert_refused(
        &base().replace("alpha = 0.1", "alpha = -1"),
        &["method.alpha"],
    );
}

#[test]
fn switch_epoch_after_the_end_is_refused() {
    let toml = tiny_job(
        "bad",
        "kind = \"gnc_to_rnc\"\nalpha_gnc = 0.1\nalpha_rnc = 0.1\nswitch_epoch = 9",
    );
    assert_refused(&toml, &["method.switch_epoch", "after the end"]);
}

#[test]
fn missing_data_file_is_named() {
    let toml = tiny_cnn_job("bad", "kind = \"baseline\"").replace(
        "root = \"data/fashion-mnist\"",
        "root = \"/nonexistent/fmnist\"",
    );
    assert_refused(
        &toml,
        &["data.root", "/nonexistent/fmnist/train-images-idx3-ubyte"],
    );
}

#[test]
fn wrong_type_is_named() {
    assert_refused(
        &base().replace("epochs = 3", "epochs = \"three\""),
        &["epochs"],
    );
}

#[test]
fn divergence_names_the_iteration_and_keeps_the_last_good_checkpoint() {
    // The learning rate ramps up to 1e9 during warmup: the loss becomes inf/NaN at some
    // iteration after the first checkpoints.
    let toml = base()
        .replace("base_lr = 0.2", "base_lr = 1e9")
        .replace("warmup_start_lr = 0.02", "warmup_start_lr = 0.01")
        .replace("every_iterations = 4", "every_iterations = 1");
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr) = run_spec(dir.path(), &toml, &[]);
    assert!(!ok);
    let at = stderr
        .split("diverged at iteration ")
        .nth(1)
        .unwrap_or_else(|| panic!("no divergence message in {stderr:?}"));
    let iteration: u64 = at.split(':').next().unwrap().trim().parse().unwrap();
    assert!(iteration >= 1, "{stderr}");
    let checkpoints: Vec<String> = std::fs::read_dir(dir.path().join("out/checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    let newest = checkpoints.iter().max().expect("a checkpoint was kept");
    let kept: u64 = newest[5..14].parse().unwrap();
    assert_eq!(
        kept, iteration,
        "the checkpoint before the diverging iteration is kept"
    );
    assert!(
        stderr.contains(&format!("last good checkpoint (iteration {kept})")),
        "{stderr}"
    );
}

#[test]
fn damaged_checkpoint_is_reported_skipped_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "job", &base());
    let straight = run_job(&spec, &dir.path().join("straight"), &[]);
    let out = dir.path().join("out");
    // Checkpoints every 4 iterations, keep 2: stopping at 10 leaves 8 and 10.
    run_job(&spec, &out, &["--stop-after", "10"]);
    let damaged = out.join("checkpoints/ckpt-000000010.safetensors");
    let len = std::fs::metadata(&damaged).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&damaged)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let o = gncctl_output(&[
        "run",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--resume",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("ckpt-000000010.safetensors")
            && stderr.contains("truncated or damaged")
            && stderr.contains("moved to"),
        "{stderr}"
    );
    let resumed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(resumed["params_sha256"], straight["params_sha256"]);
    let aside = out.join("checkpoints/damaged");
    assert!(
        aside.join("ckpt-000000010.safetensors").exists()
            && aside.join("ckpt-000000010.json").exists(),
        "the damaged checkpoint is kept for inspection"
    );
}

#[test]
fn checkpoint_of_another_spec_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let spec = write_spec(dir.path(), "job", &base());
    run_job(&spec, &out, &["--stop-after", "4"]);
    let other = write_spec(dir.path(), "other", &base().replace("seed = 3", "seed = 4"));
    let o = gncctl_output(&[
        "run",
        other.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--resume",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("belongs to another job spec"));
}

#[test]
fn divergence_before_any_checkpoint_says_so() {
    let toml = base()
        .replace("base_lr = 0.2", "base_lr = 1e9")
        .replace("every_iterations = 4", "every_iterations = 100");
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr) = run_spec(dir.path(), &toml, &[]);
    assert!(!ok);
    assert!(stderr.contains("diverged at iteration"), "{stderr}");
    assert!(
        stderr.contains("no checkpoint had been written yet"),
        "{stderr}"
    );
    assert!(!dir.path().join("out/checkpoints").exists());
}

/// The pinned environment is set by the launcher (gncctl) and checked by the process: gnc-run
/// started without it, or with another value, refuses to compute and names the variable,
/// while gncctl, from the same environment, runs the job.
#[test]
fn gnc_run_started_without_its_levels_environment_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "job", &tiny_job("env", METHODS[0].1));
    let spec = spec.to_str().unwrap();
    let variables = ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATEN_CPU_CAPABILITY"];
    let gnc_run = |edit: &dyn Fn(&mut std::process::Command)| {
        let mut command = std::process::Command::new(bin_dir().join("gnc-run"));
        for key in variables.iter().chain(&["ONEDNN_MAX_CPU_ISA", "MKL_CBWR"]) {
            command.env_remove(key);
        }
        edit(&mut command);
        let out = dir.path().join("out");
        command
            .args(["run", spec, "--out", out.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let o = gnc_run(&|_| {});
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("OMP_NUM_THREADS is not set"), "{stderr}");
    assert!(stderr.contains("gncctl"), "{stderr}");
    let o = gnc_run(&|c| {
        gnc_proto::repro::Level::Portable.apply(c);
        c.env("ATEN_CPU_CAPABILITY", "avx512");
    });
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("ATEN_CPU_CAPABILITY=avx512"), "{stderr}");
    assert!(!dir.path().join("out/metrics.jsonl").exists());
    let mut gncctl = gncctl();
    for key in variables {
        gncctl.env_remove(key);
    }
    let o = gncctl
        .args([
            "run",
            spec,
            "--out",
            dir.path().join("out").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
