//! The canonical reduction tree over logical workers, and sums that follow it: gnc's
//! definition of the gradient's bits, in a crate of pure arithmetic (no torch, no unsafe code)
//! that the shared-memory data plane (`gnc-shm`), the MPI transport (`gnc-mpi`), the engine
//! and the supervisor's layout checks all use.
//!
//! Workers are indexed `[0, M)`. The node for `[lo, hi)` with `n = hi - lo` is the leaf `lo`
//! if `n == 1`; otherwise it splits at `lo + p`, where `p` is the largest power of two
//! strictly less than `n` ([`split`]). A node's sum is `sum(left) + sum(right)`, elementwise
//! in f32, left operand first. The training engine's in-process streaming sum builds the
//! same tree, so the bits match.
//!
//! Because f32 addition is commutative but not associative, only the grouping matters, and
//! a process that owns a *node* (a "block") can sum it alone: the cross-process stage then
//! combines block sums along the same tree ([`combine_blocks`]) and obtains exactly the bits
//! of the full tree sum ([`sum_into`]). Layouts whose blocks are not nodes are refused by
//! [`validate_layout`] with an error that proposes valid ones.
//!
//! Sums run in chunks of [`CHUNK`] elements: the tree is walked once per chunk, so partial
//! sums stay in cache and scratch memory is `height × CHUNK` floats whatever the length.
//! The inner loop adds two contiguous slices with `zip`, which the compiler vectorises.

use std::fmt;
use std::ops::Range;

/// Elements per pass over the tree (16 KiB of f32).
pub const CHUNK: usize = 4096;

/// A block: the half-open range `[lo, hi)` of logical workers one process owns.
pub type Block = (usize, usize);

/// Where a node of `n ≥ 2` workers starting at `lo` splits: `lo + ` the largest power of two
/// strictly less than `n`.
///
/// # Panics
/// If `hi - lo < 2` (a leaf has no split).
pub fn split(lo: usize, hi: usize) -> usize {
    assert!(
        hi >= lo + 2,
        "[{lo}, {hi}) has no split: fewer than two workers"
    );
    let below = hi - lo - 1;
    lo + (1 << (usize::BITS - 1 - below.leading_zeros()))
}

/// Whether `[lo, hi)` is a node of the tree over `[0, m)`.
pub fn is_node(m: usize, lo: usize, hi: usize) -> bool {
    if lo >= hi || hi > m {
        return false;
    }
    let (mut node_lo, mut node_hi) = (0, m);
    loop {
        if (node_lo, node_hi) == (lo, hi) {
            return true;
        }
        if node_hi - node_lo == 1 {
            return false;
        }
        let mid = split(node_lo, node_hi);
        if hi <= mid {
            node_hi = mid;
        } else if lo >= mid {
            node_lo = mid;
        } else {
            return false;
        }
    }
}

/// Height of the tree over `m` workers (0 for a single leaf).
fn height(m: usize) -> usize {
    m.max(1).next_power_of_two().trailing_zeros() as usize
}

/// Why a layout of blocks cannot be reduced along the tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("there must be at least one logical worker and one block")]
    Empty,
    #[error(
        "block {index} {found} should start at worker {expected}: blocks must be contiguous and in order"
    )]
    NotContiguous {
        index: usize,
        found: Blocks,
        expected: usize,
    },
    #[error("the blocks end at worker {end}, but there are {m} logical workers")]
    NotCovering { end: usize, m: usize },
    #[error(
        "block {block} of {m} logical workers over {processes} processes is not a subtree of \
         the reduction tree; use {valid} processes with equal blocks, or the subtree blocks \
         {alternative}"
    )]
    NotASubtree {
        block: Blocks,
        m: usize,
        processes: usize,
        valid: ProcessCounts,
        alternative: Blocks,
    },
    #[error("cannot split {m} logical workers over {processes} processes")]
    BadProcessCount { m: usize, processes: usize },
}

/// Blocks printed as `[0, 8) [8, 12)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocks(pub Vec<Block>);

impl fmt::Display for Blocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (lo, hi)) in self.0.iter().enumerate() {
            let gap = if i == 0 { "" } else { " " };
            write!(f, "{gap}[{lo}, {hi})")?;
        }
        Ok(())
    }
}

/// Process counts printed as `1, 2, 4, 8 or 16`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessCounts(pub Vec<usize>);

impl fmt::Display for ProcessCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = &self.0;
        for (i, count) in counts.iter().enumerate() {
            let gap = match i {
                0 => "",
                i if i + 1 == counts.len() => " or ",
                _ => ", ",
            };
            write!(f, "{gap}{count}")?;
        }
        Ok(())
    }
}

/// Checks that `blocks` are contiguous, in order, cover `[0, m)` and are all tree nodes.
pub fn validate_layout(m: usize, blocks: &[Block]) -> Result<(), LayoutError> {
    if m == 0 || blocks.is_empty() {
        return Err(LayoutError::Empty);
    }
    let mut expected = 0;
    for (index, &(lo, hi)) in blocks.iter().enumerate() {
        if lo != expected || hi <= lo {
            return Err(LayoutError::NotContiguous {
                index,
                found: Blocks(vec![(lo, hi)]),
                expected,
            });
        }
        expected = hi;
    }
    if expected != m {
        return Err(LayoutError::NotCovering { end: expected, m });
    }
    match blocks.iter().find(|&&(lo, hi)| !is_node(m, lo, hi)) {
        None => Ok(()),
        Some(&bad) => Err(LayoutError::NotASubtree {
            block: Blocks(vec![bad]),
            m,
            processes: blocks.len(),
            valid: ProcessCounts(equal_block_counts(m)),
            alternative: Blocks(subtree_layout(m, blocks.len())?),
        }),
    }
}

/// Splits `[0, m)` into `p` contiguous blocks as equal as possible (the first `m % p` one
/// larger, as [`crate::reduce::shard_range`] does), refusing the split if those blocks are
/// not tree nodes. Succeeds for every count in [`equal_block_counts`], and for some others
/// (16 workers over 9 processes: seven blocks of 2, two of 1).
pub fn even_layout(m: usize, p: usize) -> Result<Vec<Block>, LayoutError> {
    if p == 0 || p > m {
        return Err(LayoutError::BadProcessCount { m, processes: p });
    }
    let blocks = equal_blocks(m, p);
    validate_layout(m, &blocks)?;
    Ok(blocks)
}

/// A layout of exactly `p` tree nodes, as even as the tree allows: start from the root and
/// split the largest block (the leftmost among equals) until there are `p`. Exists for
/// every `1 ≤ p ≤ m`.
pub fn subtree_layout(m: usize, p: usize) -> Result<Vec<Block>, LayoutError> {
    if p == 0 || p > m {
        return Err(LayoutError::BadProcessCount { m, processes: p });
    }
    let mut blocks = vec![(0, m)];
    while blocks.len() < p {
        let (index, &(lo, hi)) = blocks
            .iter()
            .enumerate()
            .rev()
            .max_by_key(|&(_, &(lo, hi))| hi - lo)
            .expect("at least one block");
        let mid = split(lo, hi);
        blocks.splice(index..=index, [(lo, mid), (mid, hi)]);
    }
    Ok(blocks)
}

/// The blocks of `m` workers over `hosts` hosts of `per_host` processes each, host by host:
/// host h owns the h-th block of [`even_layout`]`(m, hosts)`, and its processes split that
/// node evenly. A node's subtree has the shape of the tree over `[0, n)` shifted (a split
/// depends only on the node's size), so a host can reduce its processes' blocks as a tree of
/// its own and obtain its node's sum. Refused, with [`validate_layout`]'s error naming the
/// total process count, where a process block would not be a node.
pub fn host_layout(m: usize, hosts: usize, per_host: usize) -> Result<Vec<Block>, LayoutError> {
    let processes = hosts.saturating_mul(per_host);
    let host_blocks = even_layout(m, hosts)?;
    let mut blocks = Vec::with_capacity(processes);
    for (lo, hi) in host_blocks {
        if per_host == 0 || per_host > hi - lo {
            return Err(LayoutError::BadProcessCount { m, processes });
        }
        blocks.extend(
            equal_blocks(hi - lo, per_host)
                .into_iter()
                .map(|(a, b)| (lo + a, lo + b)),
        );
    }
    validate_layout(m, &blocks)?;
    Ok(blocks)
}

/// The process counts `p` that divide `m` into `p` equal blocks that are all tree nodes.
pub fn equal_block_counts(m: usize) -> Vec<usize> {
    (1..=m)
        .filter(|&p| m.is_multiple_of(p))
        .filter(|&p| {
            equal_blocks(m, p)
                .iter()
                .all(|&(lo, hi)| is_node(m, lo, hi))
        })
        .collect()
}

fn equal_blocks(m: usize, p: usize) -> Vec<Block> {
    (0..p)
        .map(|i| {
            let range = shard_range(m, p, i);
            (range.start, range.end)
        })
        .collect()
}

/// Sums `leaves` (one slice per logical worker, all as long as `out`) into `out` along the
/// tree over `[0, leaves.len())`.
///
/// # Panics
/// If `leaves` is empty or a leaf's length differs from `out`'s.
pub fn sum_into(out: &mut [f32], leaves: &[&[f32]]) {
    let m = leaves.len();
    assert!(m > 0, "a tree sum needs at least one leaf");
    let terminal = |lo: usize, hi: usize| (hi - lo == 1).then(|| leaves[lo]);
    reduce(out, m, leaves, &terminal);
}

/// Combines the block sums of a valid layout (each the tree sum of its block, e.g. from
/// [`sum_into`] over that block's leaves) along the tree over `[0, m)`. The result has
/// exactly the bits of [`sum_into`] over all `m` leaves.
///
/// # Panics
/// If `block_sums` and `blocks` differ in number, or a block sum's length differs from
/// `out`'s.
pub fn combine_blocks(
    out: &mut [f32],
    m: usize,
    blocks: &[Block],
    block_sums: &[&[f32]],
) -> Result<(), LayoutError> {
    validate_layout(m, blocks)?;
    assert_eq!(
        blocks.len(),
        block_sums.len(),
        "one block sum per block is needed"
    );
    let terminal = |lo: usize, hi: usize| {
        let index = blocks.binary_search_by_key(&lo, |&(start, _)| start).ok()?;
        (blocks[index].1 == hi).then(|| block_sums[index])
    };
    reduce(out, m, block_sums, &terminal);
    Ok(())
}

/// Returns the precomputed sum of a node, if the node is one of the inputs.
type Terminal<'a, 'f> = dyn Fn(usize, usize) -> Option<&'a [f32]> + 'f;

/// Walks the tree over `[0, m)` chunk by chunk; `terminal` says which nodes are inputs.
fn reduce(out: &mut [f32], m: usize, inputs: &[&[f32]], terminal: &Terminal<'_, '_>) {
    for input in inputs {
        assert_eq!(input.len(), out.len(), "every input must be as long as out");
    }
    let mut scratch = vec![0.0; height(m) * CHUNK.min(out.len())];
    let mut start = 0;
    for out_chunk in out.chunks_mut(CHUNK) {
        let range = start..start + out_chunk.len();
        let chunk_of = |lo, hi| terminal(lo, hi).map(|sum: &[f32]| &sum[range.clone()]);
        reduce_node(out_chunk, 0, m, &chunk_of, &mut scratch);
        start = range.end;
    }
}

/// `out = sum of node [lo, hi)`. The left child accumulates in `out`; the right child, when
/// not an input, in the first `out.len()` floats of `scratch`, its own right children
/// further along.
fn reduce_node(
    out: &mut [f32],
    lo: usize,
    hi: usize,
    terminal: &Terminal<'_, '_>,
    scratch: &mut [f32],
) {
    if let Some(sum) = terminal(lo, hi) {
        out.copy_from_slice(sum);
        return;
    }
    let mid = split(lo, hi);
    reduce_node(out, lo, mid, terminal, scratch);
    match terminal(mid, hi) {
        Some(right) => add_assign(out, right),
        None => {
            let (right, deeper) = scratch.split_at_mut(out.len());
            reduce_node(right, mid, hi, terminal, deeper);
            add_assign(out, right);
        }
    }
}

/// `out[i] = out[i] + right[i]`, left operand first.
fn add_assign(out: &mut [f32], right: &[f32]) {
    for (left, right) in out.iter_mut().zip(right) {
        *left += *right;
    }
}

/// Shards: the all-reduce over processes splits the vector into one contiguous shard per
/// process, each reduced by its owner.
/// The `shard`-th of `num_shards` contiguous shards of `0..len`; the first `len % num_shards`
/// shards are one longer.
///
/// # Panics
/// If `shard >= num_shards`.
pub fn shard_range(len: usize, num_shards: usize, shard: usize) -> Range<usize> {
    assert!(
        shard < num_shards,
        "shard {shard} of {num_shards} does not exist"
    );
    let base = len / num_shards;
    let longer = len % num_shards;
    let start = shard * base + shard.min(longer);
    let end = start + base + usize::from(shard < longer);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_at_the_largest_power_of_two_strictly_below_n() {
        assert_eq!(split(0, 2), 1);
        assert_eq!(split(0, 3), 2);
        assert_eq!(split(0, 4), 2);
        assert_eq!(split(0, 5), 4);
        assert_eq!(split(10, 17), 14);
        assert_eq!(split(0, 16), 8);
        assert_eq!(split(0, 17), 16);
    }

    #[test]
    fn nodes_of_a_seven_worker_tree() {
        let nodes = [
            (0, 7),
            (0, 4),
            (4, 7),
            (0, 2),
            (2, 4),
            (4, 6),
            (6, 7),
            (5, 6),
        ];
        for (lo, hi) in nodes {
            assert!(is_node(7, lo, hi), "[{lo}, {hi})");
        }
        for (lo, hi) in [(0, 3), (1, 3), (3, 5), (4, 5 + 3), (2, 2), (0, 8)] {
            assert!(!is_node(7, lo, hi), "[{lo}, {hi})");
        }
    }

    #[test]
    fn sixteen_workers_over_three_processes_suggests_valid_layouts() {
        let error = even_layout(16, 3).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("block [0, 6)"), "{message}");
        assert!(
            message.contains("use 1, 2, 4, 8 or 16 processes"),
            "{message}"
        );
        assert!(message.contains("[0, 4) [4, 8) [8, 16)"), "{message}");
        assert_eq!(even_layout(16, 4).unwrap()[1], (4, 8));
        assert_eq!(equal_block_counts(6), [1, 3, 6]);
        assert_eq!(even_layout(16, 9).unwrap()[8], (15, 16));
    }

    #[test]
    fn hosts_sum_their_node_as_a_tree_of_its_own_and_the_total_keeps_its_bits() {
        // Values whose sum depends on the grouping, so a wrong tree shows.
        let leaf = |w: usize| -> Vec<f32> {
            (0..9)
                .map(|i| 3f32.powi((w * 5 % 17) as i32 - 8) * (1.0 + i as f32 * 0.1))
                .collect()
        };
        let mut checked = 0;
        for m in 1..=24 {
            let leaves: Vec<Vec<f32>> = (0..m).map(leaf).collect();
            let views: Vec<&[f32]> = leaves.iter().map(Vec::as_slice).collect();
            let mut whole = vec![0f32; 9];
            sum_into(&mut whole, &views);
            for hosts in 1..=m {
                for per_host in 1..=m / hosts {
                    let Ok(blocks) = host_layout(m, hosts, per_host) else {
                        continue;
                    };
                    validate_layout(m, &blocks).unwrap();
                    let host_blocks = even_layout(m, hosts).unwrap();
                    let mut host_sums = Vec::new();
                    for (h, &(lo, hi)) in host_blocks.iter().enumerate() {
                        let mine = &blocks[h * per_host..(h + 1) * per_host];
                        assert_eq!((mine[0].0, mine[per_host - 1].1), (lo, hi));
                        // Each process's block sum, then the host's combine over its own
                        // tree of hi - lo workers, in coordinates shifted by lo.
                        let sums: Vec<Vec<f32>> = mine
                            .iter()
                            .map(|&(a, b)| {
                                let mut sum = vec![0f32; 9];
                                sum_into(&mut sum, &views[a..b]);
                                sum
                            })
                            .collect();
                        let local: Vec<Block> =
                            mine.iter().map(|&(a, b)| (a - lo, b - lo)).collect();
                        let sum_views: Vec<&[f32]> = sums.iter().map(Vec::as_slice).collect();
                        let mut host_sum = vec![0f32; 9];
                        combine_blocks(&mut host_sum, hi - lo, &local, &sum_views).unwrap();
                        host_sums.push(host_sum);
                    }
                    let host_views: Vec<&[f32]> = host_sums.iter().map(Vec::as_slice).collect();
                    let mut total = vec![0f32; 9];
                    combine_blocks(&mut total, m, &host_blocks, &host_views).unwrap();
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&total), bits(&whole), "m {m}, {hosts} x {per_host}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "only {checked} layouts checked");
        assert_eq!(
            host_layout(16, 2, 2).unwrap(),
            [(0, 4), (4, 8), (8, 12), (12, 16)]
        );
    }

    #[test]
    fn host_layouts_whose_blocks_are_not_nodes_are_refused() {
        let message = host_layout(16, 2, 3).unwrap_err().to_string();
        assert!(message.contains("not a subtree"), "{message}");
        assert!(message.contains("over 6 processes"), "{message}");
        assert_eq!(
            host_layout(4, 2, 3),
            Err(LayoutError::BadProcessCount { m: 4, processes: 6 })
        );
        assert!(host_layout(16, 3, 1).is_err());
    }

    #[test]
    fn suggested_subtree_layouts_are_valid_for_every_count() {
        for m in 1..=40 {
            for p in 1..=m {
                let blocks = subtree_layout(m, p).unwrap();
                assert_eq!(blocks.len(), p);
                validate_layout(m, &blocks).unwrap();
            }
            for p in equal_block_counts(m) {
                assert_eq!(m % p, 0);
                even_layout(m, p).unwrap();
            }
        }
    }

    #[test]
    fn malformed_layouts_are_refused() {
        assert_eq!(validate_layout(0, &[]), Err(LayoutError::Empty));
        assert!(matches!(
            validate_layout(4, &[(0, 2), (3, 4)]),
            Err(LayoutError::NotContiguous { index: 1, .. })
        ));
        assert!(matches!(
            validate_layout(4, &[(0, 2)]),
            Err(LayoutError::NotCovering { end: 2, m: 4 })
        ));
        assert!(matches!(
            even_layout(4, 5),
            Err(LayoutError::BadProcessCount { .. })
        ));
    }

    #[test]
    fn sum_spans_several_chunks() {
        let len = 2 * CHUNK + 3;
        let leaves: Vec<Vec<f32>> = (0..5).map(|i| vec![i as f32; len]).collect();
        let leaves: Vec<&[f32]> = leaves.iter().map(Vec::as_slice).collect();
        let mut out = vec![f32::NAN; len];
        sum_into(&mut out, &leaves);
        assert!(out.iter().all(|&x| x == 10.0));
    }
}
