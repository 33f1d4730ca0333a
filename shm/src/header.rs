//! The `#[repr(C)]` header at the start of every segment, and how it is published and checked.
//!
//! Publication protocol (after iceoryx2's `posix_shared_memory`): the creator writes every
//! field while `layout_version` is still 0 (a fresh `ftruncate`d file reads as zeros), then
//! stores the real version with `Release` ([`publish`]). An opener `Acquire`-loads the version
//! first ([`read_published`]); 0 means "not published yet" and nothing else is read. A
//! non-zero version therefore guarantees that every other field is fully written and, since
//! the creator never writes the header again, stable.
//!
//! `magic` and `creator_pid` keep their offsets in every layout version, so the cleaner can
//! find the owner of a segment written by another version of this crate.

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::geometry::{CACHE_LINE, Geometry};

/// First eight bytes of every gnc segment.
pub const MAGIC: u64 = u64::from_le_bytes(*b"gnc-shm\0");

/// Version of the header and payload layout this build reads and writes. Bump it whenever
/// [`Header`] or [`crate::geometry`] changes. 0 is reserved for "not published".
pub const LAYOUT_VERSION: u32 = 1;

/// Bytes reserved for the header; the payload starts right after, on a cache line.
pub const HEADER_LEN: usize = CACHE_LINE;

/// The header as it lies in shared memory.
#[repr(C)]
pub(crate) struct Header {
    magic: u64,
    /// Written last with `Release` by [`publish`]; `Acquire`-loaded first by
    /// [`read_published`].
    layout_version: AtomicU32,
    creator_pid: u32,
    job_id: u64,
    generation: u64,
    header_len: u64,
    payload_len: u64,
    slots: u32,
    readers: u32,
    slot_len: u64,
}

const _: () = assert!(size_of::<Header>() == HEADER_LEN);

/// What a segment is for: the caller-chosen part of the header. The creator writes it, an
/// opener passes the values it expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSpec {
    /// [`crate::naming::job_id`] of the job name.
    pub job_id: u64,
    /// The supervisor's restart counter.
    pub generation: u64,
    /// Shape of the slot array in the payload.
    pub geometry: Geometry,
}

/// Plain copy of every header field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeaderFields {
    pub magic: u64,
    pub layout_version: u32,
    pub creator_pid: u32,
    pub header_len: u64,
    pub payload_len: u64,
    pub spec: SegmentSpec,
}

impl HeaderFields {
    /// The header this build writes for `spec`.
    pub(crate) fn current(spec: SegmentSpec, payload_len: usize) -> Self {
        Self {
            magic: MAGIC,
            layout_version: LAYOUT_VERSION,
            creator_pid: std::process::id(),
            header_len: HEADER_LEN as u64,
            payload_len: payload_len as u64,
            spec,
        }
    }

    /// Checks a published header against what the opener expects, field by field.
    pub(crate) fn check(&self, expected: &SegmentSpec) -> Result<(), HeaderMismatch> {
        use HeaderMismatch as M;
        let spec = &self.spec;
        if self.magic != MAGIC {
            return Err(M::Magic { found: self.magic });
        }
        if self.layout_version != LAYOUT_VERSION {
            return Err(M::LayoutVersion {
                found: self.layout_version,
            });
        }
        if self.header_len != HEADER_LEN as u64 {
            return Err(M::HeaderLen {
                found: self.header_len,
            });
        }
        if spec.job_id != expected.job_id {
            return Err(M::JobId {
                expected: expected.job_id,
                found: spec.job_id,
            });
        }
        if spec.generation != expected.generation {
            return Err(M::Generation {
                expected: expected.generation,
                found: spec.generation,
            });
        }
        if spec.geometry != expected.geometry {
            return Err(M::Geometry {
                expected: expected.geometry,
                found: spec.geometry,
            });
        }
        let payload_len = expected.geometry.payload_len().map(|len| len as u64);
        if Some(self.payload_len) != payload_len {
            return Err(M::PayloadLen {
                expected: payload_len.unwrap_or(u64::MAX),
                found: self.payload_len,
            });
        }
        Ok(())
    }
}

/// How a published header differs from what the opener expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderMismatch {
    #[error("not a gnc segment: magic {found:#018x}, expected {MAGIC:#018x}")]
    Magic { found: u64 },
    #[error("layout version {found}, this build reads version {LAYOUT_VERSION}")]
    LayoutVersion { found: u32 },
    #[error("header length {found}, this build expects {HEADER_LEN}")]
    HeaderLen { found: u64 },
    #[error("job id {found:#018x}, expected {expected:#018x} (a segment of another job)")]
    JobId { expected: u64, found: u64 },
    #[error("generation {found}, expected {expected} (a segment of another restart)")]
    Generation { expected: u64, found: u64 },
    #[error("geometry {found}, expected {expected}")]
    Geometry { expected: Geometry, found: Geometry },
    #[error("payload length {found}, expected {expected}")]
    PayloadLen { expected: u64, found: u64 },
}

/// Writes every field of `fields` except the layout version, which stays 0.
///
/// # Safety
/// `header` must point to `HEADER_LEN` writable, 8-aligned bytes that no other thread or
/// process reads except through [`read_published`].
pub(crate) unsafe fn write_unpublished(header: *mut Header, fields: &HeaderFields) {
    let value = Header {
        magic: fields.magic,
        layout_version: AtomicU32::new(0),
        creator_pid: fields.creator_pid,
        job_id: fields.spec.job_id,
        generation: fields.spec.generation,
        header_len: fields.header_len,
        payload_len: fields.payload_len,
        slots: fields.spec.geometry.slots,
        readers: fields.spec.geometry.readers,
        slot_len: fields.spec.geometry.slot_len,
    };
    // SAFETY: the caller guarantees `header` is valid, aligned and not read concurrently
    // except for the atomic version, which this writes as 0, as it already was.
    unsafe { header.write(value) };
}

/// Makes the header visible to openers.
///
/// # Safety
/// `header` must point to a header written by [`write_unpublished`] in a live mapping.
pub(crate) unsafe fn publish(header: *const Header, layout_version: u32) {
    // SAFETY: valid and aligned per the caller; atomics may be shared across processes.
    let version = unsafe { &(*header).layout_version };
    // Release: pairs with the Acquire load in `read_published`, making every field written
    // by `write_unpublished` visible to an opener that sees this version.
    version.store(layout_version, Ordering::Release);
}

/// Reads the header if its creator has published it.
///
/// # Safety
/// `header` must point to `HEADER_LEN` readable, 8-aligned bytes of a live mapping.
pub(crate) unsafe fn read_published(header: *const Header) -> Option<HeaderFields> {
    // SAFETY: valid and aligned per the caller; atomics may be shared across processes.
    let version = unsafe { &(*header).layout_version };
    // Acquire: pairs with the Release store in `publish`.
    let layout_version = version.load(Ordering::Acquire);
    if layout_version == 0 {
        return None;
    }
    // SAFETY: the Acquire load saw a published version, so the creator has finished writing
    // the plain fields and never writes them again: reading them races with nothing.
    let header = unsafe { &*header };
    Some(HeaderFields {
        magic: header.magic,
        layout_version,
        creator_pid: header.creator_pid,
        header_len: header.header_len,
        payload_len: header.payload_len,
        spec: SegmentSpec {
            job_id: header.job_id,
            generation: header.generation,
            geometry: Geometry::new(header.slots, header.readers, header.slot_len),
        },
    })
}

/// Decodes a header read from a file with plain `read` (the cleaner's path, which never maps
/// foreign segments). `None` if the bytes are not a published gnc header.
pub(crate) fn decode(bytes: &[u8; HEADER_LEN]) -> Option<HeaderFields> {
    let u32_at =
        |offset: usize| u32::from_ne_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"));
    let u64_at =
        |offset: usize| u64::from_ne_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"));
    let fields = HeaderFields {
        magic: u64_at(offset_of!(Header, magic)),
        layout_version: u32_at(offset_of!(Header, layout_version)),
        creator_pid: u32_at(offset_of!(Header, creator_pid)),
        header_len: u64_at(offset_of!(Header, header_len)),
        payload_len: u64_at(offset_of!(Header, payload_len)),
        spec: SegmentSpec {
            job_id: u64_at(offset_of!(Header, job_id)),
            generation: u64_at(offset_of!(Header, generation)),
            geometry: Geometry::new(
                u32_at(offset_of!(Header, slots)),
                u32_at(offset_of!(Header, readers)),
                u64_at(offset_of!(Header, slot_len)),
            ),
        },
    };
    (fields.magic == MAGIC && fields.layout_version != 0).then_some(fields)
}
