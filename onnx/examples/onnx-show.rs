//! Prints what gnc makes of an ONNX file: `cargo run -p gnc-onnx --example onnx-show FILE`.

fn main() {
    let path = std::env::args().nth(1).expect("usage: onnx-show FILE");
    match gnc_onnx::Graph::load(std::path::Path::new(&path)) {
        Ok(g) => {
            println!(
                "input {:?}, {} outputs, sha256 {}",
                g.example_shape, g.outputs, g.sha256
            );
            for n in &g.nodes {
                println!("  {} {:?} {:?} -> {}", n.name, n.op, n.inputs, n.output);
            }
            for p in &g.params {
                println!("  param {} {:?} {:?}", p.name, p.shape, p.kind);
            }
            println!(
                "  {} BatchNorm layers, {} constants",
                g.batch_norms.len(),
                g.constants.len()
            );
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
