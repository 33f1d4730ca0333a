//! The bundled examples: every spec parses and validates, and the demo job (the README's
//! main job) trains real Fashion-MNIST past its accuracy target to its pinned hash.

use gnc_proto::JobSpec;
use gnc_tests::*;

/// The demo's final hash at the portable level, the same on Intel and AMD machines; see
/// golden_hashes.rs for when and how to update a pin.
const DEMO_HASH: &str = "173e8af1b46462eb9f8a8ea061e3f3f7157f4d043e53659627385e3f7f0039aa";

fn example_specs(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            example_specs(&path, found);
        } else if path.extension().is_some_and(|e| e == "toml") {
            found.push(path);
        }
    }
}

#[test]
fn every_example_spec_is_valid() {
    // Specs name data relative to the repository root, where users run them.
    std::env::set_current_dir(repo_root()).unwrap();
    let mut specs = Vec::new();
    example_specs(&repo_root().join("examples"), &mut specs);
    assert!(specs.len() >= 6, "found only {specs:?}");
    let mut methods = std::collections::BTreeSet::new();
    for path in specs {
        let spec = JobSpec::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        methods.insert(spec.method.name());
    }
    assert_eq!(methods.len(), 5, "an example for every method: {methods:?}");
}

#[test]
fn demo_reaches_its_accuracy_target_with_the_pinned_hash() {
    let dir = tempfile::tempdir().unwrap();
    let summary = run_job(&repo_root().join("examples/demo.toml"), dir.path(), &[]);
    let accuracy = summary["test_accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.87, "demo test accuracy {accuracy} < 0.87");
    assert_eq!(summary["params_sha256"], DEMO_HASH);
}
