//! The portable level's kernel fingerprint is pinned: a machine whose kernels compute
//! differently from the reference machines fails here naming the kernel, before any golden
//! hash could only say that something, somewhere, differs.
//!
//! The libtorch kernels' reference values come from `../shared/repro/` (an Intel Xeon, family
//! 6 model 207) and equal what AMD EPYC machines compute; gnc's own kernels (`gnc …`) are fma
//! chains and IEEE square roots, the same everywhere by construction. To see this machine's
//! values: `GNC_PRINT_FINGERPRINT=1 cargo test --release -p gnc-worker --test fingerprint -- --nocapture`.

use gnc_proto::repro::Level;
use gnc_worker::kernels::fingerprint::{PORTABLE_REFERENCE, compute, differences};

#[test]
fn portable_kernels_compute_as_the_reference_machines_do() {
    gnc_worker::pin::pin_process_environment(Level::Portable).unwrap();
    let actual = compute(Level::Portable);
    if std::env::var_os("GNC_PRINT_FINGERPRINT").is_some() {
        for (name, hashes) in &actual {
            println!("{name:40} {}", hashes.join(" "));
        }
    }
    let diff = differences(&actual, PORTABLE_REFERENCE);
    assert!(
        diff.is_empty(),
        "this machine computes these kernels differently from the reference machines, so \
         portable runs will not reproduce here:\n{}",
        diff.join("\n")
    );
}
