//! Generates the ONNX message types from the schema ONNX publishes (proto/onnx.proto, from the
//! `onnx` Python package 1.23.2): protox compiles it (no `protoc` needed), prost generates the
//! Rust types and their decoder. Nothing of the wire format is written by hand.

fn main() {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let descriptors =
        protox::compile(["onnx.proto"], ["proto"]).expect("proto/onnx.proto compiles");
    prost_build::Config::new()
        .compile_fds(descriptors)
        .expect("prost generates the ONNX types");
}
