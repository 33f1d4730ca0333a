//! Reproducibility regression: the final parameter hash of a tiny job of each method, pinned.
//!
//! A change in these hashes means the arithmetic of training changed: the math, the order
//! of a reduction, the data order, the initialisation, or the library versions. If that was
//! deliberate, print the new hashes with
//!
//!     GNC_PRINT_GOLDEN=1 cargo test --release -p gnc-tests --test golden_hashes -- --nocapture
//!
//! update the constants below, and say in the commit message why every run's bits changed.
//! The hashes hold on any x86-64 Linux machine with AVX2: gncctl pins libtorch's CPU kernels
//! at the AVX2 level and to one intra-op thread (worker/src/pin.rs).

use gnc_tests::*;

const GOLDEN: [(&str, &str); 6] = [
    (
        "baseline",
        "522d6d4fd1e454726a61338aa3954783262313bf4c2ff74fc7b7312299c05bed",
    ),
    (
        "gnc",
        "ba3bf2f2dd66e90f113b01610549117d6b7ad7dc925dacc48c45aece19a71364",
    ),
    (
        "rnc",
        "51f566f63a24276a874a6ae8695c80ae41ee1d03b01d956054cd4d600283b39b",
    ),
    (
        "gnc_to_rnc",
        "d463a0b2976fddaca8b83baa68dd9ec38fca8e37cca4f2eb60492bc54bb00be6",
    ),
    (
        "noise_enhancement",
        "6acb6205e4c0b88d97802ed836ada519c82ba4a42439e151a4e236c9fad8153f",
    ),
    (
        "cnn_gnc",
        "aa954e5d2e45129962b27b7c02c945e852f82adef6289eafdc51f014752d5769",
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
