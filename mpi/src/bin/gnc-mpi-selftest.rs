//! Run under `mpirun -np R`: each rank sums its block of M logical workers' vectors (values
//! whose sum depends on the order of additions), the ranks all-reduce the block sums with
//! [`gnc_mpi::MpiReducer`], and every rank compares the result, bit for bit, with the one-host
//! tree sum over all M leaves it computes itself, for both forms (separate output, in place). Prints one line per rank; exits 1 on a
//! difference. `mpi/tests/allreduce.rs` runs it with 1, 2, 3 and 4 ranks.
//!
//! Usage: gnc-mpi-selftest M LEN

use gnc_mpi::MpiReducer;
use gnc_tree as tree;
use mpi::traits::*;

/// Leaf `w`'s vector: magnitudes spread over many binades, so that any change in the order of
/// additions changes bits.
fn leaf(w: usize, len: usize) -> Vec<f32> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ (w as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mantissa = (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            mantissa * 2f32.powi((x % 24) as i32 - 12)
        })
        .collect()
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("usage: gnc-mpi-selftest M LEN"))
        .collect();
    let [m, len] = args[..] else {
        panic!("usage: gnc-mpi-selftest M LEN");
    };
    let universe = mpi::initialize().expect("MPI initialises");
    let world = universe.world();
    let ranks = world.size() as usize;
    let rank = world.rank() as usize;
    let blocks = tree::subtree_layout(m, ranks).expect("a subtree layout");
    let leaves: Vec<Vec<f32>> = (0..m).map(|w| leaf(w, len)).collect();
    let refs: Vec<&[f32]> = leaves.iter().map(Vec::as_slice).collect();
    let (lo, hi) = blocks[rank];
    let mut block_sum = vec![0.0; len];
    tree::sum_into(&mut block_sum, &refs[lo..hi]);
    let mut reducer = MpiReducer::new(world, m, blocks, len).expect("a valid layout");
    let mut total = vec![0.0; len];
    reducer
        .all_reduce(&block_sum, &mut total)
        .expect("the all-reduce runs");
    // The in-place form (the hierarchical transport's) must give the same bits.
    let mut in_place = block_sum.clone();
    reducer
        .all_reduce_in_place(&mut in_place)
        .expect("the in-place all-reduce runs");
    let mut expected = vec![0.0; len];
    tree::sum_into(&mut expected, &refs);
    // The plain left-to-right sum differs, or equality above would prove nothing.
    let naive: Vec<f32> = (0..len)
        .map(|i| leaves.iter().fold(0.0, |s, l| s + l[i]))
        .collect();
    let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
    let equal = same(&total, &expected) && same(&in_place, &expected);
    println!(
        "rank {rank}/{ranks} block {lo}..{hi}: {} (naive order differs: {})",
        if equal { "bit-equal" } else { "DIFFERENT" },
        !same(&naive, &expected)
    );
    if !equal {
        std::process::exit(1);
    }
}
