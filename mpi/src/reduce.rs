//! The deterministic all-reduce over an MPI communicator.

use gnc_tree::shard_range;
use gnc_tree::{self as tree, Block, LayoutError};
use mpi::Count;
use mpi::datatype::{Partition, PartitionMut};
use mpi::traits::*;

/// Why a reduction cannot be set up or run.
#[derive(Debug, thiserror::Error)]
pub enum ReduceError {
    #[error("{ranks} MPI ranks but {blocks} blocks of logical workers: one block per rank")]
    Ranks { ranks: usize, blocks: usize },
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("{len} floats is more than one MPI call can count")]
    TooLong { len: usize },
    #[error("a block sum of {found} floats where the reduction is of {expected}")]
    Len { expected: usize, found: usize },
}

/// One rank's side of the all-reduce of `len` floats over `m` logical workers, rank r holding
/// the sum of `blocks[r]`. Shard j (`gnc_tree::shard_range`) is reduced by rank j. MPI reads the
/// shards straight from the caller's block sum and writes the reduced ones straight into the
/// caller's output (variable-count collectives), so the only pass over the data gnc makes
/// itself is the combine.
pub struct MpiReducer<C: Communicator> {
    comm: C,
    rank: usize,
    m: usize,
    blocks: Vec<Block>,
    len: usize,
    /// Shard j's length and offset in the vector.
    counts: Vec<Count>,
    offsets: Vec<Count>,
    /// What the all-to-all sends to each rank: `counts`, but nothing to this rank, whose own
    /// shard is read where it lies.
    send_counts: Vec<Count>,
    /// Shard `rank` of every other rank's block sum, in rank order, and where each begins.
    received: Vec<f32>,
    received_counts: Vec<Count>,
    received_offsets: Vec<Count>,
    /// This rank's reduced shard.
    reduced: Vec<f32>,
}

impl<C: Communicator> MpiReducer<C> {
    /// Checks that `blocks` is a valid layout of `m` workers with one block per rank.
    pub fn new(comm: C, m: usize, blocks: Vec<Block>, len: usize) -> Result<Self, ReduceError> {
        let ranks = comm.size() as usize;
        if ranks != blocks.len() {
            return Err(ReduceError::Ranks {
                ranks,
                blocks: blocks.len(),
            });
        }
        tree::validate_layout(m, &blocks)?;
        if Count::try_from(len).is_err() {
            return Err(ReduceError::TooLong { len });
        }
        let rank = comm.rank() as usize;
        let shards: Vec<_> = (0..ranks).map(|s| shard_range(len, ranks, s)).collect();
        let mine = shards[rank].len();
        let counts: Vec<Count> = shards.iter().map(|r| r.len() as Count).collect();
        let mut send_counts = counts.clone();
        send_counts[rank] = 0;
        let mut received_counts = vec![mine as Count; ranks];
        received_counts[rank] = 0;
        Ok(MpiReducer {
            counts,
            offsets: shards.iter().map(|r| r.start as Count).collect(),
            send_counts,
            received: vec![0.0; mine * ranks],
            received_counts,
            received_offsets: (0..ranks).map(|r| (r * mine) as Count).collect(),
            reduced: vec![0.0; mine],
            rank,
            comm,
            m,
            blocks,
            len,
        })
    }

    /// Every rank passes its block sum; every rank gets, in `out`, the tree sum over all `m`
    /// workers, bit for bit the one-host sum.
    pub fn all_reduce(&mut self, block_sum: &[f32], out: &mut [f32]) -> Result<(), ReduceError> {
        self.check_len(out.len())?;
        self.reduce_own_shard(block_sum)?;
        self.gather(out);
        Ok(())
    }

    /// [`MpiReducer::all_reduce`] with the block sum and the total in one vector: every
    /// shard a rank sends is read before any reduced shard is written back.
    pub fn all_reduce_in_place(&mut self, values: &mut [f32]) -> Result<(), ReduceError> {
        self.reduce_own_shard(values)?;
        self.gather(values);
        Ok(())
    }

    fn check_len(&self, found: usize) -> Result<(), ReduceError> {
        if found != self.len {
            return Err(ReduceError::Len {
                expected: self.len,
                found,
            });
        }
        Ok(())
    }

    /// The all-to-all of shards, then the combine of this rank's shard in the tree's order.
    fn reduce_own_shard(&mut self, block_sum: &[f32]) -> Result<(), ReduceError> {
        self.check_len(block_sum.len())?;
        let ranks = self.blocks.len();
        let mine = self.reduced.len();
        // This rank's own shard is read where it lies, in `block_sum`: MPI moves only what
        // crosses ranks (a zero count to and from itself).
        self.comm.all_to_all_varcount_into(
            &Partition::new(block_sum, &self.send_counts[..], &self.offsets[..]),
            &mut PartitionMut::new(
                &mut self.received[..],
                &self.received_counts[..],
                &self.received_offsets[..],
            ),
        );
        let own = &block_sum[self.offsets[self.rank] as usize..][..mine];
        let shards: Vec<&[f32]> = (0..ranks)
            .map(|r| {
                if r == self.rank {
                    own
                } else {
                    &self.received[r * mine..(r + 1) * mine]
                }
            })
            .collect();
        tree::combine_blocks(&mut self.reduced, self.m, &self.blocks, &shards)?;
        Ok(())
    }

    /// Every rank's reduced shard, written where it belongs in `out`.
    fn gather(&mut self, out: &mut [f32]) {
        self.comm.all_gather_varcount_into(
            &self.reduced[..],
            &mut PartitionMut::new(out, &self.counts[..], &self.offsets[..]),
        );
    }
}
