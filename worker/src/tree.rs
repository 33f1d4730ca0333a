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
//!
//! A leaf's parts are tensors, summed by libtorch, or values gnc computed itself (a portable
//! layer's weight gradient), summed here with no tensor made per worker: a leaf that completes
//! k nodes at once is added to all k left neighbours in one pass over memory (k + 1 reads and
//! one write per element, where k separate additions would make 3k), each addition still one
//! f32 addition of the same operands in the same order, so the bits are the same.

use std::ops::Range;
use std::sync::Arc;

use gnc_tree::split;
use tch::Tensor;

use crate::kernels::buffers::{buffer, release};

/// A bundle of tensors summed together: one logical worker's gradients, BatchNorm statistics
/// and scalars, all in a fixed order.
pub type Bundle = Vec<Tensor>;

/// The sum of the bundles of the logical workers [lo, hi), a node of the tree.
pub type BlockSum = ((usize, usize), Bundle);

/// One part of a logical worker's contribution, as [`TreeSum`] takes it.
pub enum Part {
    /// Summed by libtorch.
    Tensor(Tensor),
    /// Values row-major, with their shape, summed by gnc. Shared, because GNC keeps a worker's
    /// gradient as the same values (the saved gradient owns them alone once the tree has read
    /// them); a partial sum's are the tree's own.
    Values(Arc<Vec<f32>>, Vec<i64>),
}

impl Part {
    pub fn values(values: Vec<f32>, shape: Vec<i64>) -> Part {
        Part::Values(Arc::new(values), shape)
    }

    /// The part as a tensor (values are copied once, and their buffer goes back to the pool
    /// unless someone else still holds it).
    pub fn into_tensor(self) -> Tensor {
        match self {
            Part::Tensor(t) => t,
            Part::Values(v, shape) => {
                let t = gnc_kernels::tensor::from_values(&v, &shape);
                release(v);
                t
            }
        }
    }

    /// libtorch's 2-norm of the part (the bits of `into_tensor().norm()`), read in place. (The
    /// linear layers take their weight gradients' norms as the products end; this is for the
    /// rest.)
    pub fn norm(&self) -> Tensor {
        match self {
            Part::Tensor(t) => t.norm(),
            Part::Values(v, _) => gnc_kernels::tensor::norm(v),
        }
    }
}

/// A node of the tree in the streaming sum: its leaf count and its sum.
type Node = (usize, Vec<Part>);

/// `lefts[last] + (… + (lefts[0] + right))`, part by part: the nodes `lefts` (nearest first)
/// each add `right`'s running sum as their right operand. Inner left nodes are only read. If
/// the outermost is a single leaf (a caller's, possibly kept) the result is fresh; otherwise it
/// is a partial sum that belongs to the accumulator, and the result is written in place.
fn add_chain(lefts: Vec<Node>, right: Vec<Part>) -> Vec<Part> {
    let sizes: Vec<usize> = lefts.iter().map(|l| l.0).collect();
    let mut columns: Vec<std::vec::IntoIter<Part>> =
        lefts.into_iter().map(|l| l.1.into_iter()).collect();
    right
        .into_iter()
        .map(|r| {
            let column: Vec<Part> = columns
                .iter_mut()
                .map(|c| c.next().expect("every bundle has the same parts"))
                .collect();
            add_part(&sizes, column, r)
        })
        .collect()
}

fn add_part(sizes: &[usize], lefts: Vec<Part>, right: Part) -> Part {
    let all_values = std::iter::once(&right)
        .chain(&lefts)
        .all(|p| matches!(p, Part::Values(..)));
    if !all_values {
        // A worker whose part is a tensor where another's are values: sum as tensors.
        let mut sum = right.into_tensor();
        for (&size, left) in sizes.iter().zip(lefts) {
            sum = add_tensors(left.into_tensor(), size, &sum);
        }
        return Part::Tensor(sum);
    }
    let unwrap = |p: Part| match p {
        Part::Values(v, shape) => (v, shape),
        Part::Tensor(_) => unreachable!("checked: every part is values"),
    };
    let (right, shape) = unwrap(right);
    let mut lefts: Vec<Arc<Vec<f32>>> = lefts.into_iter().map(|p| unwrap(p).0).collect();
    let outer = lefts.pop().expect("a chain has at least one left node");
    let n = right.len();
    let inner: Vec<&[f32]> = lefts.iter().map(|v| v.as_slice()).collect();
    let sum = if *sizes.last().expect("as many sizes as nodes") == 1 {
        let mut out = buffer(n);
        chain(&inner, &right, |range, partial| {
            for ((o, &l), &p) in out[range.clone()]
                .iter_mut()
                .zip(&outer[range])
                .zip(partial)
            {
                *o = l + p;
            }
        });
        release(outer);
        out
    } else {
        let mut outer = Arc::try_unwrap(outer).expect("a partial sum belongs to the tree alone");
        chain(&inner, &right, |range, partial| {
            for (o, &p) in outer[range].iter_mut().zip(partial) {
                *o += p;
            }
        });
        outer
    };
    drop(inner);
    for v in lefts.into_iter().chain([right]) {
        release(v);
    }
    Part::values(sum, shape)
}

/// Runs `inner[last] + (… + (inner[0] + right))` over `right`'s elements a cache-sized block
/// at a time, handing each block's result to `finish_block` with the block's range.
fn chain(inner: &[&[f32]], right: &[f32], mut finish_block: impl FnMut(Range<usize>, &[f32])) {
    const BLOCK: usize = 512;
    let mut partial = [0f32; BLOCK];
    for start in (0..right.len()).step_by(BLOCK) {
        let range = start..(start + BLOCK).min(right.len());
        let partial = &mut partial[..range.len()];
        partial.copy_from_slice(&right[range.clone()]);
        for left in inner {
            // left + partial: f32 addition commutes, so `+=` has its bits (NaN payloads
            // aside, which no guarantee of gnc's covers).
            for (p, &l) in partial.iter_mut().zip(&left[range.clone()]) {
                *p += l;
            }
        }
        finish_block(range, partial);
    }
}

/// Streaming sum of the leaves of one tree node, pushed in index order.
#[derive(Default)]
pub struct TreeSum {
    /// Nodes, sizes strictly decreasing from bottom to top.
    stack: Vec<Node>,
}

impl TreeSum {
    pub fn new() -> TreeSum {
        TreeSum::default()
    }

    /// Adds the next leaf: it completes the nodes of sizes 1, 2, 4, … on top of the stack.
    pub fn push(&mut self, leaf: Vec<Part>) {
        let mut size = 1;
        let mut lefts = Vec::new();
        while self.stack.last().is_some_and(|top| top.0 == size) {
            lefts.push(self.stack.pop().expect("checked non-empty"));
            size *= 2;
        }
        let node = if lefts.is_empty() {
            leaf
        } else {
            add_chain(lefts, leaf)
        };
        self.stack.push((size, node));
    }

    /// The node's sum; `None` if nothing was pushed.
    pub fn finish(mut self) -> Option<Bundle> {
        let (_, top) = self.stack.pop()?;
        let lefts: Vec<Node> = self.stack.into_iter().rev().collect();
        let sum = if lefts.is_empty() {
            top
        } else {
            add_chain(lefts, top)
        };
        Some(sum.into_iter().map(Part::into_tensor).collect())
    }
}

/// `left + right` for a left node of `left_size` leaves: fresh if the node is a single leaf
/// (its owner may keep it), else in place (a partial sum is the tree's own).
fn add_tensors(mut left: Tensor, left_size: usize, right: &Tensor) -> Tensor {
    if left_size == 1 {
        &left + right
    } else {
        let _ = left.g_add_(right);
        left
    }
}

/// `a + b` for a pair of blocks' sums, part by part, as [`add_tensors`].
fn add_blocks((size, a): (usize, Bundle), b: Bundle) -> Bundle {
    a.into_iter()
        .zip(&b)
        .map(|(x, y)| add_tensors(x, size, y))
        .collect()
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
    add_blocks((if mid - lo == 1 { 1 } else { 2 }, left), right)
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
            t.push(vec![Part::Tensor(Tensor::from_slice(&[v]))]);
        }
        t.finish().unwrap()[0].double_value(&[0]) as f32
    }

    /// Each leaf's parts as values, as tensors, and mixed (values in every other leaf); the
    /// values parts long enough to span several of the chain's blocks.
    fn streaming_parts(values: &[f32], lo: usize, hi: usize) -> [Vec<f32>; 3] {
        const N: usize = 1300;
        let leaf = |i: usize, as_values: bool| {
            let v: Vec<f32> = (0..N).map(|j| values[i] * (1.0 + j as f32)).collect();
            if as_values {
                Part::values(v, vec![N as i64])
            } else {
                Part::Tensor(Tensor::from_slice(&v))
            }
        };
        let sum = |as_values: &dyn Fn(usize) -> bool| {
            let mut t = TreeSum::new();
            for i in lo..hi {
                t.push(vec![leaf(i, as_values(i)), leaf(i, !as_values(i))]);
            }
            let sum = t.finish().unwrap();
            let [a, b] = [&sum[0], &sum[1]].map(|t| Vec::<f32>::try_from(t).unwrap());
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "the two parts summed the same values");
            a
        };
        [sum(&|_| true), sum(&|_| false), sum(&|i| i % 2 == 0)]
    }

    #[test]
    fn values_sum_to_the_bits_of_the_recursive_tree_in_one_pass() {
        for m in 1..=40 {
            let v = leaves(m);
            let reference: Vec<u32> = (0..1300)
                .map(|j| {
                    let scaled: Vec<f32> = v.iter().map(|x| x * (1.0 + j as f32)).collect();
                    reference(&scaled, 0, m).to_bits()
                })
                .collect();
            for (kind, sum) in ["values", "tensors", "mixed"]
                .iter()
                .zip(streaming_parts(&v, 0, m))
            {
                let bits: Vec<u32> = sum.iter().map(|x| x.to_bits()).collect();
                assert!(bits == reference, "m = {m}, {kind}");
            }
        }
    }

    #[test]
    fn kept_values_are_read_and_left_as_they_were() {
        let kept: Vec<Arc<Vec<f32>>> = (0..5).map(|i| Arc::new(vec![i as f32; 600])).collect();
        let mut t = TreeSum::new();
        for k in &kept {
            t.push(vec![Part::Values(Arc::clone(k), vec![600])]);
        }
        let sum = t.finish().unwrap();
        assert_eq!(Vec::<f32>::try_from(&sum[0]).unwrap(), vec![10.0; 600]);
        for (i, k) in kept.into_iter().enumerate() {
            let k = Arc::try_unwrap(k).expect("the tree holds no reference once finished");
            assert_eq!(k, vec![i as f32; 600]);
        }
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
        t.push(vec![Part::Tensor(a.shallow_clone())]);
        t.push(vec![Part::Tensor(b.shallow_clone())]);
        let s = t.finish().unwrap();
        assert_eq!(Vec::<f32>::try_from(&s[0]).unwrap(), vec![4.0, 6.0]);
        assert_eq!(Vec::<f32>::try_from(&a).unwrap(), vec![1.0, 2.0]);
    }
}
