//! Build script shared by every package whose binaries or tests link libtorch.
//!
//! torch-sys links libtorch but leaves two things to the final binary:
//! - an rpath to libtorch's directory, so binaries start without LD_LIBRARY_PATH;
//! - keeping `libtorch_cuda.so` although no symbol of it is referenced: the linker's default
//!   `--as-needed` drops it, and then libtorch silently reports no CUDA device.
//!
//! It also hands the source's git commit to the code as `GNC_COMMIT`, for the reproducibility
//! key every run records.
use std::path::Path;

fn main() {
    commit();
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Ok(torch) = std::env::var("LIBTORCH") else {
        return;
    };
    let lib = Path::new(&torch).join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-L{}", lib.display());
        println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-ltorch_cuda,--pop-state");
    }
}

fn commit() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    // The commit checked out when this was built (uncommitted changes are not tracked).
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=GNC_COMMIT={commit}");
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
    }
}
