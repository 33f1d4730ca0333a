//! Reproducibility levels and keys: every run records what its bits depend on; `gncctl verify`
//! and `gncctl doctor` compare keys first and say in words why bits may differ (another level,
//! a native run from another CPU model), not only that a hash differs.

use std::path::{Path, PathBuf};

use gnc_tests::{METHODS, gncctl_output, rewrite_field, run_job, text, tiny_job, write_spec};

/// gncctl's exit status for a negative answer.
const NEGATIVE: i32 = 3;

/// A finished tiny GNC run at `level` in `dir/name`.
fn recorded_run(dir: &Path, name: &str, level: &str) -> PathBuf {
    let toml = format!(
        "reproducibility = \"{level}\"\n{}",
        tiny_job(name, METHODS[1].1)
    );
    let spec = write_spec(dir, name, &toml);
    let out = dir.join(name);
    run_job(&spec, &out, &[]);
    out
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Rewrites result.json's key as if the run had been recorded on another processor.
fn move_to_another_cpu(run: &Path) {
    let path = run.join("result.json");
    let mut result = read_json(&path);
    result["reproducibility"]["cpu"] = serde_json::json!({
        "vendor": "HygonGenuine", "family": 24, "model": 2,
        "name": "Hygon C86 7185 32-core Processor", "isa": "avx2"
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&result).unwrap()).unwrap();
}

const OTHER_CPU: &str = "recorded in native mode on Hygon C86 7185 32-core Processor (HygonGenuine family 24 model 2); this machine is ";

#[test]
fn runs_and_checkpoints_record_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let run = recorded_run(dir.path(), "key-portable", "portable");
    let key = &read_json(&run.join("result.json"))["reproducibility"];
    assert_eq!(key["level"], "portable");
    assert_eq!(key["isa"], "avx2");
    assert!(
        key["cpu"]["vendor"].as_str().is_some_and(|v| !v.is_empty()),
        "{key}"
    );
    assert!(
        key["libtorch"].as_str().unwrap().starts_with("2.11"),
        "{key}"
    );
    let manifest = read_json(&run.join("checkpoints/ckpt-000000016.json"));
    assert_eq!(&manifest["reproducibility"], key);
    // Portable: the spec hash is that of a spec without the key (the default is left out).
    let native = recorded_run(dir.path(), "key-native", "native");
    assert_eq!(
        read_json(&native.join("result.json"))["reproducibility"]["level"],
        "native"
    );
}

#[test]
fn a_native_run_from_another_cpu_is_explained_by_verify_and_doctor() {
    let dir = tempfile::tempdir().unwrap();
    let run = recorded_run(dir.path(), "native-moved", "native");
    move_to_another_cpu(&run);

    // doctor says it cannot be expected to reproduce, and why.
    let o = gncctl_output(&["doctor", run.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(NEGATIVE), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "cannot be expected to reproduce here: {OTHER_CPU}"
        )),
        "{}",
        text(&o)
    );

    // verify re-runs it (here it is in fact the same machine, so it reproduces) and says so.
    let o = gncctl_output(&["verify", run.to_str().unwrap(), "--iterations", "4"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("note: {OTHER_CPU}")),
        "{}",
        text(&o)
    );

    // When the bits do differ, the verdict leads with the reason.
    let path = run.join("result.json");
    let mut result = read_json(&path);
    result["params_sha256"] = serde_json::json!("0".repeat(64));
    std::fs::write(&path, serde_json::to_vec_pretty(&result).unwrap()).unwrap();
    let o = gncctl_output(&["verify", run.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(NEGATIVE), "{}", text(&o));
    let verdict: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let message = verdict["message"].as_str().unwrap();
    assert!(message.starts_with(OTHER_CPU), "{message}");
    assert!(
        message.contains("bits are expected to differ. not reproduced:"),
        "{message}"
    );
    assert_eq!(verdict["key_differences"].as_array().unwrap().len(), 1);
}

#[test]
fn verifying_at_another_level_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let run = recorded_run(dir.path(), "native-run", "native");
    let verify = || {
        gncctl_output(&[
            "verify",
            run.to_str().unwrap(),
            "--iterations",
            "4",
            "--level",
            "portable",
        ])
    };
    let level = "recorded at the native level; this run uses the portable level";
    let explained = format!("{level}; bits are expected to differ. not reproduced: ");
    // Whether the two levels give this tiny model the same bits depends on the machine: on AMD
    // EPYC, MKL's matrix products round unlike gnc's; on an Intel Xeon (family 6 model 207)
    // MKL's path for matrices this small is the same in-order fma chain as gnc's, and the
    // first iterations agree bit for bit. Either way the verdict names the level.
    let o = verify();
    match o.status.code() {
        Some(0) => {
            assert!(text(&o).contains(&format!("note: {level}")), "{}", text(&o));
            assert!(
                text(&o).contains("reproduced: 4 iterations"),
                "{}",
                text(&o)
            );
        }
        Some(NEGATIVE) => assert!(text(&o).contains(&explained), "{}", text(&o)),
        _ => panic!("gncctl verify failed: {}", text(&o)),
    }
    // A difference, on any machine, is put down to the level first. The tampering is at the
    // first field verify compares, so it is the first difference whatever the levels compute
    // here (on AMD Zen 5, MKL's AVX-512 products already change iteration 0); a negated loss
    // is one no re-run gives (a one-ulp bump could undo a native/portable difference).
    rewrite_field(&run, 0, "loss", |loss| -loss);
    let o = verify();
    assert_eq!(o.status.code(), Some(NEGATIVE), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{explained}iteration 0: loss differs")),
        "{}",
        text(&o)
    );
}

#[test]
fn doctor_reports_the_key_and_a_portable_run_it_can_reproduce() {
    let dir = tempfile::tempdir().unwrap();
    let run = recorded_run(dir.path(), "doctor-portable", "portable");
    let o = gncctl_output(&["doctor", run.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["key"]["level"], "portable");
    assert_eq!(report["kernel_differences"].as_array().unwrap().len(), 0);
    assert_eq!(report["run"]["reproducible"], true);
    assert!(report["fingerprint"]["gnc sqrt|x|"].is_array(), "{report}");

    let o = gncctl_output(&["doctor"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("portable runs reproduce here"),
        "{}",
        text(&o)
    );
}
