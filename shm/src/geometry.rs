//! Where things live inside a segment's payload.
//!
//! Every segment's payload is a slot array (see [`crate::slots`]) described by a
//! [`Geometry`]: `readers` reader lines, then `slots` slots, each a control line followed by
//! `slot_len` f32 values. Every line and every slot's data starts on its own cache line, so
//! producers and readers on different cores never write to the same line (no false sharing),
//! and the f32 data is 64-byte aligned for vector loads.
//!
//! ```text
//! payload: [reader 0 line] … [reader R-1 line] [slot 0 line][slot 0 data …] … [slot S-1 …]
//! line:    u64 sequence/done word, u32 claim word, padding to 64 bytes
//! ```

use std::fmt;

/// Size of a cache line on the machines we run on (x86-64, aarch64 servers).
pub const CACHE_LINE: usize = 64;

/// Shape of a slot array, stored in the segment header and checked by every opener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Number of slots (one per producer).
    pub slots: u32,
    /// Number of readers that must finish an iteration before a slot may be rewritten.
    pub readers: u32,
    /// f32 values per slot.
    pub slot_len: u64,
}

impl Geometry {
    pub fn new(slots: u32, readers: u32, slot_len: u64) -> Self {
        Self {
            slots,
            readers,
            slot_len,
        }
    }

    /// Bytes of payload this geometry needs, or `None` if that does not fit in memory.
    pub fn payload_len(&self) -> Option<usize> {
        let readers = usize::try_from(self.readers).ok()?;
        let slots = usize::try_from(self.slots).ok()?;
        readers
            .checked_mul(CACHE_LINE)?
            .checked_add(slots.checked_mul(self.slot_stride()?)?)
    }

    /// Bytes from one slot's control line to the next's.
    fn slot_stride(&self) -> Option<usize> {
        let data = usize::try_from(self.slot_len).ok()?.checked_mul(4)?;
        CACHE_LINE.checked_add(data.checked_next_multiple_of(CACHE_LINE)?)
    }

    /// Offset of reader `reader`'s line. Caller checks `reader < readers`.
    pub(crate) fn reader_line(&self, reader: usize) -> usize {
        reader * CACHE_LINE
    }

    /// Offset of slot `slot`'s control line. Caller checks `slot < slots` and that
    /// `payload_len()` is `Some`.
    pub(crate) fn slot_line(&self, slot: usize) -> usize {
        let stride = self.slot_stride().expect("geometry validated at creation");
        self.readers as usize * CACHE_LINE + slot * stride
    }

    /// Offset of slot `slot`'s first f32.
    pub(crate) fn slot_data(&self, slot: usize) -> usize {
        self.slot_line(slot) + CACHE_LINE
    }
}

impl fmt::Display for Geometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} slots of {} f32 with {} readers",
            self.slots, self.slot_len, self.readers
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_data_are_cache_line_aligned_and_disjoint() {
        let geometry = Geometry::new(3, 2, 5);
        assert_eq!(geometry.reader_line(1), 64);
        assert_eq!(geometry.slot_line(0), 128);
        assert_eq!(geometry.slot_data(0), 192);
        assert_eq!(geometry.slot_line(1), 256);
        assert_eq!(geometry.payload_len(), Some(128 + 3 * 128));
    }

    #[test]
    fn absurd_geometry_is_reported_as_not_fitting() {
        assert_eq!(Geometry::new(u32::MAX, 1, u64::MAX).payload_len(), None);
    }
}
