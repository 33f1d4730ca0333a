//! The determinism contract of one process (DESIGN.md §4): the same spec gives the same bits
//! on every run and for any thread count, and a run stopped and resumed from its checkpoint
//! ends with the same bits as one that never stopped — for every method.

use gnc_tests::*;

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

/// Ctrl-C pauses an in-process `gncctl run` (the same loop and requests as a worker group),
/// and `--resume` ends with the bits of the run that never stopped.
#[test]
fn ctrl_c_pauses_an_in_process_run_and_resume_keeps_the_bits() {
    ctrl_c_pauses_and_resume_keeps_the_bits("ctrl_c", &["--threads", "1"]);
}
