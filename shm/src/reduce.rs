//! Sharded cross-process all-reduce along the canonical tree.
//!
//! Processes `0..P` own the blocks of a valid layout (see [`gnc_tree`]). Per iteration:
//!
//! 1. process p writes its block sum in place into slot p of the *block sums* array and
//!    publishes it;
//! 2. process p reduces parameter shard p ([`shard_range`]) over all P block sums, in tree
//!    order ([`tree::combine_blocks`]), writing straight into slot p of the *shards* array,
//!    publishes it, and finishes reading the block sums;
//! 3. every process reads all P reduced shards where they lie: [`ShardedReducer::all_reduce`]
//!    hands each shard slice to the caller's visitor while the shard slot is held, then
//!    finishes reading the shards. A worker copies them straight into its tensors, so the
//!    reduced vector is copied once, not into a private vector first
//!    ([`ShardedReducer::all_reduce_into`] is that private-vector form, for tests and tools).
//!
//! Each element is combined by the same tree whichever process reduces it, so sharding
//! changes no bits. The same code path reduces any per-worker sum (gradients, BatchNorm
//! statistics): one [`ShardedReducer`] per quantity, with its own two segments.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use crate::geometry::Geometry;
use crate::slots::{Producer, Reader, SlotArray, SlotError};
use gnc_tree::{self as tree, Block, LayoutError};

pub use gnc_tree::shard_range;

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
    /// sum of its block, e.g. [`tree::sum_into`]); then `read_shard` is called once per shard,
    /// in order, with the shard's range in the vector and its reduced values, which are the
    /// tree sum over all `m` workers bit for bit. The slices borrow the shard slots: they
    /// cannot outlive the call, and no producer overwrites them before the call returns (this
    /// reader finishes the iteration only after the last visit). Each wait gives up after
    /// `timeout`.
    pub fn all_reduce(
        &mut self,
        iteration: u64,
        fill_block_sum: impl FnOnce(&mut [f32]),
        read_shard: impl FnMut(Range<usize>, &[f32]),
        timeout: Duration,
    ) -> Result<(), ReduceError> {
        self.all_reduce_across(iteration, fill_block_sum, |_| {}, read_shard, timeout)
    }

    /// [`ShardedReducer::all_reduce`] with one more step: this process's reduced shard — the
    /// tree sum over the `m` workers of this reduction — passes through `across` before any
    /// process reads it, which may replace it in place. The hierarchical reduction across
    /// hosts uses it: here the `m` workers are one host's block, and `across` turns the
    /// shard of the host's sum into the shard of the sum over all hosts (gnc-mpi), so the
    /// processes of a host exchange only their own shard with the other hosts.
    pub fn all_reduce_across(
        &mut self,
        iteration: u64,
        fill_block_sum: impl FnOnce(&mut [f32]),
        across: impl FnOnce(&mut [f32]),
        mut read_shard: impl FnMut(Range<usize>, &[f32]),
        timeout: Duration,
    ) -> Result<(), ReduceError> {
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
        across(&mut reduced[..shard.len()]);
        reduced.publish();
        drop(block_shards);
        self.block_sum_reader.finish(iteration)?;

        for slot in 0..processes {
            let shard = shard_range(self.len, processes, slot);
            let reduced = self.shard_reader.wait_for(slot, iteration, timeout)?;
            let len = shard.len();
            read_shard(shard, &reduced[..len]);
        }
        self.shard_reader.finish(iteration)?;
        Ok(())
    }

    /// [`ShardedReducer::all_reduce`] that copies the reduced vector into `out`, which must
    /// be exactly as long as the reduction.
    pub fn all_reduce_into(
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
        self.all_reduce(
            iteration,
            fill_block_sum,
            |range, reduced| out[range].copy_from_slice(reduced),
            timeout,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::SegmentSpec;
    use crate::naming::{job_id, segment_name};
    use crate::segment::Segment;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn arrays(test: &str, processes: u32, len: usize) -> (Arc<SlotArray>, Arc<SlotArray>) {
        let job = format!("reducetest{}{test}", std::process::id());
        let geometry = ReductionGeometry::new(processes, len);
        let array = |what, geometry| {
            let name = segment_name(&job, 1, what).unwrap();
            let spec = SegmentSpec {
                job_id: job_id(&job),
                generation: 1,
                geometry,
            };
            Arc::new(SlotArray::new(Segment::create(&name, &spec).unwrap()).unwrap())
        };
        (
            array("blocksums", geometry.block_sums),
            array("shards", geometry.shards),
        )
    }

    /// Process p's block sum at `iteration`: distinct values whose sum order matters.
    fn block_sum(p: usize, iteration: u64, len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (1.0 + i as f32 * 1e-3) * 3f32.powi(p as i32 * 7 - 9) + iteration as f32)
            .collect()
    }

    #[test]
    fn two_reducers_visit_every_shard_in_place_with_the_tree_sum() {
        const LEN: usize = 1001;
        let blocks = tree::even_layout(8, 2).unwrap();
        let (sums, shards) = arrays("visit", 2, LEN);
        let threads: Vec<_> = (0..2)
            .map(|p| {
                let (sums, shards, blocks) = (sums.clone(), shards.clone(), blocks.clone());
                std::thread::spawn(move || {
                    let mut reducer = ShardedReducer::new(p, 8, &blocks, LEN, sums, shards)?;
                    let mut seen = Vec::new();
                    for iteration in 0..3 {
                        let mine = block_sum(p, iteration, LEN);
                        let mut visits = Vec::new();
                        reducer.all_reduce(
                            iteration,
                            |slot| slot.copy_from_slice(&mine),
                            |range, shard| visits.push((range, shard.to_vec())),
                            TIMEOUT,
                        )?;
                        seen.push(visits);
                    }
                    Ok::<_, ReduceError>(seen)
                })
            })
            .collect();
        for thread in threads {
            let seen = thread.join().unwrap().unwrap();
            for (iteration, visits) in seen.into_iter().enumerate() {
                let inputs: Vec<Vec<f32>> = (0..2)
                    .map(|p| block_sum(p, iteration as u64, LEN))
                    .collect();
                let views: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
                let mut expected = vec![0f32; LEN];
                tree::combine_blocks(&mut expected, 8, &blocks, &views).unwrap();
                let ranges: Vec<_> = visits.iter().map(|(range, _)| range.clone()).collect();
                assert_eq!(ranges, [shard_range(LEN, 2, 0), shard_range(LEN, 2, 1)]);
                for (range, values) in visits {
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&values), bits(&expected[range]));
                }
            }
        }
    }

    #[test]
    fn what_across_makes_of_a_shard_is_what_every_process_reads() {
        const LEN: usize = 11;
        let blocks = tree::even_layout(4, 2).unwrap();
        let (sums, shards) = arrays("across", 2, LEN);
        let threads: Vec<_> = (0..2)
            .map(|p| {
                let (sums, shards, blocks) = (sums.clone(), shards.clone(), blocks.clone());
                std::thread::spawn(move || {
                    let mut reducer = ShardedReducer::new(p, 4, &blocks, LEN, sums, shards)?;
                    let mut out = vec![0f32; LEN];
                    reducer.all_reduce_across(
                        0,
                        |slot| slot.fill(p as f32 + 1.0),
                        // Each process's own shard only: its reduced values times 10 + p.
                        |shard| shard.iter_mut().for_each(|x| *x = *x * 10.0 + p as f32),
                        |range, shard| out[range].copy_from_slice(shard),
                        TIMEOUT,
                    )?;
                    Ok::<_, ReduceError>(out)
                })
            })
            .collect();
        let mut expected = vec![30.0; shard_range(LEN, 2, 0).len()];
        expected.extend(vec![31.0; shard_range(LEN, 2, 1).len()]);
        for thread in threads {
            assert_eq!(thread.join().unwrap().unwrap(), expected);
        }
    }

    #[test]
    fn all_reduce_into_refuses_an_output_of_the_wrong_length() {
        let blocks = tree::even_layout(4, 1).unwrap();
        let (sums, shards) = arrays("outlen", 1, 10);
        let mut reducer = ShardedReducer::new(0, 4, &blocks, 10, sums, shards).unwrap();
        let error = reducer
            .all_reduce_into(0, |_| {}, &mut [0f32; 9], TIMEOUT)
            .unwrap_err();
        assert_eq!(
            error,
            ReduceError::OutputLen {
                expected: 10,
                found: 9
            }
        );
        let mut out = [0f32; 10];
        reducer
            .all_reduce_into(0, |slot| slot.fill(2.5), &mut out, TIMEOUT)
            .unwrap();
        assert_eq!(out, [2.5; 10]);
    }

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
