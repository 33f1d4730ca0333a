//! Reproducibility regression: the final parameter hash of a tiny job of each method, pinned.
//!
//! A change in these hashes means the arithmetic of training changed: the math, the order
//! of a reduction, the data order, the initialisation, or the library versions. If that was
//! deliberate, print the new hashes with
//!
//!     GNC_PRINT_GOLDEN=1 cargo test --release -p gnc-tests --test golden_hashes -- --nocapture
//!
//! update the constants below, and say in the commit message why every run's bits changed.
//! The hashes are those of the portable reproducibility level (`gnc_proto::repro`), the same on
//! every x86-64 machine with AVX2 and FMA, Intel or AMD: libtorch's vendor-independent kernels
//! pinned at AVX2 and one intra-op thread (worker/src/pin.rs), gnc's own matrix products and
//! square roots where libtorch's would come from MKL (worker/src/kernels). The five MLP jobs'
//! hashes are also what an Intel Xeon (family 6, model 207) computed with MKL pinned to
//! `AVX2,STRICT` (`../shared/repro/README.md`); an AMD EPYC's MKL gave other bits there, and
//! gives these now. If this test fails, run `tests/fingerprint.rs` of the worker crate: it names
//! the kernel this machine computes differently.

use gnc_tests::*;

const GOLDEN: [(&str, &str); 7] = [
    (
        "baseline",
        "24a2e05b0e8f8ae857fee5c4cc901e6e1c06b80b25987c1c2d957758d3ea5693",
    ),
    (
        "gnc",
        "b941ee104373ae38790bfd57d077c8c0dcdb4ac98d042e467436544d6e84089c",
    ),
    (
        "rnc",
        "5102d8594f4b58916c15111c84175a39b46d4628c09c22326cec5e212386f27c",
    ),
    (
        "gnc_to_rnc",
        "febcbb070b6ffc8b43fc2446e6128e0697c35ffedf933fe666c16e86c9f1461a",
    ),
    (
        "noise_enhancement",
        "cb03a956834db46dce14bb4d91b5129cccdefd0e7dfa644626f41fdccd44cf97",
    ),
    (
        "cnn_gnc",
        "7c869ec0f9d2b5dfbc657e24f1d4e1e81a23cd29f07ecd963e7a5c4cdb1edc26",
    ),
    (
        "adam",
        "43131ee5df1a7243384435f17f402e60fd078c6ce976b4f5602ceab43324f5ff",
    ),
];

fn final_hash(name: &str, toml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), name, toml);
    let summary = run_job(&spec, &dir.path().join("out"), &[]);
    summary["params_sha256"].as_str().unwrap().to_string()
}

#[test]
fn final_hashes_of_tiny_jobs_are_pinned() {
    let mut actual: Vec<(String, String)> = METHODS
        .iter()
        .map(|(method, table)| {
            let toml = tiny_job(&format!("golden-{method}"), table);
            (method.to_string(), final_hash(method, &toml))
        })
        .collect();
    let cnn = tiny_cnn_job("golden-cnn", "kind = \"gnc\"\nalpha = 0.1");
    actual.push(("cnn_gnc".into(), final_hash("cnn", &cnn)));
    // Adam divides by square roots, gnc's own at the portable level (worker/src/kernels): this
    // pins the optimiser's path across machines too.
    let adam = tiny_job("golden-adam", "kind = \"baseline\"")
        .replace(
            "kind = \"momentum\"\nmomentum = 0.9\nweight_decay = 1e-4",
            "kind = \"adam\"",
        )
        .replace("base_lr = 0.2", "base_lr = 0.01");
    assert!(adam.contains("adam") && adam.contains("base_lr = 0.01"));
    actual.push(("adam".into(), final_hash("adam", &adam)));
    if std::env::var_os("GNC_PRINT_GOLDEN").is_some() {
        for (name, hash) in &actual {
            println!("    (\"{name}\", \"{hash}\"),");
        }
    }
    let mismatches: Vec<String> = GOLDEN
        .iter()
        .zip(&actual)
        .filter(|((_, pinned), (_, got))| pinned != got)
        .map(|((name, pinned), (_, got))| format!("{name}: pinned {pinned}, got {got}"))
        .collect();
    assert!(
        mismatches.is_empty(),
        "final hashes changed (see this file's header for how to update deliberately):\n{}",
        mismatches.join("\n")
    );
}
