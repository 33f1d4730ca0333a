//! Run under `mpirun -np R` (issue 11): gnc's deterministic all-reduce over MPI
//! (`gnc_mpi::MpiReducer`: all-to-all of block-sum shards, tree-order combine, all-gather)
//! against `MPI_Allreduce(MPI_SUM)` of the same vectors, alternated in one run.
//!
//! Per size and round: a barrier, then `iters` calls of one kind, a barrier, `iters` of the
//! other (the order swaps every round), each call timed on every rank and the slowest rank's
//! time taken (an all-reduce is done when its last rank is). Rank 0 also times a memcpy of the
//! vector between two pre-faulted vectors, alone, as the floor of any operation that must
//! read and write the whole vector once. Rank 0 prints one JSON line per size and round;
//! `bench/run_mpi_bench.py` turns them into `bench/RESULTS.md`.

use std::time::Instant;

use anyhow::{Result, ensure};
use clap::Parser;
use gnc_bench::median;
use gnc_mpi::MpiReducer;
use gnc_tree as tree;
use mpi::collective::SystemOperation;
use mpi::traits::*;
use serde_json::json;

#[derive(Debug, Parser)]
#[command(name = "gnc-bench-mpi-allreduce")]
struct Args {
    /// Vector lengths in floats.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1048576,2097152,4194304,8388608,16777216"
    )]
    sizes: Vec<usize>,
    /// M: logical workers (each rank holds the sum of an aligned block of them).
    #[arg(long, default_value_t = 64)]
    workers: usize,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Timed calls of each kind per round.
    #[arg(long, default_value_t = 5)]
    iters: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
}

/// The slowest rank's time of `f`, in ms.
fn timed<C: Communicator>(comm: &C, mut f: impl FnMut()) -> f64 {
    comm.barrier();
    let start = Instant::now();
    f();
    let mine = start.elapsed().as_secs_f64() * 1e3;
    let mut slowest = 0.0;
    comm.all_reduce_into(&mine, &mut slowest, SystemOperation::max());
    slowest
}

fn main() -> Result<()> {
    let args = Args::parse();
    let universe = mpi::initialize().expect("MPI initialises");
    let world = universe.world();
    let (rank, ranks) = (world.rank() as usize, world.size() as usize);
    let blocks = tree::subtree_layout(args.workers, ranks)?;
    for &len in &args.sizes {
        // Distinct values in every rank, so the sums are real additions.
        let input: Vec<f32> = (0..len)
            .map(|i| ((i * 7 + rank * 13) % 1021) as f32 * 1e-3 - 0.5)
            .collect();
        let mut gnc_out = vec![0.0f32; len];
        let mut mpi_out = vec![0.0f32; len];
        let mut reducer = MpiReducer::new(world.duplicate(), args.workers, blocks.clone(), len)?;
        let mut copy = vec![0.0f32; len];
        for _ in 0..args.warmup {
            reducer.all_reduce(&input, &mut gnc_out)?;
            world.all_reduce_into(&input[..], &mut mpi_out[..], SystemOperation::sum());
            copy.copy_from_slice(&input);
        }
        for round in 0..args.rounds {
            let mut gnc_ms = Vec::new();
            let mut mpi_ms = Vec::new();
            for kind in [round % 2, 1 - round % 2] {
                for _ in 0..args.iters {
                    if kind == 0 {
                        gnc_ms.push(timed(&world, || {
                            reducer.all_reduce(&input, &mut gnc_out).expect("reduces")
                        }));
                    } else {
                        mpi_ms.push(timed(&world, || {
                            world.all_reduce_into(
                                &input[..],
                                &mut mpi_out[..],
                                SystemOperation::sum(),
                            )
                        }));
                    }
                }
            }
            let mut memcpy_ms = Vec::new();
            if rank == 0 {
                for _ in 0..args.iters {
                    let start = Instant::now();
                    copy.copy_from_slice(&input);
                    std::hint::black_box(&copy);
                    memcpy_ms.push(start.elapsed().as_secs_f64() * 1e3);
                }
            }
            world.barrier();
            if rank == 0 {
                let same = gnc_out
                    .iter()
                    .zip(&mpi_out)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                println!(
                    "{}",
                    json!({
                        "bench": "mpi-allreduce", "ranks": ranks, "workers": args.workers,
                        "len": len, "round": round, "gnc_ms": median(&gnc_ms),
                        "mpi_ms": median(&mpi_ms), "memcpy_ms": median(&memcpy_ms),
                        "bits_equal_to_mpi": same,
                    })
                );
            }
        }
        ensure!(gnc_out.iter().all(|x| x.is_finite()), "non-finite sum");
    }
    Ok(())
}
