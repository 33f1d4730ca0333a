//! The one place that builds and parses shared-memory segment names.
//!
//! A segment is named `/gnc-<job>-<generation>-<what>`: `job` identifies the job, `generation`
//! is the supervisor's restart counter, `what` says which segment of the job it is (`grads`,
//! `shards`, `control`, …). `job` and `what` are restricted to `[A-Za-z0-9_]`, so `-` only
//! ever separates the fields and [`SegmentName::parse`] is the exact inverse of
//! [`SegmentName::new`]. The cleaner ([`crate::cleaner`]) relies on that to recognise our
//! segments in `/dev/shm` and leave every other file alone.

use std::fmt;

/// Every segment name starts with this (after the leading `/` that `shm_open` wants).
pub const PREFIX: &str = "gnc-";

/// Linux `NAME_MAX`: the longest file name `/dev/shm` accepts, leading `/` included here to
/// stay on the safe side.
const MAX_NAME_LEN: usize = 255;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("segment name field {field} is empty")]
    Empty { field: &'static str },
    #[error("segment name field {field} = {value:?} may only contain A-Z, a-z, 0-9 and _")]
    BadCharacter { field: &'static str, value: String },
    #[error("segment name {name:?} is {len} bytes long; the limit is {MAX_NAME_LEN}")]
    TooLong { name: String, len: usize },
    #[error("{name:?} is not a gnc segment name (expected /gnc-<job>-<generation>-<what>)")]
    NotOurs { name: String },
}

/// A validated segment name; `as_str()` is what `shm_open` receives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SegmentName {
    full: String,
    job: String,
    generation: u64,
    what: String,
}

impl SegmentName {
    /// Builds `/gnc-<job>-<generation>-<what>`.
    pub fn new(job: &str, generation: u64, what: &str) -> Result<Self, NameError> {
        check_field("job", job)?;
        check_field("what", what)?;
        let full = format!("/{PREFIX}{job}-{generation}-{what}");
        if full.len() >= MAX_NAME_LEN {
            return Err(NameError::TooLong {
                len: full.len(),
                name: full,
            });
        }
        Ok(Self {
            full,
            job: job.to_owned(),
            generation,
            what: what.to_owned(),
        })
    }

    /// Parses a name as built by [`SegmentName::new`], with or without the leading `/`
    /// (directory listings of `/dev/shm` have none).
    pub fn parse(name: &str) -> Result<Self, NameError> {
        let not_ours = || NameError::NotOurs {
            name: name.to_owned(),
        };
        let rest = name.strip_prefix('/').unwrap_or(name);
        let rest = rest.strip_prefix(PREFIX).ok_or_else(not_ours)?;
        let mut fields = rest.split('-');
        let (Some(job), Some(generation), Some(what), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(not_ours());
        };
        let generation = parse_decimal(generation).ok_or_else(not_ours)?;
        Self::new(job, generation, what).map_err(|_| not_ours())
    }

    /// The name passed to `shm_open`, e.g. `/gnc-resnet_7-3-grads`.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The file name under `/dev/shm` (no leading `/`).
    pub fn file_name(&self) -> &str {
        &self.full[1..]
    }

    pub fn job(&self) -> &str {
        &self.job
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn what(&self) -> &str {
        &self.what
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// Builds a segment name; shorthand for [`SegmentName::new`].
pub fn segment_name(job: &str, generation: u64, what: &str) -> Result<SegmentName, NameError> {
    SegmentName::new(job, generation, what)
}

/// Parses a segment name; shorthand for [`SegmentName::parse`].
pub fn parse_segment_name(name: &str) -> Result<SegmentName, NameError> {
    SegmentName::parse(name)
}

/// The 64-bit job id stored in segment headers: FNV-1a of the job name. Openers compare it
/// to catch a segment of another job that happens to sit under the expected name.
pub fn job_id(job: &str) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    job.bytes().fold(FNV_OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

fn check_field(field: &'static str, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty { field });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(NameError::BadCharacter {
            field,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// Canonical decimal only (no sign, no leading zeros), so that parse(new(x)) == x and no two
/// strings parse to the same name.
fn parse_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_has_the_documented_shape_and_parses_back() {
        let name = segment_name("resnet_7", 3, "grads").unwrap();
        assert_eq!(name.as_str(), "/gnc-resnet_7-3-grads");
        assert_eq!(name.file_name(), "gnc-resnet_7-3-grads");
        assert_eq!(parse_segment_name(name.as_str()).unwrap(), name);
        assert_eq!(parse_segment_name(name.file_name()).unwrap(), name);
    }

    #[test]
    fn fields_with_separators_or_odd_characters_are_refused() {
        assert!(matches!(
            segment_name("a-b", 0, "x"),
            Err(NameError::BadCharacter { field: "job", .. })
        ));
        assert!(matches!(
            segment_name("a", 0, "x/y"),
            Err(NameError::BadCharacter { field: "what", .. })
        ));
        assert!(matches!(
            segment_name("", 0, "x"),
            Err(NameError::Empty { field: "job" })
        ));
        let long = "j".repeat(250);
        assert!(matches!(
            segment_name(&long, 0, "x"),
            Err(NameError::TooLong { .. })
        ));
    }

    #[test]
    fn foreign_names_are_not_parsed_as_ours() {
        for foreign in [
            "pulse-shm-1234",
            "gnc-",
            "gnc-job-1",
            "gnc-job-01-x",
            "gnc-job-+1-x",
            "gnc-job-1-x-y",
            "gnc-job-x-grads",
            "gnc-job-1-",
        ] {
            assert!(
                matches!(parse_segment_name(foreign), Err(NameError::NotOurs { .. })),
                "{foreign} parsed"
            );
        }
    }

    #[test]
    fn job_ids_differ_for_different_jobs() {
        assert_ne!(job_id("a"), job_id("b"));
        assert_eq!(job_id("resnet"), job_id("resnet"));
    }
}
