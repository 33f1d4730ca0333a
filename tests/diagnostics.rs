//! `[diagnostics]` (GNC §3, §A.6) on real runs of a real Fashion-MNIST subset: measured on
//! copies, so a run's bits, records and spec hash are the same with and without them; the
//! measured gradient is the iteration's own; a paused and resumed run writes the same records;
//! and a placement that splits the workers over processes is refused by name.

use std::path::Path;

use gnc_tests::*;

/// An MLP on the first 512 Fashion-MNIST training images, M = 4 workers of b = 16: 8
/// iterations per epoch, 2 epochs; `diagnostics` is the `[diagnostics]` table's body, if any.
fn job(name: &str, method: &str, diagnostics: Option<&str>) -> String {
    let diagnostics = diagnostics.map_or(String::new(), |d| format!("[diagnostics]\n{d}\n"));
    format!(
        r#"
name = "{name}"
seed = 9
output_dir = "runs/{name}"

[data]
dataset = "fashion-mnist"
root = "data/fashion-mnist"
train_subset = 512
test_subset = 128

[model]
kind = "mlp"
hidden = [24]

[parallel]
workers = 4
small_batch = 16

[method]
{method}

[optimizer]
kind = "momentum"
momentum = 0.9
weight_decay = 1e-4

[schedule]
epochs = 2
base_lr = 0.1
decay = {{ kind = "step", milestones = [1.5], factor = 0.1 }}

[eval]
every_epochs = 1

[checkpoint]
every_iterations = 0

{diagnostics}"#
    )
}

const EVERY_THIRD: &str = "every_iterations = 3\nexamples = 256\nperturbed_examples = 64";

fn records(out: &Path, kind: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == kind)
        .collect()
}

/// Every method: the same final hash, spec hash and iteration records with the diagnostics
/// as without; a record at every third iteration whose gradient norm is the iteration
/// record's, bit for bit; and the measurements each method's noise allows.
#[test]
fn diagnostics_never_change_a_bit_and_measure_the_iterations_own_gradient() {
    let dir = tempfile::tempdir().unwrap();
    for (name, method) in METHODS {
        // GNC→RNC switches after the first epoch: GNC's noise, then RNC's.
        let method = method.replace("switch_epoch = 2", "switch_epoch = 1");
        let plain = dir.path().join(format!("{name}-plain"));
        let measured = dir.path().join(format!("{name}-measured"));
        let a = run_job(
            &write_spec(dir.path(), &format!("{name}-p"), &job("dg", &method, None)),
            &plain,
            &[],
        );
        let b = run_job(
            &write_spec(
                dir.path(),
                &format!("{name}-m"),
                &job("dg", &method, Some(EVERY_THIRD)),
            ),
            &measured,
            &[],
        );
        assert_eq!(
            hash(&a),
            hash(&b),
            "{name}: the diagnostics changed the bits"
        );
        assert_eq!(a["spec_hash"], b["spec_hash"], "{name}");
        assert_eq!(
            iteration_lines(&plain),
            iteration_lines(&measured),
            "{name}"
        );
        assert!(records(&plain, "diagnostics").is_empty());

        let iters = records(&measured, "iter");
        let diagnostics = records(&measured, "diagnostics");
        let at: Vec<u64> = diagnostics
            .iter()
            .map(|d| d["iter"].as_u64().unwrap())
            .collect();
        assert_eq!(at, vec![0, 3, 6, 9, 12, 15], "{name}");
        for d in &diagnostics {
            let t = d["iter"].as_u64().unwrap() as usize;
            // The measured g~ is the one the iteration used (the same f64 in JSON).
            assert_eq!(d["grad_norm"], iters[t]["grad_norm"], "{name} at {t}");
            assert_eq!(d["lr"], iters[t]["lr"], "{name} at {t}");
            let cosine = d["predictiveness"].as_f64().unwrap();
            assert!((-1.0..=1.0).contains(&cosine), "{name}: {d}");
            assert!(d["full_loss"].as_f64().unwrap() > 0.0);
            assert_eq!(d["examples"], 256);
            let s = &d["smoothness"];
            assert_eq!(s["steps"].as_array().unwrap().len(), 8);
            assert!(s["beta"].as_f64().unwrap() > 0.0, "{name}: {s}");
            assert!(s["loss_range"].as_f64().unwrap() >= 0.0, "{name}: {s}");
            let gnc_phase = name == "gnc" || (name == "gnc_to_rnc" && t < 8);
            let noisy = matches!(name, "gnc" | "rnc" | "gnc_to_rnc");
            // κ needs saved gradients: GNC after its first iteration.
            assert_eq!(
                d.get("anisotropy").is_some(),
                gnc_phase && t > 0,
                "{name} at {t}"
            );
            let perturbed = d.get("perturbed");
            assert_eq!(perturbed.is_some(), noisy, "{name} at {t}");
            if let Some(p) = perturbed {
                assert_eq!(p["rnc"]["losses"].as_array().unwrap().len(), 4);
                assert_eq!(p.get("gnc").is_some(), gnc_phase && t > 0, "{name} at {t}");
                // Each perturbation's size: RNC's unit filter directions make it α η on
                // every filter; GNC's follows its noise, and is positive.
                let alpha_lr = p["alpha"].as_f64().unwrap() * p["lr"].as_f64().unwrap();
                let sizes = p["rnc"]["relative_norms"].as_array().unwrap();
                assert_eq!(sizes.len(), 4, "{name} at {t}");
                for size in sizes {
                    let size = size.as_f64().unwrap();
                    assert!((size / alpha_lr - 1.0).abs() < 1e-4, "{name} at {t}: {p}");
                }
                if let Some(gnc) = p.get("gnc") {
                    let sizes = gnc["relative_norms"].as_array().unwrap();
                    assert!(sizes.iter().all(|s| s.as_f64().unwrap() > 0.0), "{p}");
                }
                // ‖x_i − x‖², the curvature's denominator: one per worker, positive.
                for spread in [Some(&p["rnc"]), p.get("gnc")].into_iter().flatten() {
                    let squared = spread["squared_norms"].as_array().unwrap();
                    assert_eq!(squared.len(), 4, "{name} at {t}");
                    assert!(squared.iter().all(|s| s.as_f64().unwrap() > 0.0), "{p}");
                }
            }
            if let Some(a) = d.get("anisotropy") {
                // fc0.weight, fc0.bias, fc1.weight, fc1.bias.
                assert_eq!(a["gnc"].as_array().unwrap().len(), 4);
                let kappa = a["gnc"][0]["kappa"].as_f64().unwrap();
                assert!(kappa >= 1.0, "{name}: {a}");
            }
        }
    }
}

/// Paused after 7 iterations and resumed: the same records (wall times aside) as the run
/// that never stopped, diagnostics included (the measurement of iteration 7 is taken once).
#[test]
fn a_resumed_run_writes_the_same_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "dr",
        &job("dr", METHODS[1].1, Some(EVERY_THIRD)),
    );
    let (paused, straight) = (dir.path().join("paused"), dir.path().join("straight"));
    let first = run_job(&spec, &paused, &["--stop-after", "7"]);
    assert_eq!(first["complete"], false);
    let resumed = run_job(&spec, &paused, &["--resume"]);
    let whole = run_job(&spec, &straight, &[]);
    assert_eq!(hash(&resumed), hash(&whole));
    let lines = |out: &Path| -> Vec<String> {
        std::fs::read_to_string(out.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .filter(|l| !l.contains("\"kind\":\"final\""))
            .map(without_seconds)
            .collect()
    };
    assert_eq!(lines(&paused), lines(&straight));
}

/// Worker processes each hold a block of the workers' saved gradients: refused by name
/// before training.
#[test]
fn diagnostics_in_worker_processes_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "dp",
        &job("dp", METHODS[1].1, Some(EVERY_THIRD)),
    );
    let out = dir.path().join("out");
    let o = gncctl_output(&[
        "run",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--devices",
        "cpu:2",
    ]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("diagnostics") && stderr.contains("in-process"),
        "{stderr}"
    );
}

/// `gncctl plot` draws the diagnostics' metrics, one panel each, and names the missing
/// `[diagnostics]` section when a run has none.
#[test]
fn plot_draws_the_diagnostics_and_says_where_they_come_from() {
    let dir = tempfile::tempdir().unwrap();
    let (measured, plain) = (dir.path().join("measured"), dir.path().join("plain"));
    let spec = |name: &str, d| write_spec(dir.path(), name, &job(name, METHODS[1].1, d));
    run_job(&spec("pm", Some(EVERY_THIRD)), &measured, &[]);
    run_job(&spec("pp", None), &plain, &[]);
    let svg = dir.path().join("d.svg");
    let metrics = [
        "predictiveness",
        "beta-smoothness",
        "kappa-gnc",
        "perturbed-spread-gnc",
    ];
    let mut args = vec![
        "plot",
        measured.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
    ];
    for m in metrics {
        args.extend(["--metric", m]);
    }
    let o = gncctl_output(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("height=\"1360\""), "four panels of 340 px");
    for title in [
        "full-gradient predictiveness (cosine)",
        "κ of GNC noise (median over layers)",
    ] {
        assert!(text.contains(title), "no {title:?}");
    }
    let o = gncctl_output(&[
        "plot",
        plain.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
        "--metric",
        "predictiveness",
    ]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("[diagnostics]") && stderr.contains("predictiveness"),
        "{stderr}"
    );
}
