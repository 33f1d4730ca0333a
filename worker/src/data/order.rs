//! Which examples each logical worker sees at each iteration.
//!
//! Epoch e visits the training set in the order of a permutation drawn from
//! (seed, DataOrder, e). Iteration k of the epoch takes the large batch d_t = the k-th run of
//! B = b·M indices, and logical worker i takes its b-long slice d_t^i (Algorithm 1,
//! "Choose local mini-batch d_t^i with size b from d_t"). The last partial large batch of an
//! epoch is dropped, so every iteration has exactly B examples.

use crate::rng::{Purpose, Stream};

/// The training order of one epoch.
pub struct EpochOrder {
    pub epoch: u64,
    order: Vec<u32>,
    small_batch: usize,
    workers: usize,
}

impl EpochOrder {
    /// `purpose` is DataOrder for the main batch, SecondBatchOrder for NE's independent batch.
    pub fn new(
        seed: u64,
        purpose: Purpose,
        epoch: u64,
        examples: usize,
        workers: usize,
        small_batch: usize,
    ) -> EpochOrder {
        EpochOrder {
            epoch,
            order: Stream::new(seed, purpose, &[epoch]).permutation(examples),
            small_batch,
            workers,
        }
    }

    /// Indices of logical worker `worker`'s small batch at iteration `k` of the epoch.
    pub fn worker_batch(&self, k: u64, worker: usize) -> &[u32] {
        let start = (k as usize * self.workers + worker) * self.small_batch;
        &self.order[start..start + self.small_batch]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_split_the_large_batch_without_overlap() {
        let o = EpochOrder::new(5, Purpose::DataOrder, 2, 100, 4, 3);
        assert_eq!(gnc_contract::plan::iterations_per_epoch(100, 4, 3), 8);
        let mut seen = Vec::new();
        for k in 0..8 {
            for w in 0..4 {
                seen.extend_from_slice(o.worker_batch(k, w));
            }
        }
        assert_eq!(seen.len(), 96);
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 96, "no example twice in an epoch");
    }
}
