//! One generation's shared-memory segments, created by the supervisor and unlinked when
//! dropped (every worker maps them by name; a killed supervisor leaves them to the cleaner).

use gnc_contract::protocol::{self, GENERATION_WORD};
use gnc_shm::{ControlBlock, Segment, SegmentError};

pub struct GenerationSegments {
    processes: usize,
    control: ControlBlock,
    _block_sums: Segment,
    _shards: Segment,
}

impl GenerationSegments {
    /// Creates the control block (with the generation published in it) and the two
    /// reduction segments for `processes` processes and bundles of `len` floats.
    pub fn create(
        shm_job: &str,
        generation: u64,
        processes: usize,
        len: usize,
    ) -> Result<Self, SegmentError> {
        let name = |what| protocol::name(shm_job, generation, what);
        let control =
            ControlBlock::create(&name(protocol::CONTROL), protocol::control_words(processes))?;
        control.store(GENERATION_WORD, generation);
        let (sums, shards) = protocol::reduction_specs(shm_job, generation, processes, len);
        Ok(GenerationSegments {
            _block_sums: Segment::create(&name(protocol::BLOCK_SUMS), &sums)?,
            _shards: Segment::create(&name(protocol::SHARDS), &shards)?,
            processes,
            control,
        })
    }

    /// Worker processes the segments are sized for.
    pub fn processes(&self) -> usize {
        self.processes
    }

    pub(crate) fn control(&self) -> &ControlBlock {
        &self.control
    }
}
