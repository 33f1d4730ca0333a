//! Quick, torch-free timing of the AVX-512 (or widest) path on F1's products at batch 32, for
//! choosing the inner block: inner-block sizes alternate round by round, medians over rounds
//! (the full benchmark, beside libtorch, is `gnc-bench-gemm`).
//! `[ISA=scalar|avx2] cargo run --release -p gnc-kernels --example gemm_speed [kc …]`.

use std::time::Instant;

use gnc_kernels::{Isa, Plan, Strided, gemm_with};

fn main() {
    let isa = match std::env::var("ISA").as_deref() {
        Ok("scalar") => Isa::Scalar,
        Ok("avx2") => Isa::Avx2,
        _ => Isa::best(),
    };
    let kcs: Vec<usize> = std::env::args()
        .skip(1)
        .map(|v| v.parse().expect("kc"))
        .collect();
    let kcs = if kcs.is_empty() {
        vec![64, 128, 256, 1 << 20]
    } else {
        kcs
    };
    println!("{}; kc {kcs:?}", isa.name());
    // (m, k, n, a and b transposed in memory): forward W h^T, weight gradient dy^T h, input
    // gradient W^T dy^T.
    for (what, m, k, n, at, bt) in [
        ("fwd 784->500", 500, 784, 32, false, true),
        ("dW 784->500", 500, 32, 784, true, false),
        ("dx 784->500", 784, 500, 32, true, true),
        ("dx as dy W", 32, 500, 784, false, false),
        ("fwd as h WT", 32, 784, 500, false, true),
        ("fwd 500->500", 500, 500, 32, false, true),
        ("fwd 500->10", 10, 500, 32, false, true),
        ("dW 500->500", 500, 32, 500, true, false),
        ("dx 500->500", 500, 500, 32, true, true),
    ] {
        let av: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 * 0.01).collect();
        let bv: Vec<f32> = (0..k * n).map(|i| (i % 13) as f32 * 0.01).collect();
        let a = if at {
            Strided::rows(&av, k, m).t()
        } else {
            Strided::rows(&av, m, k)
        };
        let b = if bt {
            Strided::rows(&bv, n, k).t()
        } else {
            Strided::rows(&bv, k, n)
        };
        let mut c = vec![0.0; m * n];
        let mut rates = vec![Vec::new(); kcs.len()];
        for _ in 0..30 {
            for (x, &kc) in kcs.iter().enumerate() {
                let plan = Plan {
                    isa,
                    kc,
                    threads: 1,
                };
                let mut best = f64::MAX;
                for _ in 0..5 {
                    let t = Instant::now();
                    gemm_with(&plan, a, b, &mut c);
                    best = best.min(t.elapsed().as_secs_f64());
                }
                rates[x].push(2.0 * (m * k * n) as f64 / best / 1e9);
            }
        }
        let med: Vec<String> = rates
            .iter_mut()
            .map(|r| {
                r.sort_by(f64::total_cmp);
                format!("{:6.1}", r[r.len() / 2])
            })
            .collect();
        println!("  {what:14} {m}x{k}x{n}: {}", med.join(" "));
    }
}
