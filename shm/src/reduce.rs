//! Sharded cross-process all-reduce along the canonical tree.
//!
//! Processes `0..P` own the blocks of a valid layout (see [`crate::tree`]). Per iteration:
//!
//! 1. process p writes its block sum in place into slot p of the *block sums* array and
//!    publishes it;
//! 2. process p reduces parameter shard p ([`shard_range`]) over all P block sums, in tree
//!    order ([`tree::combine_blocks`]), writing straight into slot p of the *shards* array,
//!    publishes it, and finishes reading the block sums;
//! 3. every process copies all P shards into its output and finishes reading the shards.
//!
//! Each element is combined by the same tree whichever process reduces it, so sharding
//! changes no bits. The same code path reduces any per-worker sum (gradients, BatchNorm
//! statistics): one [`ShardedReducer`] per quantity, with its own two segments.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use crate::geometry::Geometry;
use crate::slots::{Producer, Reader, SlotArray, SlotError};
use crate::tree::{self, Block, LayoutError};

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

/// Shapes of the two segments a reduction of `len` floats over `processes` processes needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReductionGeometry {
    /// One slot per process holding its block sum, read by every process.
    pub block_sums: Geometry,
    /// One slot per process holding its reduced shard, read by every process.
    pub shards: Geometry,
}

impl ReductionGeometry {
    pub fn new(processes: u32, len: usize) -> Self {
        let longest_shard = shard_range(len, processes as usize, 0).len();
        Self {
            block_sums: Geometry::new(processes, processes, len as u64),
            shards: Geometry::new(processes, processes, longest_shard as u64),
        }
    }
}

/// Why a reduction could not be set up or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReduceError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Slot(#[from] SlotError),
    #[error("process {process} does not exist in a layout of {processes} blocks")]
    NoSuchProcess { process: usize, processes: usize },
    #[error("the {which} segment has geometry {found}, expected {expected}")]
    Geometry {
        which: &'static str,
        expected: Geometry,
        found: Geometry,
    },
    #[error("the output has {found} floats, the reduction {expected}")]
    OutputLen { expected: usize, found: usize },
}

/// Process `process`'s part in the sharded all-reduce of `len` floats.
#[derive(Debug)]
pub struct ShardedReducer {
    m: usize,
    blocks: Vec<Block>,
    process: usize,
    len: usize,
    block_sum_slot: Producer,
    block_sum_reader: Reader,
    shard_slot: Producer,
    shard_reader: Reader,
}

impl ShardedReducer {
    /// Validates the layout and the segments' geometry, and claims this process's slot and
    /// reader index in both arrays.
    pub fn new(
        process: usize,
        m: usize,
        blocks: &[Block],
        len: usize,
        block_sums: Arc<SlotArray>,
        shards: Arc<SlotArray>,
    ) -> Result<Self, ReduceError> {
        tree::validate_layout(m, blocks)?;
        let processes = blocks.len();
        if process >= processes {
            return Err(ReduceError::NoSuchProcess { process, processes });
        }
        let expected = ReductionGeometry::new(processes as u32, len);
        for (which, array, expected) in [
            ("block sums", &block_sums, expected.block_sums),
            ("shards", &shards, expected.shards),
        ] {
            if array.geometry() != expected {
                return Err(ReduceError::Geometry {
                    which,
                    expected,
                    found: array.geometry(),
                });
            }
        }
        Ok(Self {
            m,
            blocks: blocks.to_vec(),
            process,
            len,
            block_sum_slot: Producer::claim(block_sums.clone(), process)?,
            block_sum_reader: Reader::claim(block_sums, process)?,
            shard_slot: Producer::claim(shards.clone(), process)?,
            shard_reader: Reader::claim(shards, process)?,
        })
    }

    /// The logical workers whose sum this process contributes.
    pub fn block(&self) -> Block {
        self.blocks[self.process]
    }

    /// One all-reduce: `fill_block_sum` writes this process's block sum in place (the tree
    /// sum of its block, e.g. [`tree::sum_into`]); afterwards `out` holds the tree sum over
    /// all `m` workers, bit for bit. Each wait gives up after `timeout`.
    pub fn all_reduce(
        &mut self,
        iteration: u64,
        fill_block_sum: impl FnOnce(&mut [f32]),
        out: &mut [f32],
        timeout: Duration,
    ) -> Result<(), ReduceError> {
        if out.len() != self.len {
            return Err(ReduceError::OutputLen {
                expected: self.len,
                found: out.len(),
            });
        }
        let processes = self.blocks.len();

        let mut block_sum = self.block_sum_slot.begin_write(iteration, timeout)?;
        fill_block_sum(&mut block_sum);
        block_sum.publish();

        let shard = shard_range(self.len, processes, self.process);
        let mut block_shards = Vec::with_capacity(processes);
        for slot in 0..processes {
            let block_sum = self.block_sum_reader.wait_for(slot, iteration, timeout)?;
            block_shards.push(&block_sum[shard.clone()]);
        }
        let mut reduced = self.shard_slot.begin_write(iteration, timeout)?;
        tree::combine_blocks(
            &mut reduced[..shard.len()],
            self.m,
            &self.blocks,
            &block_shards,
        )?;
        reduced.publish();
        drop(block_shards);
        self.block_sum_reader.finish(iteration)?;

        for slot in 0..processes {
            let shard = shard_range(self.len, processes, slot);
            let reduced = self.shard_reader.wait_for(slot, iteration, timeout)?;
            out[shard.clone()].copy_from_slice(&reduced[..shard.len()]);
        }
        self.shard_reader.finish(iteration)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_contiguous_cover_and_front_load_the_remainder() {
        for len in 0..40 {
            for num_shards in 1..9 {
                let shards: Vec<_> = (0..num_shards)
                    .map(|shard| shard_range(len, num_shards, shard))
                    .collect();
                assert_eq!(shards[0].start, 0);
                assert_eq!(shards[num_shards - 1].end, len);
                for pair in shards.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start);
                    assert!(pair[0].len() >= pair[1].len());
                    assert!(pair[0].len() <= pair[1].len() + 1);
                }
            }
        }
        assert_eq!(shard_range(10, 3, 0), 0..4);
        assert_eq!(shard_range(10, 3, 2), 7..10);
    }
}
