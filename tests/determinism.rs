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

/// The noise-enhancement paper's protocol (`schedule.loss_trigger`): the rate halves once the
/// windowed training loss reaches L*, the run ends once it falls below L**, and the iterations
/// it took are reported; the bits are those of the run without the trigger up to the halving,
/// and the same after a pause and resume and in worker processes.
#[test]
fn the_loss_trigger_halves_the_rate_then_ends_the_run_the_same_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let job = |name: &str| {
        teacher_student_job(&TinyJob {
            name,
            method: METHODS[0].1,
            seed: 6,
            train_examples: 512,
            test_examples: 64,
            workers: 8,
            small_batch: 4,
            parallel: "",
        })
    };
    let plain_spec = write_spec(dir.path(), "lt_plain", &job("lt_plain"));
    let plain_out = dir.path().join("plain");
    let plain = run_job(&plain_spec, &plain_out, &[]);
    let records: Vec<serde_json::Value> = iteration_lines(&plain_out)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let losses: Vec<f64> = records
        .iter()
        .map(|r| r["loss"].as_f64().unwrap())
        .collect();
    let window = 4;
    let mean_at = |t: usize| losses[t + 1 - window..=t].iter().sum::<f64>() / window as f64;
    // L* = L** = the plain run's windowed loss a third of the way through: the rate halves
    // where the window first reaches it (≤), and the run ends where a later window falls
    // below it (<), which the noisy plateau soon gives.
    let n = losses.len();
    let (halve, stop) = (mean_at(n / 3), mean_at(n / 3));
    let triggered = job("lt_plain").replace(
        "decay = {",
        &format!(
            "loss_trigger = {{ halve_below = {halve:e}, stop_below = {stop:e}, window = {window} }}\ndecay = {{"
        ),
    );
    let spec = write_spec(dir.path(), "lt", &triggered);
    let out = dir.path().join("triggered");
    let summary = run_job(&spec, &out, &[]);
    assert_eq!(summary["complete"], true, "{summary}");
    let converged = summary["converged_at"].as_u64().expect("it converged");
    assert_eq!(summary["iterations"].as_u64(), Some(converged));
    assert!(
        converged < plain["total_iterations"].as_u64().unwrap(),
        "{summary}"
    );
    // Up to the halving (after the iteration whose window first reaches L*), the plain run's
    // bits; then half its rate.
    let halved = (window - 1..n).find(|&t| mean_at(t) <= halve).unwrap() + 1;
    let lines = iteration_lines(&out);
    let plain_lines = iteration_lines(&plain_out);
    assert_eq!(lines[..halved], plain_lines[..halved]);
    let record: serde_json::Value = serde_json::from_str(&lines[halved]).unwrap();
    assert_eq!(
        record["lr"].as_f64().unwrap(),
        0.5 * records[halved]["lr"].as_f64().unwrap()
    );
    // Paused at the halving (the checkpoint carries it), resumed: the same end; in worker
    // processes too.
    let paused = dir.path().join("paused");
    let first = run_job(&spec, &paused, &["--stop-after", &halved.to_string()]);
    assert_eq!(first["complete"], false);
    let resumed = run_job(&spec, &paused, &["--resume"]);
    assert_eq!(resumed["converged_at"].as_u64(), Some(converged));
    assert_eq!(hash(&resumed), hash(&summary));
    let processes = run_job(&spec, &dir.path().join("cpu2"), &["--devices", "cpu:2"]);
    assert_eq!(processes["converged_at"].as_u64(), Some(converged));
    assert_eq!(hash(&processes), hash(&summary));
}
