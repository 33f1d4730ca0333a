//! Build script shared by every package whose binaries or tests link libtorch.
//!
//! torch-sys links libtorch but leaves two things to the final binary:
//! - an rpath to libtorch's directory, so binaries start without LD_LIBRARY_PATH;
//! - keeping `libtorch_cuda.so` although no symbol of it is referenced: the linker's default
//!   `--as-needed` drops it, and then libtorch silently reports no CUDA device.
use std::path::Path;

fn main() {
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
