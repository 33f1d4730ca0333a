//! A control block: a segment of independent `u64` words, each on its own cache line, that
//! the supervisor and its workers use for things too small for a slot array — progress
//! counters, "my checkpoint part is durable" marks, the current generation.
//!
//! The payload is a slot array's reader area with no slots ([`Geometry`] `slots = 0`,
//! `readers = words`), so the header, its checks and the cleaner work unchanged. Each word
//! has one writer by convention (the supervisor for shared words, worker p for its own); a
//! value is published with a `Release` store ([`ControlBlock::store`]) and read with an
//! `Acquire` load ([`ControlBlock::load`]), so whatever the writer did before the store
//! (e.g. fsync a file) happens before what a reader does after seeing the value.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::geometry::Geometry;
use crate::header::SegmentSpec;
use crate::naming::{SegmentName, job_id};
use crate::segment::{Segment, SegmentError};

/// A mapped control block of `words` words.
#[derive(Debug)]
pub struct ControlBlock {
    segment: Segment,
    words: usize,
}

/// The header spec of a control block of `words` words for `job` at `generation`.
pub fn control_spec(job: &str, generation: u64, words: usize) -> SegmentSpec {
    SegmentSpec {
        job_id: job_id(job),
        generation,
        geometry: Geometry::new(0, words as u32, 0),
    }
}

impl ControlBlock {
    /// Creates the segment `name` with `words` zeroed words (the creator unlinks it on drop).
    pub fn create(name: &SegmentName, words: usize) -> Result<Self, SegmentError> {
        let spec = control_spec(name.job(), name.generation(), words);
        Ok(Self {
            segment: Segment::create(name, &spec)?,
            words,
        })
    }

    /// Opens an existing control block, checking job, generation and word count.
    pub fn open(name: &SegmentName, words: usize) -> Result<Self, SegmentError> {
        let spec = control_spec(name.job(), name.generation(), words);
        Ok(Self {
            segment: Segment::open(name, &spec)?,
            words,
        })
    }

    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    pub fn words(&self) -> usize {
        self.words
    }

    fn word(&self, index: usize) -> &AtomicU64 {
        assert!(
            index < self.words,
            "control word {index} does not exist: the block has {}",
            self.words
        );
        let offset = self.segment.spec().geometry.reader_line(index);
        // SAFETY: `index < words = geometry.readers`, so the 64-byte line at `offset` lies
        // inside the payload (its size was checked against the file by Segment); the line is
        // 64-byte aligned; the word is shared with other processes and only ever accessed
        // atomically.
        unsafe { &*self.segment.payload().add(offset).cast::<AtomicU64>() }
    }

    /// Acquire: pairs with the Release store in [`ControlBlock::store`] by the word's writer.
    pub fn load(&self, index: usize) -> u64 {
        self.word(index).load(Ordering::Acquire)
    }

    /// Release: pairs with the Acquire load in [`ControlBlock::load`], publishing everything
    /// this process did before.
    pub fn store(&self, index: usize, value: u64) {
        self.word(index).store(value, Ordering::Release);
    }

    /// Replaces `current` by `new` if the word still holds `current`; returns the value found.
    /// For words with several writers. AcqRel on success: pairs with the Acquire loads of
    /// the other writers and readers (and their own compare-exchanges); Acquire on failure.
    pub fn compare_exchange(&self, index: usize, current: u64, new: u64) -> Result<u64, u64> {
        self.word(index)
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::segment_name;

    #[test]
    fn words_written_by_the_creator_are_seen_by_an_opener() {
        let job = format!("ctltest{}", std::process::id());
        let name = segment_name(&job, 3, "control").unwrap();
        let owner = ControlBlock::create(&name, 5).unwrap();
        let peer = ControlBlock::open(&name, 5).unwrap();
        assert_eq!(peer.load(4), 0);
        owner.store(4, 77);
        peer.store(0, 9);
        assert_eq!(peer.load(4), 77);
        assert_eq!(owner.load(0), 9);
        assert_eq!(peer.compare_exchange(4, 76, 1), Err(77));
        assert_eq!(owner.compare_exchange(4, 77, 1), Ok(77));
        assert_eq!(peer.load(4), 1);
        assert!(
            ControlBlock::open(&name, 6).is_err(),
            "word count is checked"
        );
        let other_generation = segment_name(&job, 4, "control").unwrap();
        assert!(ControlBlock::open(&other_generation, 5).is_err());
    }
}
