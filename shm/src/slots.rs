//! Slot protocol: single-producer slots read by a fixed set of readers, in shared memory,
//! without a mutex.
//!
//! A [`SlotArray`] lives in a [`Segment`]'s payload (layout in [`crate::geometry`]). Each
//! slot has one [`Producer`] and each reader index one [`Reader`], across all processes;
//! claiming a role is a compare-exchange of the claimer's pid into the role's claim word, so
//! a second claimer (in any process) is refused. Every atomic below names its partner:
//!
//! 1. **Publish.** The producer writes the slot's f32 data in place through [`SlotWrite`],
//!    then [`SlotWrite::publish`] `Release`-stores the stamp (generation, iteration) into the
//!    slot's sequence word. A reader's [`Reader::wait_for`] `Acquire`-loads that word and
//!    touches the data only once it holds exactly the stamp it wants, so it sees every write
//!    of that iteration.
//! 2. **Reuse.** A reader, after its last read of iteration t in this array, calls
//!    [`Reader::finish`], which `Release`-stores t into its done word. Before overwriting a
//!    slot that holds iteration t, [`Producer::begin_write`] `Acquire`-loads every reader's
//!    done word and waits until all are ≥ t, so all reads of the old data happen before the
//!    first new write. Hence: *a producer overwrites slot s for iteration t+1 only after every
//!    reader has finished reading iteration t.*
//! 3. **Claims.** Claiming `compare_exchange`s 0 → pid with `Acquire`; dropping the handle
//!    `Release`-stores 0, so a later claimer sees everything the previous holder did.
//!
//! Readers ask for strictly increasing iterations (a [`Reader`] refuses one it already
//! finished), which together with rule 2 means a slot's data never changes while a reader in
//! this process borrows it, and never while a [`SlotWrite`] of this process borrows it
//! mutably. A stamp of another generation is an error: a reader never consumes an old
//! generation's data. Waits spin, yield, then sleep ([`crate::backoff`]) and end with a
//! timeout error naming what was awaited.
//!
//! The guarantees hold among processes that use this crate; a foreign process writing the
//! segment can corrupt values (any bits are a valid f32) but not memory safety, as no
//! pointers or enums live in shared memory.

use std::fmt;
use std::mem::size_of;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::backoff::Backoff;
use crate::geometry::Geometry;
use crate::segment::Segment;
use crate::stamp::{Stamp, StampOutOfRange};

/// Why a slot operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error(transparent)]
    OutOfRange(#[from] StampOutOfRange),
    #[error("{role} {index} does not exist: the array has {count}")]
    NoSuchRole {
        role: Role,
        index: usize,
        count: u32,
    },
    #[error("{role} {index} is already claimed by pid {holder}")]
    AlreadyClaimed {
        role: Role,
        index: usize,
        holder: u32,
    },
    #[error("slot {slot} already holds iteration {previous}; cannot write iteration {requested}")]
    NotIncreasing {
        slot: usize,
        previous: u64,
        requested: u64,
    },
    #[error(
        "reader {reader} already finished iteration {finished}; cannot {action} iteration {requested}"
    )]
    AlreadyFinished {
        reader: usize,
        action: &'static str,
        finished: u64,
        requested: u64,
    },
    #[error("{role} {index} carries generation {found}, expected {expected} ({age})")]
    WrongGeneration {
        role: Role,
        index: usize,
        expected: u64,
        found: u64,
        age: GenerationAge,
    },
    #[error(
        "slot {slot} already holds iteration {found} while iteration {wanted} was awaited (protocol violation)"
    )]
    Overtaken {
        slot: usize,
        wanted: u64,
        found: u64,
    },
    #[error(
        "timed out after {waited:?} waiting for slot {slot} to hold iteration {iteration} (last seen: {last_seen:?})"
    )]
    SlotTimeout {
        slot: usize,
        iteration: u64,
        waited: Duration,
        last_seen: Option<Stamp>,
    },
    #[error(
        "timed out after {waited:?} waiting for reader {reader} to finish iteration {iteration} before slot {slot} is rewritten (last finished: {finished:?})"
    )]
    ReaderTimeout {
        slot: usize,
        reader: usize,
        iteration: u64,
        waited: Duration,
        finished: Option<Stamp>,
    },
}

/// The two roles in a slot array, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A slot, written by its producer.
    Slot,
    /// A reader index, whose done word its reader writes.
    Reader,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Slot => "slot",
            Role::Reader => "reader",
        })
    }
}

/// Whether a foreign generation is a leftover or from the future.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationAge {
    Older,
    Newer,
}

impl fmt::Display for GenerationAge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GenerationAge::Older => "a leftover of an older generation",
            GenerationAge::Newer => "written by a newer generation",
        })
    }
}

/// The slots and reader lines of one segment.
#[derive(Debug)]
pub struct SlotArray {
    segment: Segment,
    geometry: Geometry,
    generation: u64,
}

impl SlotArray {
    /// Views a created or opened segment's payload as a slot array.
    pub fn new(segment: Segment) -> Result<Self, SlotError> {
        let spec = *segment.spec();
        Stamp::new(spec.generation, 0)?;
        Ok(Self {
            segment,
            geometry: spec.geometry,
            generation: spec.generation,
        })
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    fn check_index(&self, role: Role, index: usize) -> Result<(), SlotError> {
        let count = match role {
            Role::Slot => self.geometry.slots,
            Role::Reader => self.geometry.readers,
        };
        if index < count as usize {
            Ok(())
        } else {
            Err(SlotError::NoSuchRole { role, index, count })
        }
    }

    fn line_offset(&self, role: Role, index: usize) -> usize {
        match role {
            Role::Slot => self.geometry.slot_line(index),
            Role::Reader => self.geometry.reader_line(index),
        }
    }

    /// The slot's sequence word, or the reader's done word. Caller checked `index`.
    fn stamp_word(&self, role: Role, index: usize) -> &AtomicU64 {
        let offset = self.line_offset(role, index);
        // SAFETY: `index` is in range, so the line lies inside the payload (checked against
        // the file size by Segment); it is 64-byte aligned; an AtomicU64 may be shared with
        // other processes, and this word is only ever accessed atomically.
        unsafe { &*self.segment.payload().add(offset).cast::<AtomicU64>() }
    }

    /// The role's claim word (holder pid, 0 = free), 8 bytes into its line.
    fn claim_word(&self, role: Role, index: usize) -> &AtomicU32 {
        let offset = self.line_offset(role, index) + size_of::<AtomicU64>();
        // SAFETY: as in `stamp_word`; the line is 64 bytes, so offset 8..12 is inside it,
        // 4-byte aligned, and only ever accessed atomically.
        unsafe { &*self.segment.payload().add(offset).cast::<AtomicU32>() }
    }

    fn slot_data(&self, slot: usize) -> *mut f32 {
        let offset = self.geometry.slot_data(slot);
        // SAFETY: `slot` is in range, so its `slot_len` f32 lie inside the payload.
        unsafe { self.segment.payload().add(offset).cast::<f32>() }
    }

    fn claim(&self, role: Role, index: usize) -> Result<(), SlotError> {
        self.check_index(role, index)?;
        let pid = std::process::id();
        // Acquire: pairs with the Release store in `release`, so this claimer sees all that
        // the previous holder did.
        self.claim_word(role, index)
            .compare_exchange(0, pid, Ordering::Acquire, Ordering::Relaxed)
            .map(drop)
            .map_err(|holder| SlotError::AlreadyClaimed {
                role,
                index,
                holder,
            })
    }

    fn release(&self, role: Role, index: usize) {
        // Release: pairs with the Acquire compare-exchange in `claim`.
        self.claim_word(role, index).store(0, Ordering::Release);
    }

    fn check_generation(&self, role: Role, index: usize, stamp: Stamp) -> Result<(), SlotError> {
        let age = match stamp.generation.cmp(&self.generation) {
            std::cmp::Ordering::Equal => return Ok(()),
            std::cmp::Ordering::Less => GenerationAge::Older,
            std::cmp::Ordering::Greater => GenerationAge::Newer,
        };
        Err(SlotError::WrongGeneration {
            role,
            index,
            expected: self.generation,
            found: stamp.generation,
            age,
        })
    }
}

/// The only writer of one slot.
#[derive(Debug)]
pub struct Producer {
    array: Arc<SlotArray>,
    slot: usize,
}

impl Producer {
    /// Claims slot `slot` for this process; refused if anyone holds it.
    pub fn claim(array: Arc<SlotArray>, slot: usize) -> Result<Self, SlotError> {
        array.claim(Role::Slot, slot)?;
        Ok(Self { array, slot })
    }

    pub fn slot(&self) -> usize {
        self.slot
    }

    /// Waits until every reader has finished the slot's current iteration, then lends the
    /// slot's data for writing `iteration` in place. Nothing is visible to readers until
    /// [`SlotWrite::publish`]; the old contents are left as they were, to be overwritten.
    pub fn begin_write(
        &mut self,
        iteration: u64,
        timeout: Duration,
    ) -> Result<SlotWrite<'_>, SlotError> {
        let array = &*self.array;
        let target = Stamp::new(array.generation, iteration)?;
        let sequence = array.stamp_word(Role::Slot, self.slot);
        // Acquire: pairs with the Release store in `SlotWrite::publish` (only this slot's
        // producer stores this word).
        if let Some(previous) = Stamp::decode(sequence.load(Ordering::Acquire)) {
            array.check_generation(Role::Slot, self.slot, previous)?;
            if previous.iteration >= iteration {
                return Err(SlotError::NotIncreasing {
                    slot: self.slot,
                    previous: previous.iteration,
                    requested: iteration,
                });
            }
            self.wait_for_readers(previous.iteration, timeout)?;
        }
        let len = array.geometry.slot_len as usize;
        // SAFETY: the data lies inside the mapping, is 64-byte aligned and any bits are a valid
        // f32. No one else accesses it while this borrow lives: this process holds the slot's
        // claim and `&mut self` allows one SlotWrite at a time; every reader has finished the
        // previous iteration (waited above, or the slot was never written) and no reader reads
        // it until the new stamp is published.
        let data = unsafe { std::slice::from_raw_parts_mut(array.slot_data(self.slot), len) };
        Ok(SlotWrite {
            data,
            sequence,
            stamp: target.encode(),
        })
    }

    fn wait_for_readers(&self, iteration: u64, timeout: Duration) -> Result<(), SlotError> {
        let array = &*self.array;
        let mut backoff = Backoff::new(timeout);
        for reader in 0..array.geometry.readers as usize {
            let done = array.stamp_word(Role::Reader, reader);
            loop {
                // Acquire: pairs with the Release store in `Reader::finish`, so the reader's
                // reads of `iteration` happen before our overwrite.
                let finished = Stamp::decode(done.load(Ordering::Acquire));
                if let Some(stamp) = finished {
                    array.check_generation(Role::Reader, reader, stamp)?;
                    if stamp.iteration >= iteration {
                        break;
                    }
                }
                backoff
                    .snooze()
                    .map_err(|waited| SlotError::ReaderTimeout {
                        slot: self.slot,
                        reader,
                        iteration,
                        waited,
                        finished,
                    })?;
            }
        }
        Ok(())
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.array.release(Role::Slot, self.slot);
    }
}

/// A slot's data lent for writing one iteration; [`SlotWrite::publish`] makes it visible.
#[derive(Debug)]
pub struct SlotWrite<'p> {
    data: &'p mut [f32],
    sequence: &'p AtomicU64,
    stamp: u64,
}

impl SlotWrite<'_> {
    /// Makes the written data visible to readers waiting for this iteration.
    pub fn publish(self) {
        // Release: pairs with the Acquire loads in `Reader::wait_for` (and in the next
        // `Producer::begin_write`), ordering every write to `data` before the new stamp.
        self.sequence.store(self.stamp, Ordering::Release);
    }
}

impl Deref for SlotWrite<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        self.data
    }
}

impl DerefMut for SlotWrite<'_> {
    fn deref_mut(&mut self) -> &mut [f32] {
        self.data
    }
}

/// One reader index: reads any slot, then declares an iteration finished.
#[derive(Debug)]
pub struct Reader {
    array: Arc<SlotArray>,
    reader: usize,
    finished: Option<u64>,
}

impl Reader {
    /// Claims reader index `reader` for this process; refused if anyone holds it.
    pub fn claim(array: Arc<SlotArray>, reader: usize) -> Result<Self, SlotError> {
        array.claim(Role::Reader, reader)?;
        // A previous holder of this index may have finished iterations already; producers
        // go by the done word, so this reader must not read those iterations again.
        // Acquire: pairs with the Release store in `finish`.
        let done = array
            .stamp_word(Role::Reader, reader)
            .load(Ordering::Acquire);
        let finished = Stamp::decode(done).map(|stamp| stamp.iteration);
        Ok(Self {
            array,
            reader,
            finished,
        })
    }

    pub fn index(&self) -> usize {
        self.reader
    }

    /// Waits until `slot` holds `iteration` of this generation and lends its data until the
    /// next [`Reader::finish`].
    pub fn wait_for(
        &self,
        slot: usize,
        iteration: u64,
        timeout: Duration,
    ) -> Result<&[f32], SlotError> {
        let array = &*self.array;
        array.check_index(Role::Slot, slot)?;
        self.check_not_finished("read", iteration)?;
        Stamp::new(array.generation, iteration)?;
        let sequence = array.stamp_word(Role::Slot, slot);
        let mut backoff = Backoff::new(timeout);
        loop {
            // Acquire: pairs with the Release store in `SlotWrite::publish`.
            let seen = Stamp::decode(sequence.load(Ordering::Acquire));
            if let Some(stamp) = seen {
                array.check_generation(Role::Slot, slot, stamp)?;
                if stamp.iteration == iteration {
                    break;
                }
                if stamp.iteration > iteration {
                    return Err(SlotError::Overtaken {
                        slot,
                        wanted: iteration,
                        found: stamp.iteration,
                    });
                }
            }
            backoff.snooze().map_err(|waited| SlotError::SlotTimeout {
                slot,
                iteration,
                waited,
                last_seen: seen,
            })?;
        }
        let len = array.geometry.slot_len as usize;
        // SAFETY: the data lies inside the mapping, is aligned and any bits are a valid f32.
        // The Acquire load above saw `iteration` published, so its writes are visible; the
        // producer cannot start the next write until this reader's done word reaches
        // `iteration`, which only `finish(&mut self)` stores, after this borrow of `self`
        // has ended.
        Ok(unsafe { std::slice::from_raw_parts(array.slot_data(slot), len) })
    }

    /// Declares that this reader will read nothing more of iterations ≤ `iteration` in this
    /// array, letting producers overwrite them.
    pub fn finish(&mut self, iteration: u64) -> Result<(), SlotError> {
        if let Some(finished) = self.finished.filter(|&finished| finished > iteration) {
            return Err(SlotError::AlreadyFinished {
                reader: self.reader,
                action: "finish",
                finished,
                requested: iteration,
            });
        }
        let stamp = Stamp::new(self.array.generation, iteration)?;
        // Release: pairs with the Acquire load in `Producer::wait_for_readers`, ordering all
        // of this reader's reads of `iteration` before the producer's next write.
        self.array
            .stamp_word(Role::Reader, self.reader)
            .store(stamp.encode(), Ordering::Release);
        self.finished = Some(iteration);
        Ok(())
    }

    fn check_not_finished(&self, action: &'static str, iteration: u64) -> Result<(), SlotError> {
        match self.finished {
            Some(finished) if finished >= iteration => Err(SlotError::AlreadyFinished {
                reader: self.reader,
                action,
                finished,
                requested: iteration,
            }),
            _ => Ok(()),
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.array.release(Role::Reader, self.reader);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::SegmentSpec;
    use crate::naming::{job_id, segment_name};

    const SHORT: Duration = Duration::from_millis(20);

    fn array(what: &str, geometry: Geometry) -> Arc<SlotArray> {
        let job = format!("slottest{}", std::process::id());
        let name = segment_name(&job, 3, what).unwrap();
        let spec = SegmentSpec {
            job_id: job_id(&job),
            generation: 3,
            geometry,
        };
        Arc::new(SlotArray::new(Segment::create(&name, &spec).unwrap()).unwrap())
    }

    #[test]
    fn published_data_is_read_in_place_and_slot_reused_after_finish() {
        let array = array("roundtrip", Geometry::new(1, 1, 4));
        let mut producer = Producer::claim(array.clone(), 0).unwrap();
        let mut reader = Reader::claim(array.clone(), 0).unwrap();
        for iteration in [0, 1, 5] {
            let mut write = producer.begin_write(iteration, SHORT).unwrap();
            write.fill(iteration as f32);
            write.publish();
            assert_eq!(
                reader.wait_for(0, iteration, SHORT).unwrap(),
                [iteration as f32; 4]
            );
            reader.finish(iteration).unwrap();
        }
    }

    #[test]
    fn reader_times_out_on_an_unpublished_iteration() {
        let array = array("readtimeout", Geometry::new(1, 1, 1));
        let reader = Reader::claim(array, 0).unwrap();
        let error = reader.wait_for(0, 0, SHORT).unwrap_err();
        assert!(matches!(
            error,
            SlotError::SlotTimeout {
                slot: 0,
                iteration: 0,
                last_seen: None,
                ..
            }
        ));
    }

    #[test]
    fn producer_waits_for_every_reader_before_reuse() {
        let array = array("reuse", Geometry::new(1, 2, 1));
        let mut producer = Producer::claim(array.clone(), 0).unwrap();
        let mut fast = Reader::claim(array.clone(), 0).unwrap();
        let slow = Reader::claim(array.clone(), 1).unwrap();
        producer.begin_write(0, SHORT).unwrap().publish();
        fast.wait_for(0, 0, SHORT).unwrap();
        fast.finish(0).unwrap();
        let error = producer.begin_write(1, SHORT).unwrap_err();
        assert!(matches!(
            error,
            SlotError::ReaderTimeout {
                reader: 1,
                iteration: 0,
                finished: None,
                ..
            }
        ));
        assert_eq!(slow.wait_for(0, 0, SHORT).unwrap(), [0.0]);
    }

    #[test]
    fn stamps_of_another_generation_are_refused() {
        let array = array("generation", Geometry::new(2, 1, 1));
        let reader = Reader::claim(array.clone(), 0).unwrap();
        for (slot, generation, age) in [(0, 2, GenerationAge::Older), (1, 4, GenerationAge::Newer)]
        {
            let foreign = Stamp::new(generation, 0).unwrap().encode();
            array
                .stamp_word(Role::Slot, slot)
                .store(foreign, Ordering::Release);
            let error = reader.wait_for(slot, 0, SHORT).unwrap_err();
            assert_eq!(
                error,
                SlotError::WrongGeneration {
                    role: Role::Slot,
                    index: slot,
                    expected: 3,
                    found: generation,
                    age,
                }
            );
        }
    }

    #[test]
    fn roles_are_claimed_once_until_released() {
        let array = array("claims", Geometry::new(1, 1, 1));
        let producer = Producer::claim(array.clone(), 0).unwrap();
        assert!(matches!(
            Producer::claim(array.clone(), 0),
            Err(SlotError::AlreadyClaimed {
                role: Role::Slot,
                ..
            })
        ));
        assert!(matches!(
            Producer::claim(array.clone(), 1),
            Err(SlotError::NoSuchRole { .. })
        ));
        drop(producer);
        Producer::claim(array, 0).unwrap();
    }

    #[test]
    fn iterations_only_move_forward() {
        let array = array("forward", Geometry::new(1, 1, 1));
        let mut producer = Producer::claim(array.clone(), 0).unwrap();
        let mut reader = Reader::claim(array.clone(), 0).unwrap();
        producer.begin_write(4, SHORT).unwrap().publish();
        reader.wait_for(0, 4, SHORT).unwrap();
        reader.finish(4).unwrap();
        assert!(matches!(
            producer.begin_write(4, SHORT),
            Err(SlotError::NotIncreasing { previous: 4, .. })
        ));
        assert!(matches!(
            reader.wait_for(0, 4, SHORT),
            Err(SlotError::AlreadyFinished { finished: 4, .. })
        ));
        assert!(matches!(
            reader.finish(3),
            Err(SlotError::AlreadyFinished { .. })
        ));
        drop(reader);
        let reclaimed = Reader::claim(array, 0).unwrap();
        assert!(
            reclaimed.wait_for(0, 4, SHORT).is_err(),
            "a new handle inherits what the index already finished"
        );
    }
}
