//! `gncctl analyze`: the papers' analyses of a run's end point (top Hessian eigenvalue,
//! Keskar's ε-sharpness, the loss on the line to another run's end point), on real runs of
//! the real binaries; and the gradient noise scale's estimates in every iteration record.

use std::path::Path;

use gnc_tests::*;

fn tiny(name: &str, method: &str) -> String {
    teacher_student_job(&TinyJob {
        name,
        method,
        seed: 5,
        train_examples: 512,
        test_examples: 64,
        workers: 8,
        small_batch: 4,
        parallel: "",
    })
}

fn analyze(run: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "analyze",
        run.to_str().unwrap(),
        "--json",
        "--examples",
        "256",
    ];
    args.extend_from_slice(extra);
    gncctl_output(&args)
}

fn analysis(run: &Path, extra: &[&str]) -> serde_json::Value {
    let o = analyze(run, extra);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn analyze_measures_the_end_point_without_touching_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("baseline"), dir.path().join("gnc"));
    let summary = run_job(
        &write_spec(dir.path(), "an_a", &tiny("an_a", METHODS[0].1)),
        &a,
        &[],
    );
    run_job(
        &write_spec(dir.path(), "an_b", &tiny("an_b", METHODS[1].1)),
        &b,
        &[],
    );
    let before = std::fs::read(a.join("result.json")).unwrap();
    let flags = [
        "--power-iterations",
        "12",
        "--epsilon",
        "1e-3",
        "--ascent-steps",
        "5",
        "--towards",
        b.to_str().unwrap(),
    ];
    let first = analysis(&a, &flags);
    assert_eq!(first["iteration"], summary["iterations"]);
    let loss = first["loss"].as_f64().unwrap();
    assert!(loss.is_finite() && loss > 0.0, "{first}");
    let top = &first["top_eigenvalue"];
    let value = top["value"].as_f64().unwrap();
    assert!(value.is_finite() && value > 0.0, "{top}");
    assert!(!top["history"].as_array().unwrap().is_empty());
    let sharp = &first["epsilon_sharpness"][0];
    assert!(sharp["sharpness"].as_f64().unwrap() >= 0.0, "{sharp}");
    assert!(sharp["max_loss"].as_f64().unwrap() >= loss, "{sharp}");
    // The line: α = 0 is this end point, α = 1 the other run's (whose own analysis agrees).
    let points = first["line"]["points"].as_array().unwrap();
    assert_eq!(points.len(), 31);
    let at = |alpha: f64| {
        points
            .iter()
            .find(|p| p["alpha"].as_f64().unwrap() == alpha)
            .unwrap()["loss"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(at(0.0), loss);
    let other = analysis(
        &b,
        &[
            "--power-iterations",
            "0",
            "--epsilon",
            "1e-3",
            "--ascent-steps",
            "0",
        ],
    );
    assert_eq!(at(1.0), other["loss"].as_f64().unwrap());
    assert!(other["top_eigenvalue"].is_null());
    // The Hessian-vector step: 1e-3 of ‖x‖ (at least 1) unless asked; at a tenth of it, a
    // step ten times smaller.
    let step = top["step"].as_f64().unwrap();
    let finer = analysis(
        &a,
        &[
            "--power-iterations",
            "4",
            "--hvp-step",
            "1e-4",
            "--ascent-steps",
            "0",
        ],
    );
    let finer_step = finer["top_eigenvalue"]["step"].as_f64().unwrap();
    assert!(
        (finer_step * 10.0 / step - 1.0).abs() < 1e-12,
        "{step} {finer_step}"
    );
    assert!(
        finer["top_eigenvalue"]["value"]
            .as_f64()
            .unwrap()
            .is_finite()
    );
    // Noise anisotropy from the GNC run's per-worker gradients, beside RNC's, for every
    // layer; the baseline's checkpoint keeps no per-worker gradients.
    assert!(first["anisotropy"].is_null(), "{first}");
    let anisotropy = &other["anisotropy"];
    assert_eq!(anisotropy["workers"], 8);
    let (gnc, rnc) = (
        anisotropy["gnc"].as_array().unwrap(),
        anisotropy["rnc"].as_array().unwrap(),
    );
    assert_eq!(gnc.len(), rnc.len());
    assert!(!gnc.is_empty());
    for layer in gnc.iter().chain(rnc) {
        let kappa = layer["kappa"].as_f64().unwrap();
        assert!(kappa.is_finite() && kappa >= 1.0, "{layer}");
    }
    // The M perturbed models' losses (Fig. 4b–c): one per worker, around the end point's.
    assert!(first["perturbed"].is_null(), "{first}");
    for noise in ["gnc", "rnc"] {
        let spread = &other["perturbed"][noise];
        assert_eq!(spread["losses"].as_array().unwrap().len(), 8, "{spread}");
        let (min, max) = (
            spread["min"].as_f64().unwrap(),
            spread["max"].as_f64().unwrap(),
        );
        assert!(min.is_finite() && min <= max && min > 0.0, "{spread}");
    }
    // Reproducible to the bit, written to analysis.json; the run itself unchanged.
    let mut again = analysis(&a, &flags);
    let mut first = first;
    for v in [&mut first, &mut again] {
        v["seconds"] = serde_json::Value::Null;
    }
    assert_eq!(first, again);
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("analysis.json")).unwrap()).unwrap();
    assert_eq!(written["loss"], first["loss"]);
    assert_eq!(std::fs::read(a.join("result.json")).unwrap(), before);
    // gncctl plot draws the line against α; a run analysed without --towards has none.
    let svg = dir.path().join("line.svg");
    let plot = |run: &Path| {
        gncctl_output(&[
            "plot",
            run.to_str().unwrap(),
            "-o",
            svg.to_str().unwrap(),
            "--metric",
            "analysis-line",
        ])
    };
    let o = plot(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("loss on the line between two end points"));
    assert!(text.contains("α (0: this run"), "the x axis is α");
    let o = plot(&b);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("--towards"), "{stderr}");
}

#[test]
fn analyze_names_what_it_cannot_analyse() {
    let dir = tempfile::tempdir().unwrap();
    let o = analyze(&dir.path().join("nothing"), &[]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("nothing/spec.json (the run's job spec)"),
        "{stderr}"
    );
    let o = analyze(&dir.path().join("nothing"), &["--hvp-step", "0"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains("\"0\" is not a positive number"),
        "{stderr}"
    );
    // A run with a different model cannot be on the same line.
    let a = dir.path().join("a");
    run_job(
        &write_spec(dir.path(), "an_c", &tiny("an_c", METHODS[0].1)),
        &a,
        &[],
    );
    let wider = tiny("an_d", METHODS[0].1).replacen("hidden = [", "hidden = [3, ", 1);
    assert_ne!(
        wider,
        tiny("an_d", METHODS[0].1),
        "the job has hidden layers"
    );
    let d = dir.path().join("d");
    run_job(&write_spec(dir.path(), "an_d", &wider), &d, &[]);
    let o = analyze(
        &a,
        &["--towards", d.to_str().unwrap(), "--power-iterations", "0"],
    );
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("that run trained another model"),
        "{stderr}"
    );
}

/// Every iteration records the two estimates whose window ratio is the gradient noise scale
/// B_simple; they are positive on average and their ratio is a batch size.
#[test]
fn iteration_records_carry_the_gradient_noise_scale_estimates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    run_job(
        &write_spec(dir.path(), "an_ns", &tiny("an_ns", METHODS[0].1)),
        &out,
        &[],
    );
    let records: Vec<serde_json::Value> = iteration_lines(&out)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!records.is_empty());
    let (mut g, mut t) = (0.0, 0.0);
    for r in &records {
        g += r["grad_sq_estimate"].as_f64().expect("recorded for M = 8");
        t += r["trace_estimate"].as_f64().expect("recorded for M = 8");
    }
    assert!(g > 0.0 && t > 0.0, "{g} {t}");
    let b_simple = t / g;
    assert!(b_simple.is_finite() && b_simple > 0.0, "{b_simple}");
}
