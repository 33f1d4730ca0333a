//! `gncctl verify`: a recorded tiny run reproduces (whole, after N iterations, and in worker
//! processes), and tampering with its metrics or its hash is found and named.

use std::path::{Path, PathBuf};
use std::process::Output;

use gnc_tests::{METHODS, bump_one_ulp, gncctl_output, run_job, tiny_job, write_spec};

/// gncctl's exit status for a negative answer.
const NEGATIVE: i32 = 3;

/// A finished tiny GNC run (18 iterations, checkpoints 16 and 18 kept) in `dir/name`.
fn recorded_run(dir: &Path, name: &str) -> PathBuf {
    let spec = write_spec(dir, name, &tiny_job(name, METHODS[1].1));
    let out = dir.join(name);
    run_job(&spec, &out, &[]);
    out
}

fn verify(run: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["verify", run.to_str().unwrap()];
    args.extend_from_slice(extra);
    gncctl_output(&args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_recorded_run_reproduces() {
    let dir = tempfile::tempdir().unwrap();
    let run = recorded_run(dir.path(), "verify-ok");
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("result.json")).unwrap()).unwrap();
    let hash = result["params_sha256"].as_str().unwrap();

    let o = verify(&run, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("reproduced: 18 iterations"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains(hash) && stdout(&o).contains("result.json"));

    // After 16 iterations: compared with the kept checkpoint of iteration 16.
    let o = verify(&run, &["--iterations", "16", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let verdict: serde_json::Value = serde_json::from_slice(&o.stdout).expect("--json verdict");
    assert_eq!(verdict["reproduced"], true);
    assert_eq!(verdict["iterations"], 16);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(run.join("checkpoints/ckpt-000000016.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(verdict["params_sha256"], manifest["params_sha256"]);
    assert!(
        verdict["message"]
            .as_str()
            .unwrap()
            .contains("checkpoint manifest of iteration 16")
    );

    // In two worker processes, the same bits as the in-process record.
    let o = verify(&run, &["--iterations", "6", "--devices", "cpu:2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("reproduced: 6 iterations"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn tampering_is_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let run = recorded_run(dir.path(), "verify-tampered");
    let pristine = std::fs::read(run.join("metrics.jsonl")).unwrap();

    // One ulp of one gradient norm at iteration 3.
    bump_one_ulp(&run, 3, "grad_norm");
    let o = verify(&run, &["--iterations", "5"]);
    assert_eq!(o.status.code(), Some(NEGATIVE), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not reproduced: iteration 3: grad_norm differs"),
        "{}",
        stderr(&o)
    );
    // Iterations before it still reproduce.
    let o = verify(&run, &["--iterations", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // A loss later in the run, found by a whole-run verify.
    std::fs::write(run.join("metrics.jsonl"), &pristine).unwrap();
    bump_one_ulp(&run, 11, "loss");
    let o = verify(&run, &[]);
    assert_eq!(o.status.code(), Some(NEGATIVE), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("iteration 11: loss differs"),
        "{}",
        stderr(&o)
    );

    // The final hash in result.json.
    std::fs::write(run.join("metrics.jsonl"), &pristine).unwrap();
    let path = run.join("result.json");
    let mut result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    result["params_sha256"] = "0".repeat(64).into();
    std::fs::write(&path, serde_json::to_vec_pretty(&result).unwrap()).unwrap();
    let o = verify(&run, &["--json"]);
    assert_eq!(o.status.code(), Some(NEGATIVE), "{}", stderr(&o));
    let verdict: serde_json::Value = serde_json::from_slice(&o.stdout).expect("--json verdict");
    assert_eq!(verdict["reproduced"], false);
    assert!(
        verdict["message"]
            .as_str()
            .unwrap()
            .contains("params sha256 after iteration 18 differs"),
        "{verdict}"
    );
}

#[test]
fn refuses_what_it_cannot_compare() {
    let dir = tempfile::tempdir().unwrap();
    let o = verify(dir.path(), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("spec.json"), "{}", stderr(&o));

    let run = recorded_run(dir.path(), "verify-short");
    let o = verify(&run, &["--iterations", "19"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("18 iterations"), "{}", stderr(&o));
}

/// A run that diverged has no result.json; verify checks the iterations it recorded (and a
/// changed bit among them is still found).
#[test]
fn a_diverged_run_reproduces_up_to_its_divergence() {
    let dir = tempfile::tempdir().unwrap();
    let name = "verify-diverged";
    // The rate ramps to 1e9 over the warmup: the loss overflows within a few iterations.
    let toml = tiny_job(name, METHODS[1].1).replace("base_lr = 0.2", "base_lr = 1e9");
    assert!(toml.contains("base_lr = 1e9"));
    let spec = write_spec(dir.path(), name, &toml);
    let run = dir.path().join(name);
    let o = gncctl_output(&[
        "run",
        spec.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(
        stderr(&o).contains("diverged at iteration"),
        "{}",
        stderr(&o)
    );
    assert!(!run.join("result.json").exists());
    let recorded = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"kind\":\"iter\""))
        .count();
    assert!(recorded >= 2, "{recorded} iterations recorded");

    let o = verify(&run, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("reproduced: {recorded} iterations bit for bit"))
            && stderr(&o).contains("has no result.json"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );

    bump_one_ulp(&run, 1, "loss");
    let o = verify(&run, &[]);
    assert_eq!(o.status.code(), Some(NEGATIVE), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("iteration 1: loss differs"),
        "{}",
        stderr(&o)
    );
}
