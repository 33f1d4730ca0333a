//! The tree reduction against a straightforward reference, on random sizes and layouts.
//!
//! Values span 2^±40 with random signs, so every change of association order changes bits
//! (`naive_order_changes_bits_on_these_inputs` proves the inputs are that sensitive); equality
//! is checked on `to_bits`.

use std::collections::BTreeSet;

use gnc_shm::shard_range;
use gnc_tree::{self as tree, Block, CHUNK};
use proptest::prelude::*;

/// The tree, written straight from its definition: split at the largest power of two
/// strictly below n, left sum + right sum.
fn reference_sum(leaves: &[Vec<f32>], lo: usize, hi: usize) -> Vec<f32> {
    if hi - lo == 1 {
        return leaves[lo].clone();
    }
    let mut p = 1;
    while p * 2 < hi - lo {
        p *= 2;
    }
    let left = reference_sum(leaves, lo, lo + p);
    let right = reference_sum(leaves, lo + p, hi);
    left.iter().zip(&right).map(|(a, b)| a + b).collect()
}

fn reference_nodes(lo: usize, hi: usize, nodes: &mut BTreeSet<Block>) {
    nodes.insert((lo, hi));
    if hi - lo > 1 {
        let mut p = 1;
        while p * 2 < hi - lo {
            p *= 2;
        }
        reference_nodes(lo, lo + p, nodes);
        reference_nodes(lo + p, hi, nodes);
    }
}

/// splitmix64: cheap deterministic values, so large cases stay fast.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A value with random sign, mantissa and an exponent in [-40, 40).
fn wild_value(state: &mut u64) -> f32 {
    let bits = next(state);
    let sign = if bits & 1 == 0 { 1.0 } else { -1.0 };
    let mantissa = 1.0 + (bits >> 40) as f32 / (1u64 << 24) as f32;
    let exponent = ((bits >> 8) % 80) as i32 - 40;
    sign * mantissa * 2f32.powi(exponent)
}

fn wild_leaves(m: usize, len: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed;
    (0..m)
        .map(|_| (0..len).map(|_| wild_value(&mut state)).collect())
        .collect()
}

fn as_slices(vectors: &[Vec<f32>]) -> Vec<&[f32]> {
    vectors.iter().map(Vec::as_slice).collect()
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|x| x.to_bits()).collect()
}

/// A random valid layout: walk the tree, at each inner node let `splits` decide whether it
/// becomes a block or is split further.
fn carve(lo: usize, hi: usize, splits: &mut impl Iterator<Item = bool>, out: &mut Vec<Block>) {
    if hi - lo == 1 || !splits.next().unwrap_or(false) {
        out.push((lo, hi));
        return;
    }
    let mid = tree::split(lo, hi);
    carve(lo, mid, splits, out);
    carve(mid, hi, splits, out);
}

fn tree_sum(leaves: &[Vec<f32>], len: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; len];
    tree::sum_into(&mut out, &as_slices(leaves));
    out
}

fn block_sums(leaves: &[Vec<f32>], blocks: &[Block], len: usize) -> Vec<Vec<f32>> {
    blocks
        .iter()
        .map(|&(lo, hi)| tree_sum(&leaves[lo..hi], len))
        .collect()
}

fn lengths() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0usize..48, 1 => CHUNK - 2..CHUNK + 70]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn tree_sum_matches_the_reference(m in 1usize..=64, len in lengths(), seed: u64) {
        let leaves = wild_leaves(m, len, seed);
        prop_assert_eq!(bits(&tree_sum(&leaves, len)), bits(&reference_sum(&leaves, 0, m)));
    }

    #[test]
    fn is_node_matches_the_reference_tree(m in 1usize..=64) {
        let mut nodes = BTreeSet::new();
        reference_nodes(0, m, &mut nodes);
        for lo in 0..m {
            for hi in lo + 1..=m {
                prop_assert_eq!(tree::is_node(m, lo, hi), nodes.contains(&(lo, hi)));
            }
        }
    }

    #[test]
    fn combined_block_sums_equal_the_full_tree_sum(
        m in 1usize..=64,
        splits in prop::collection::vec(any::<bool>(), 127),
        len in lengths(),
        seed: u64,
    ) {
        let mut blocks = Vec::new();
        carve(0, m, &mut splits.into_iter(), &mut blocks);
        prop_assert!(tree::validate_layout(m, &blocks).is_ok());
        let leaves = wild_leaves(m, len, seed);
        let sums = block_sums(&leaves, &blocks, len);
        let mut combined = vec![f32::NAN; len];
        tree::combine_blocks(&mut combined, m, &blocks, &as_slices(&sums)).unwrap();
        prop_assert_eq!(bits(&combined), bits(&tree_sum(&leaves, len)));
    }

    #[test]
    fn sharded_reduction_equals_the_unsharded_one(
        m in 1usize..=32,
        splits in prop::collection::vec(any::<bool>(), 63),
        len in lengths(),
        num_shards in 1usize..=8,
        seed: u64,
    ) {
        let mut blocks = Vec::new();
        carve(0, m, &mut splits.into_iter(), &mut blocks);
        let leaves = wild_leaves(m, len, seed);
        let sums = block_sums(&leaves, &blocks, len);
        let mut whole = vec![f32::NAN; len];
        tree::combine_blocks(&mut whole, m, &blocks, &as_slices(&sums)).unwrap();
        let mut sharded = vec![f32::NAN; len];
        for shard in 0..num_shards {
            let range = shard_range(len, num_shards, shard);
            let sum_shards: Vec<&[f32]> = sums.iter().map(|sum| &sum[range.clone()]).collect();
            tree::combine_blocks(&mut sharded[range], m, &blocks, &sum_shards).unwrap();
        }
        prop_assert_eq!(bits(&sharded), bits(&whole));
    }
}

/// Shows that the properties above can fail: on the inputs they use, summing in another
/// order (plain left to right) gives different bits.
#[test]
fn naive_order_changes_bits_on_these_inputs() {
    let (m, len) = (8, 64);
    let leaves = wild_leaves(m, len, 1);
    let mut naive = leaves[0].clone();
    for leaf in &leaves[1..] {
        for (sum, x) in naive.iter_mut().zip(leaf) {
            *sum += x;
        }
    }
    assert_ne!(bits(&naive), bits(&tree_sum(&leaves, len)));
}

/// Blocks that are not subtrees cannot be combined along the tree, so they are refused.
#[test]
fn layouts_that_are_not_subtrees_are_refused() {
    let blocks = [(0, 3), (3, 6), (6, 8)];
    let error = tree::validate_layout(8, &blocks).unwrap_err();
    assert!(error.to_string().contains("[0, 3)"), "{error}");
    let leaves = wild_leaves(8, 64, 1);
    let sums = block_sums(&leaves, &blocks, 64);
    let mut out = vec![0.0; 64];
    assert!(tree::combine_blocks(&mut out, 8, &blocks, &as_slices(&sums)).is_err());
}
