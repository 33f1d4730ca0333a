//! Times gnc's portable matrix product (`gnc-kernels`, issue 25) on every ISA path this CPU
//! has, beside libtorch's native product (`Tensor::matmul`, MKL under the environment the
//! caller gives: `bench/run_gemm_bench.py` gives the native level's) on the same shapes in
//! the same run, and measures the per-core FMA peak of each ISA with a throughput loop of
//! independent FMA chains (`gnc_kernels::fma_probe`) in the same run.
//!
//! The products are those of F1's linear layers (784→500, 500→500, 500→10) at the batch of one
//! logical worker (32 rows), in the orientation `gnc-worker`'s `kernels::linear` computes them:
//! forward yᵀ = W·hᵀ (W read in place, h packed), weight gradient ∂W = dyᵀ·h, input gradient
//! ∂hᵀ = Wᵀ·dyᵀ (W read in place, k-major). libtorch computes the same products in its own
//! orientation (h·Wᵀ, dyᵀ·h, dy·W), as its autograd would. The transposes `linear` does around
//! the forward and input-gradient products (32 × out and 32 × in floats) are not timed.
//!
//! One thread throughout. Rounds alternate every implementation and shape; within a round an
//! implementation's time is the fastest of `--reps` back-to-back calls; the result is the
//! median (and min–max) over rounds. Every path's output is checked bit for bit against the
//! scalar path's first. Prints one JSON line per (shape, implementation) and one per ISA for
//! the probe.

use std::time::Instant;

use anyhow::{Result, ensure};
use clap::Parser;
use gnc_bench::median;
use gnc_kernels::{Isa, Plan, Strided, fma_probe, gemm_with};
use serde_json::json;
use tch::{Kind, Tensor};

#[derive(Debug, Parser)]
#[command(name = "gnc-bench-gemm")]
struct Args {
    /// Rounds (each times every implementation on every shape once).
    #[arg(long, default_value_t = 21)]
    rounds: usize,
    /// Back-to-back calls per measurement (the fastest counts).
    #[arg(long, default_value_t = 5)]
    reps: usize,
}

/// libtorch's product of two operands.
type TorchProduct = Box<dyn Fn(&Tensor, &Tensor) -> Tensor>;

/// One product of a linear layer `inputs → outputs` at a batch of `rows`.
struct Product {
    layer: String,
    what: &'static str,
    /// gnc's product: m × k times k × n, a given k-major when `a_k_major`.
    m: usize,
    k: usize,
    n: usize,
    a_k_major: bool,
    b_k_major: bool,
    /// libtorch's operands and product.
    torch: TorchProduct,
    torch_a: Vec<i64>,
    torch_b: Vec<i64>,
}

fn products(rows: usize) -> Vec<Product> {
    let mut out = Vec::new();
    for (i, o) in [(784, 500), (500, 500), (500, 10)] {
        let layer = format!("{i}→{o}");
        let (r, i64_, o64) = (rows as i64, i as i64, o as i64);
        // Forward: yᵀ (o × r) = W (o × i, rows contiguous) · hᵀ (h is r × i row-major).
        out.push(Product {
            layer: layer.clone(),
            what: "forward",
            m: o,
            k: i,
            n: rows,
            a_k_major: false,
            b_k_major: true,
            torch: Box::new(|h, w| h.matmul(&w.tr())),
            torch_a: vec![r, i64_],
            torch_b: vec![o64, i64_],
        });
        // Weight gradient: ∂W (o × i) = dyᵀ (dy is r × o) · h (r × i).
        out.push(Product {
            layer: layer.clone(),
            what: "weight grad",
            m: o,
            k: rows,
            n: i,
            a_k_major: true,
            b_k_major: false,
            torch: Box::new(|dy, h| dy.tr().matmul(h)),
            torch_a: vec![r, o64],
            torch_b: vec![r, i64_],
        });
        // Input gradient: ∂hᵀ (i × r) = Wᵀ (W is o × i) · dyᵀ (dy is r × o).
        out.push(Product {
            layer,
            what: "input grad",
            m: i,
            k: o,
            n: rows,
            a_k_major: true,
            b_k_major: true,
            torch: Box::new(|dy, w| dy.matmul(w)),
            torch_a: vec![r, o64],
            torch_b: vec![o64, i64_],
        });
    }
    out
}

fn values(len: usize, salt: u64) -> Vec<f32> {
    (0..len as u64)
        .map(|i| {
            let h = (i + salt * 1_000_003).wrapping_mul(2_654_435_761) % (1 << 32);
            (h as f64 / 4_294_967_296.0 - 0.5) as f32
        })
        .collect()
}

/// The fastest of `reps` calls of `f`, in seconds.
fn fastest(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn summary(rates: &[f64]) -> serde_json::Value {
    json!({
        "median": median(rates),
        "min": rates.iter().copied().fold(f64::INFINITY, f64::min),
        "max": rates.iter().copied().fold(0.0, f64::max),
        "rounds": rates.len(),
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    tch::set_num_threads(1);
    let isas: Vec<Isa> = Isa::ALL
        .into_iter()
        .filter(|isa| match isa.missing() {
            None => true,
            Some(why) => {
                eprintln!("gnc-bench-gemm: skipping the {} path: {why}", isa.name());
                false
            }
        })
        .collect();
    let products = products(32);
    // Operands: gnc's (row-major storage as linear keeps them) and libtorch's tensors.
    struct Data {
        a: Vec<f32>,
        b: Vec<f32>,
        c: Vec<f32>,
        ta: Tensor,
        tb: Tensor,
    }
    let mut data: Vec<Data> = products
        .iter()
        .map(|p| {
            let a = values(p.m * p.k, 1);
            let b = values(p.k * p.n, 2);
            let ta = Tensor::from_slice(&values(p.torch_a.iter().product::<i64>() as usize, 3))
                .view(p.torch_a.as_slice());
            let tb = Tensor::from_slice(&values(p.torch_b.iter().product::<i64>() as usize, 4))
                .view(p.torch_b.as_slice());
            Data {
                a,
                b,
                c: vec![0.0; p.m * p.n],
                ta,
                tb,
            }
        })
        .collect();
    // Bits: every path equals the scalar path.
    for (p, d) in products.iter().zip(&mut data) {
        let (a, b) = layout(p, &d.a, &d.b);
        let mut want = vec![0.0; p.m * p.n];
        gemm_with(&plan(Isa::Scalar), a, b, &mut want);
        for &isa in &isas {
            gemm_with(&plan(isa), a, b, &mut d.c);
            ensure!(
                d.c.iter()
                    .map(|x| x.to_bits())
                    .eq(want.iter().map(|x| x.to_bits())),
                "{} {} {}x{}x{}: the {} path differs from the scalar path",
                p.layer,
                p.what,
                p.m,
                p.k,
                p.n,
                isa.name()
            );
        }
    }

    let mut peak: Vec<Vec<f64>> = vec![Vec::new(); isas.len()];
    // rates[product][impl]: impls are the ISA paths then libtorch.
    let mut rates: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); isas.len() + 1]; products.len()];
    for round in 0..args.rounds {
        for (x, &isa) in isas.iter().enumerate() {
            let reps = 4_000_000 / isa.lanes() as u64;
            let mut flops = 0;
            let s = fastest(args.reps, || flops = fma_probe(isa, reps));
            peak[x].push(flops as f64 / s / 1e9);
        }
        for (pi, (p, d)) in products.iter().zip(&mut data).enumerate() {
            let flop = 2.0 * (p.m * p.k * p.n) as f64;
            // Rotate the order of implementations from round to round.
            let impls = isas.len() + 1;
            for step in 0..impls {
                let which = (step + round) % impls;
                let s = if which < isas.len() {
                    let (a, b) = layout(p, &d.a, &d.b);
                    let plan = plan(isas[which]);
                    let c = &mut d.c;
                    fastest(args.reps, || gemm_with(&plan, a, b, c))
                } else {
                    let (ta, tb) = (&d.ta, &d.tb);
                    fastest(args.reps, || {
                        let y = (p.torch)(ta, tb);
                        std::hint::black_box(y.double_value(&[0, 0]));
                    })
                };
                rates[pi][which].push(flop / s / 1e9);
            }
        }
    }
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    for (x, &isa) in isas.iter().enumerate() {
        println!(
            "{}",
            json!({"bench": "gnc-gemm-peak", "isa": isa.name(), "lanes": isa.lanes(),
                   "gflops": summary(&peak[x]), "cpu": cpu_model})
        );
    }
    for (pi, p) in products.iter().enumerate() {
        for which in 0..=isas.len() {
            let (name, isa) = if which < isas.len() {
                (format!("gnc {}", isas[which].name()), isas[which].name())
            } else {
                ("libtorch matmul".to_string(), "MKL's choice")
            };
            println!(
                "{}",
                json!({"bench": "gnc-gemm", "layer": p.layer, "product": p.what,
                       "shape": format!("{}x{}x{}", p.m, p.k, p.n), "impl": name, "isa": isa,
                       "flop": 2 * p.m * p.k * p.n, "gflops": summary(&rates[pi][which]),
                       "threads": 1, "kind": format!("{:?}", Kind::Float)})
            );
        }
    }
    Ok(())
}

/// The default plan (inner block by layout, one thread) on `isa`.
fn plan(isa: Isa) -> Plan {
    Plan {
        isa,
        ..Plan::default()
    }
}

/// gnc's operands of `p`: `a` stored m × k (or k × m when k-major), `b` k × n (or n × k).
fn layout<'a>(p: &Product, a: &'a [f32], b: &'a [f32]) -> (Strided<'a>, Strided<'a>) {
    let a = if p.a_k_major {
        Strided::rows(a, p.k, p.m).t()
    } else {
        Strided::rows(a, p.m, p.k)
    };
    let b = if p.b_k_major {
        Strided::rows(b, p.n, p.k).t()
    } else {
        Strided::rows(b, p.k, p.n)
    };
    (a, b)
}
