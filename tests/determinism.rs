//! The determinism contract of one process (DESIGN.md §4): the same spec gives the same bits
//! on every run and for any thread count, and a run stopped and resumed from its checkpoint
//! ends with the same bits as one that never stopped — for every method.

use gnc_tests::*;

fn hash(summary: &serde_json::Value) -> String {
    summary["params_sha256"].as_str().unwrap().to_string()
}

/// Straight run on 1 thread, the same spec again on 2 threads, and a run stopped after
/// `stop` iterations then resumed: all three agree on the hash and the loss sequence.
fn check(name: &str, toml: &str, stop: &str) {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), name, toml);
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let straight = run_job(&spec, &a, &["--threads", "1"]);
    let again = run_job(&spec, &b, &["--threads", "2"]);
    assert_eq!(
        hash(&straight),
        hash(&again),
        "{name}: 1 thread vs 2 threads"
    );
    assert_eq!(
        iteration_lines(&a),
        iteration_lines(&b),
        "{name}: loss sequence"
    );

    let stopped = run_job(&spec, &c, &["--stop-after", stop]);
    assert_eq!(stopped["complete"], false);
    assert_ne!(hash(&stopped), hash(&straight));
    let resumed = run_job(&spec, &c, &["--resume"]);
    assert_eq!(resumed["complete"], true);
    assert_eq!(
        hash(&resumed),
        hash(&straight),
        "{name}: stop at {stop} + resume"
    );
    assert_eq!(
        iteration_lines(&a),
        iteration_lines(&c),
        "{name}: resumed loss sequence"
    );
}

#[test]
fn every_method_is_reproducible_across_threads_and_resume() {
    for (method, table) in METHODS {
        // Stop at 7 of 18 iterations: not on a checkpoint boundary (every 4), and for
        // gnc_to_rnc before its switch at epoch 2 (iteration 12).
        check(method, &tiny_job(&format!("det-{method}"), table), "7");
    }
}

#[test]
fn gnc_to_rnc_resumes_across_its_switch() {
    let (_, table) = METHODS[3];
    check("switch", &tiny_job("det-switch", table), "13");
}

#[test]
fn cnn_with_batchnorm_lars_and_polynomial_decay_is_reproducible() {
    check(
        "cnn-gnc",
        &tiny_cnn_job("det-cnn", "kind = \"gnc\"\nalpha = 0.1"),
        "6",
    );
}

#[test]
fn adam_and_noise_enhancement_resume_exactly() {
    let toml = tiny_job("det-adam", METHODS[4].1).replace(
        "kind = \"momentum\"\nmomentum = 0.9\nweight_decay = 1e-4",
        "kind = \"adam\"",
    );
    assert!(toml.contains("adam"));
    check(
        "adam",
        &toml.replace("base_lr = 0.2", "base_lr = 0.01"),
        "5",
    );
}

/// Ctrl-C pauses an in-process `gncctl run`: it checkpoints at the next iteration boundary
/// and ends there (the same loop and requests as a worker group), and `--resume` ends with the
/// bits of the run that never stopped.
#[test]
fn ctrl_c_pauses_an_in_process_run_and_resume_keeps_the_bits() {
    let dir = tempfile::tempdir().unwrap();
    let toml = teacher_student_job(&TinyJob {
        name: "ctrl_c",
        method: METHODS[0].1,
        seed: 4,
        train_examples: 16384,
        test_examples: 64,
        workers: 8,
        small_batch: 4,
        parallel: "threads = 1",
    });
    let spec = write_spec(dir.path(), "ctrl_c", &toml);
    let (paused, straight) = (dir.path().join("paused"), dir.path().join("straight"));
    let child = gncctl()
        .args(["run", spec.to_str().unwrap(), "--json", "--out"])
        .arg(&paused)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once it trains, interrupt it.
    let metrics = paused.join("metrics.jsonl");
    let began = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 2 {
        assert!(
            began.elapsed().as_secs() < 60,
            "no iteration within a minute"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("stopping at the next iteration boundary"),
        "{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["complete"], false, "{summary}");
    let stopped_at = summary["iterations"].as_u64().unwrap();
    assert!(
        paused
            .join(format!("checkpoints/ckpt-{stopped_at:09}.json"))
            .is_file()
    );

    let resumed = run_job(&spec, &paused, &["--resume"]);
    assert_eq!(resumed["complete"], true);
    assert_eq!(hash(&resumed), hash(&run_job(&spec, &straight, &[])));
}
