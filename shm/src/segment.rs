//! A named POSIX shared-memory segment: header + payload, created by one owner, opened by
//! any number of peers.
//!
//! * [`Segment::create`]: `shm_open(O_CREAT | O_EXCL, 0600)`, `ftruncate`, `mmap`, write the
//!   header, publish its version last (see [`crate::header`]). The returned handle owns the
//!   name and `shm_unlink`s it when dropped, on every exit path including unwinding; a
//!   creator killed outright leaves the segment to [`crate::cleaner`].
//! * [`Segment::open`]: `shm_open(O_RDWR)`, `fstat`, `mmap` the whole file, then check the
//!   header against the caller's [`SegmentSpec`] and refuse any mismatch with an error naming
//!   the expected and found values. The file size is checked before any byte beyond it could
//!   be touched, so a truncated segment is an error rather than a SIGBUS. Only the creator
//!   ever resizes a segment, before publishing it.
//!
//! The payload is only reachable through [`crate::slots::SlotArray`].

use std::num::NonZeroUsize;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::mman::{shm_open, shm_unlink};
use nix::sys::stat::{Mode, fchmod, fstat};
use nix::unistd::ftruncate;

use crate::header::{self, HEADER_LEN, HeaderFields, HeaderMismatch, SegmentSpec};
use crate::mapping::Mapping;
use crate::naming::SegmentName;

/// Why a segment could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("segment {name} already exists (left over from a dead run? the cleaner removes those)")]
    AlreadyExists { name: SegmentName },
    #[error("segment {name} does not exist")]
    NotFound { name: SegmentName },
    #[error("{operation} of segment {name} failed: {errno}")]
    Os {
        name: SegmentName,
        operation: &'static str,
        errno: Errno,
    },
    #[error("segment {name} would be too large for this machine")]
    TooLarge { name: SegmentName },
    #[error("segment {name} is truncated: {found} bytes, at least {needed} needed")]
    Truncated {
        name: SegmentName,
        found: u64,
        needed: u64,
    },
    #[error(
        "segment {name} has no published header (its creator is still writing it, or died doing so)"
    )]
    NotPublished { name: SegmentName },
    #[error("segment {name} refused: {mismatch}")]
    Mismatch {
        name: SegmentName,
        mismatch: HeaderMismatch,
    },
}

/// A mapped segment. The creator's handle unlinks the name on drop; an opener's only unmaps.
pub struct Segment {
    mapping: Mapping,
    spec: SegmentSpec,
    name: SegmentName,
    owner: Option<UnlinkOnDrop>,
}

impl Segment {
    /// Creates, sizes, maps and publishes a new segment (mode 0600). Fails if the name exists.
    pub fn create(name: &SegmentName, spec: &SegmentSpec) -> Result<Self, SegmentError> {
        let payload_len = spec
            .geometry
            .payload_len()
            .ok_or_else(|| SegmentError::TooLarge { name: name.clone() })?;
        Self::create_with_header(name, HeaderFields::current(*spec, payload_len))
    }

    /// [`Segment::create`] with every header field chosen by the caller; tests use it to
    /// forge headers an opener must refuse.
    pub(crate) fn create_with_header(
        name: &SegmentName,
        fields: HeaderFields,
    ) -> Result<Self, SegmentError> {
        let os = |operation| {
            move |errno| SegmentError::Os {
                name: name.clone(),
                operation,
                errno,
            }
        };
        let too_large = || SegmentError::TooLarge { name: name.clone() };
        let len = usize::try_from(fields.payload_len)
            .ok()
            .and_then(|payload| payload.checked_add(HEADER_LEN))
            .ok_or_else(too_large)?;
        let file_len = i64::try_from(len).map_err(|_| too_large())?;
        let owner_only = Mode::S_IRUSR | Mode::S_IWUSR;
        let fd = shm_open(
            name.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
            owner_only,
        )
        .map_err(|errno| match errno {
            Errno::EEXIST => SegmentError::AlreadyExists { name: name.clone() },
            errno => os("shm_open")(errno),
        })?;
        // From here on, any early return unlinks the half-made segment.
        let owner = UnlinkOnDrop(name.clone());
        // The umask may have removed bits; make the mode exactly 0600.
        fchmod(&fd, owner_only).map_err(os("fchmod"))?;
        ftruncate(&fd, file_len).map_err(os("ftruncate"))?;
        let len = NonZeroUsize::new(len).expect("the header alone is non-empty");
        let mapping = Mapping::shared(&fd, len).map_err(os("mmap"))?;
        let header = mapping.start().cast::<header::Header>();
        // SAFETY: the mapping is page aligned and at least HEADER_LEN long; the name was just
        // created exclusively, and openers read nothing but the version before it is
        // published.
        unsafe { header::write_unpublished(header, &fields) };
        // SAFETY: `header` was just written by `write_unpublished` and the mapping is live.
        unsafe { header::publish(header, fields.layout_version) };
        Ok(Self {
            mapping,
            spec: fields.spec,
            name: name.clone(),
            owner: Some(owner),
        })
    }

    /// Opens an existing segment and checks its header against `expected`.
    pub fn open(name: &SegmentName, expected: &SegmentSpec) -> Result<Self, SegmentError> {
        let os = |operation| {
            move |errno| SegmentError::Os {
                name: name.clone(),
                operation,
                errno,
            }
        };
        let fd =
            shm_open(name.as_str(), OFlag::O_RDWR, Mode::empty()).map_err(|errno| match errno {
                Errno::ENOENT => SegmentError::NotFound { name: name.clone() },
                errno => os("shm_open")(errno),
            })?;
        let file_len = u64::try_from(fstat(&fd).map_err(os("fstat"))?.st_size).unwrap_or(0);
        let truncated = |needed: u64| SegmentError::Truncated {
            name: name.clone(),
            found: file_len,
            needed,
        };
        if file_len < HEADER_LEN as u64 {
            return Err(truncated(HEADER_LEN as u64));
        }
        let len = usize::try_from(file_len)
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| SegmentError::TooLarge { name: name.clone() })?;
        let mapping = Mapping::shared(&fd, len).map_err(os("mmap"))?;
        // SAFETY: the mapping is page aligned and covers at least HEADER_LEN bytes of file.
        let fields = unsafe { header::read_published(mapping.start().cast()) }
            .ok_or_else(|| SegmentError::NotPublished { name: name.clone() })?;
        fields
            .check(expected)
            .map_err(|mismatch| SegmentError::Mismatch {
                name: name.clone(),
                mismatch,
            })?;
        let needed = fields.header_len.saturating_add(fields.payload_len);
        if file_len < needed {
            return Err(truncated(needed));
        }
        Ok(Self {
            mapping,
            spec: fields.spec,
            name: name.clone(),
            owner: None,
        })
    }

    pub fn name(&self) -> &SegmentName {
        &self.name
    }

    /// The header's job id, generation and geometry.
    pub fn spec(&self) -> &SegmentSpec {
        &self.spec
    }

    /// Whether dropping this handle unlinks the segment.
    pub fn is_owner(&self) -> bool {
        self.owner.is_some()
    }

    /// Removes the name now; the mapping, and every peer's, stays valid. Once every peer has
    /// opened the segment this leaves nothing in `/dev/shm` for a crash to leak. Only the
    /// owner unlinks (an opener's call does nothing); a name already gone is not an error.
    pub fn unlink_name(&mut self) -> Result<(), SegmentError> {
        let Some(owner) = self.owner.take() else {
            return Ok(());
        };
        let name = owner.0.clone();
        std::mem::forget(owner);
        match shm_unlink(name.as_str()) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(errno) => Err(SegmentError::Os {
                name,
                operation: "shm_unlink",
                errno,
            }),
        }
    }

    /// Start of the payload: 64-byte aligned, `spec().geometry.payload_len()` bytes long,
    /// all inside the file (checked by `create`/`open`).
    pub(crate) fn payload(&self) -> *mut u8 {
        debug_assert!(self.mapping.len() >= HEADER_LEN);
        // SAFETY: the mapping is at least HEADER_LEN long, so the result stays in bounds.
        unsafe { self.mapping.start().add(HEADER_LEN) }
    }
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("spec", &self.spec)
            .field("owner", &self.is_owner())
            .finish()
    }
}

/// Unlinks a segment name when dropped. Errors are ignored: the only expected one is ENOENT,
/// when a cleaner already removed it.
struct UnlinkOnDrop(SegmentName);

impl Drop for UnlinkOnDrop {
    fn drop(&mut self) {
        let _ = shm_unlink(self.0.as_str());
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use super::*;
    use crate::geometry::Geometry;
    use crate::header::{LAYOUT_VERSION, MAGIC};
    use crate::naming::{job_id, segment_name};

    fn name(what: &str) -> SegmentName {
        let job = format!("segtest{}", std::process::id());
        segment_name(&job, 7, what).unwrap()
    }

    fn spec(name: &SegmentName) -> SegmentSpec {
        SegmentSpec {
            job_id: job_id(name.job()),
            generation: name.generation(),
            geometry: Geometry::new(2, 3, 10),
        }
    }

    fn file(name: &SegmentName) -> PathBuf {
        PathBuf::from("/dev/shm").join(name.file_name())
    }

    fn forged(name: &SegmentName, edit: impl FnOnce(&mut HeaderFields)) -> Segment {
        let spec = spec(name);
        let mut fields = HeaderFields::current(spec, spec.geometry.payload_len().unwrap());
        edit(&mut fields);
        Segment::create_with_header(name, fields).unwrap()
    }

    fn open_error(name: &SegmentName) -> SegmentError {
        Segment::open(name, &spec(name)).unwrap_err()
    }

    #[test]
    fn created_segment_opens_with_matching_spec_and_mode_0600() {
        let name = name("roundtrip");
        let owner = Segment::create(&name, &spec(&name)).unwrap();
        assert!(owner.is_owner());
        let mode = std::fs::metadata(file(&name)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let peer = Segment::open(&name, &spec(&name)).unwrap();
        assert!(!peer.is_owner());
        assert_eq!(peer.spec(), owner.spec());
    }

    #[test]
    fn an_unlinked_name_is_gone_but_both_mappings_still_share_bytes() {
        let name = name("early");
        let mut owner = Segment::create(&name, &spec(&name)).unwrap();
        let peer = Segment::open(&name, &spec(&name)).unwrap();
        owner.unlink_name().unwrap();
        assert!(!owner.is_owner());
        assert!(matches!(
            Segment::open(&name, &spec(&name)),
            Err(SegmentError::NotFound { .. })
        ));
        use crate::slots::{Producer, Reader, SlotArray};
        use std::sync::Arc;
        let timeout = std::time::Duration::from_secs(5);
        let mut producer = Producer::claim(Arc::new(SlotArray::new(owner).unwrap()), 1).unwrap();
        let reader = Reader::claim(Arc::new(SlotArray::new(peer).unwrap()), 2).unwrap();
        let mut slot = producer.begin_write(0, timeout).unwrap();
        slot.fill(4.25);
        slot.publish();
        assert_eq!(reader.wait_for(1, 0, timeout).unwrap(), [4.25; 10]);
        // A new segment of the same name can be created: the old one has no name left.
        let again = Segment::create(&name, &spec(&name)).unwrap();
        drop(again);
    }

    #[test]
    fn owner_drop_unlinks_and_opener_drop_does_not() {
        let name = name("unlink");
        let owner = Segment::create(&name, &spec(&name)).unwrap();
        drop(Segment::open(&name, &spec(&name)).unwrap());
        assert!(file(&name).exists());
        drop(owner);
        assert!(!file(&name).exists());
        assert!(matches!(open_error(&name), SegmentError::NotFound { .. }));
    }

    #[test]
    fn creating_an_existing_name_is_refused() {
        let name = name("twice");
        let _owner = Segment::create(&name, &spec(&name)).unwrap();
        let error = Segment::create(&name, &spec(&name)).unwrap_err();
        assert!(matches!(error, SegmentError::AlreadyExists { .. }));
    }

    #[test]
    fn wrong_magic_is_refused() {
        let name = name("magic");
        let _owner = forged(&name, |fields| fields.magic = MAGIC ^ 1);
        let error = open_error(&name);
        assert!(matches!(
            error,
            SegmentError::Mismatch {
                mismatch: HeaderMismatch::Magic { .. },
                ..
            }
        ));
        assert!(error.to_string().contains("not a gnc segment"), "{error}");
    }

    #[test]
    fn wrong_layout_version_is_refused() {
        let name = name("version");
        let _owner = forged(&name, |fields| fields.layout_version = LAYOUT_VERSION + 1);
        let error = open_error(&name);
        assert!(matches!(
            error,
            SegmentError::Mismatch {
                mismatch: HeaderMismatch::LayoutVersion { found },
                ..
            } if found == LAYOUT_VERSION + 1
        ));
        assert!(error.to_string().contains("layout version 2"), "{error}");
    }

    #[test]
    fn wrong_generation_is_refused_naming_both() {
        let name = name("generation");
        let _owner = Segment::create(&name, &spec(&name)).unwrap();
        let mut expected = spec(&name);
        expected.generation += 1;
        let error = Segment::open(&name, &expected).unwrap_err();
        assert!(matches!(
            error,
            SegmentError::Mismatch {
                mismatch: HeaderMismatch::Generation {
                    expected: 8,
                    found: 7
                },
                ..
            }
        ));
        assert!(
            error.to_string().contains("generation 7, expected 8"),
            "{error}"
        );
    }

    #[test]
    fn wrong_job_and_geometry_are_refused() {
        let name = name("jobgeom");
        let _owner = Segment::create(&name, &spec(&name)).unwrap();
        let mut other_job = spec(&name);
        other_job.job_id ^= 1;
        assert!(matches!(
            Segment::open(&name, &other_job).unwrap_err(),
            SegmentError::Mismatch {
                mismatch: HeaderMismatch::JobId { .. },
                ..
            }
        ));
        let mut other_shape = spec(&name);
        other_shape.geometry.slot_len += 1;
        assert!(matches!(
            Segment::open(&name, &other_shape).unwrap_err(),
            SegmentError::Mismatch {
                mismatch: HeaderMismatch::Geometry { .. },
                ..
            }
        ));
    }

    #[test]
    fn truncated_segments_are_errors_not_sigbus() {
        let name = name("truncated");
        let _owner = Segment::create(&name, &spec(&name)).unwrap();
        let shm_file = std::fs::OpenOptions::new()
            .write(true)
            .open(file(&name))
            .unwrap();
        shm_file.set_len(HEADER_LEN as u64 + 8).unwrap();
        assert!(matches!(
            open_error(&name),
            SegmentError::Truncated { found: 72, .. }
        ));
        shm_file.set_len(10).unwrap();
        assert!(matches!(
            open_error(&name),
            SegmentError::Truncated {
                found: 10,
                needed: 64,
                ..
            }
        ));
    }

    #[test]
    fn unpublished_header_is_refused() {
        let name = name("unpublished");
        let _owner = forged(&name, |fields| fields.layout_version = 0);
        assert!(matches!(
            open_error(&name),
            SegmentError::NotPublished { .. }
        ));
    }
}
