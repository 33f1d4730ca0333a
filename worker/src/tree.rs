//! Sums of tensors along the canonical fixed reduction tree over logical workers
//! (DESIGN.md §4.2); the tree itself (split rule, layouts) is `gnc_tree`.
//!
//! The tree on [lo, hi) splits at lo + p, p the largest power of two strictly below hi - lo;
//! a node's sum is left + right, elementwise in f32. Because every float addition is the same
//! whatever hardware or process performs it, a sum that follows this tree has the same bits
//! however the leaves are distributed, as long as each process or thread owns a whole subtree.
//!
//! [`TreeSum`] folds leaves that arrive in index order using O(log M) partial sums: a binary
//! counter whose equal-sized neighbours merge as soon as both exist. For a node whose size is
//! not a power of two, the partial sums left at the end are the node's power-of-two
//! decomposition, and folding them right to left is exactly the split rule above.

use gnc_tree::split;
use tch::Tensor;

/// A bundle of tensors summed together: one logical worker's gradients, BatchNorm statistics
/// and scalars, all in a fixed order.
pub type Bundle = Vec<Tensor>;

/// The sum of the bundles of the logical workers [lo, hi), a node of the tree.
pub type BlockSum = ((usize, usize), Bundle);

/// `a + b` for a pair of leaves (a fresh result: the leaves may be kept by their owner);
/// `a += b` in place for partial sums, which belong to the accumulator.
fn add(mut a: (usize, Bundle), b: Bundle) -> Bundle {
    if a.0 == 1 {
        a.1.iter().zip(&b).map(|(x, y)| x + y).collect()
    } else {
        for (x, y) in a.1.iter_mut().zip(&b) {
            let _ = x.g_add_(y);
        }
        a.1
    }
}

/// Streaming sum of the leaves of one tree node, pushed in index order.
#[derive(Default)]
pub struct TreeSum {
    /// (leaf count, partial sum), sizes strictly decreasing from bottom to top.
    stack: Vec<(usize, Bundle)>,
}

impl TreeSum {
    pub fn new() -> TreeSum {
        TreeSum::default()
    }

    /// Adds the next leaf.
    pub fn push(&mut self, leaf: Bundle) {
        let mut node = (1usize, leaf);
        while self.stack.last().is_some_and(|top| top.0 == node.0) {
            let left = self.stack.pop().expect("checked non-empty");
            let size = left.0 + node.0;
            node = (size, add(left, node.1));
        }
        self.stack.push(node);
    }

    /// The node's sum; `None` if nothing was pushed.
    pub fn finish(mut self) -> Option<Bundle> {
        let (mut size, mut acc) = self.stack.pop()?;
        while let Some(left) = self.stack.pop() {
            let left_size = left.0;
            acc = add(left, acc);
            size += left_size;
        }
        let _ = size;
        Some(acc)
    }
}

/// Combines the sums of `blocks` — consecutive nodes of the tree over [0, m) covering it —
/// following the tree, so the result equals the sum of all leaves in tree order.
pub fn combine_blocks(m: usize, blocks: Vec<BlockSum>) -> Bundle {
    let mut blocks: std::collections::VecDeque<_> = blocks.into();
    let sum = combine(0, m, &mut blocks);
    assert!(blocks.is_empty(), "blocks beyond [0, {m})");
    sum
}

fn combine(lo: usize, hi: usize, blocks: &mut std::collections::VecDeque<BlockSum>) -> Bundle {
    let front = blocks.front().expect("blocks cover [0, m)").0;
    if front == (lo, hi) {
        return blocks.pop_front().expect("checked").1;
    }
    assert!(
        hi - lo >= 2 && front.0 == lo && front.1 < hi,
        "block {front:?} is not a node of the reduction tree"
    );
    let mid = split(lo, hi);
    let left = combine(lo, mid, blocks);
    let right = combine(mid, hi, blocks);
    // Both operands are partial sums owned here (never a caller's leaf), so add in place,
    // unless the left one is itself a single leaf block.
    add((if mid - lo == 1 { 1 } else { 2 }, left), right)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gnc_tree::subtree_layout;

    /// Reference: the recursive definition, on f32 values.
    fn reference(values: &[f32], lo: usize, hi: usize) -> f32 {
        if hi - lo == 1 {
            return values[lo];
        }
        let mid = split(lo, hi);
        reference(values, lo, mid) + reference(values, mid, hi)
    }

    fn leaves(m: usize) -> Vec<f32> {
        // Magnitudes far apart, so that grouping changes the rounded result.
        (0..m)
            .map(|i| ((i * 7919 % 13) as f32 - 6.0) * 10f32.powi((i % 9) as i32 - 4))
            .collect()
    }

    fn streaming(values: &[f32], lo: usize, hi: usize) -> f32 {
        let mut t = TreeSum::new();
        for &v in &values[lo..hi] {
            t.push(vec![Tensor::from_slice(&[v])]);
        }
        t.finish().unwrap()[0].double_value(&[0]) as f32
    }

    #[test]
    fn streaming_sum_matches_the_recursive_tree_bit_for_bit() {
        for m in 1..=40 {
            let v = leaves(m);
            assert_eq!(
                streaming(&v, 0, m).to_bits(),
                reference(&v, 0, m).to_bits(),
                "m = {m}"
            );
        }
    }

    #[test]
    fn grouping_matters_so_the_test_above_can_fail() {
        let v = leaves(37);
        let left_to_right = v.iter().fold(0f32, |a, b| a + b);
        assert_ne!(left_to_right.to_bits(), reference(&v, 0, 37).to_bits());
    }

    #[test]
    fn blocks_combine_to_the_full_tree_sum() {
        for m in 1..=40 {
            let v = leaves(m);
            for parts in 1..=m.min(8) {
                let blocks = subtree_layout(m, parts).unwrap();
                assert_eq!(blocks.len(), parts);
                let sums = blocks
                    .iter()
                    .map(|&(lo, hi)| ((lo, hi), vec![Tensor::from_slice(&[streaming(&v, lo, hi)])]))
                    .collect();
                let total = combine_blocks(m, sums)[0].double_value(&[0]) as f32;
                assert_eq!(
                    total.to_bits(),
                    reference(&v, 0, m).to_bits(),
                    "m={m} parts={parts}"
                );
            }
        }
    }

    #[test]
    fn leaves_pushed_are_not_modified() {
        let a = Tensor::from_slice(&[1f32, 2.0]);
        let b = Tensor::from_slice(&[3f32, 4.0]);
        let mut t = TreeSum::new();
        t.push(vec![a.shallow_clone()]);
        t.push(vec![b.shallow_clone()]);
        let s = t.finish().unwrap();
        assert_eq!(Vec::<f32>::try_from(&s[0]).unwrap(), vec![4.0, 6.0]);
        assert_eq!(Vec::<f32>::try_from(&a).unwrap(), vec![1.0, 2.0]);
    }
}
