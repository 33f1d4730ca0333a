//! Reader for the CIFAR-10 / CIFAR-100 binary format (Krizhevsky 2009).
//!
//! Each record is the label byte(s) — one for CIFAR-10; coarse then fine for CIFAR-100, of
//! which we use the fine label — followed by 3072 pixel bytes: the 1024 red, then green, then
//! blue values of a 32x32 image, row-major.

use std::path::Path;

use gnc_contract::data_files::CifarVariant;

use crate::DataError;

/// Images (N x 3072 bytes, channel-major) and labels of one or more batch files.
#[derive(Debug, Default)]
pub struct CifarRecords {
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

/// Appends the records of one batch file.
pub fn read_batch(
    path: &Path,
    variant: CifarVariant,
    into: &mut CifarRecords,
) -> Result<(), DataError> {
    let bytes =
        std::fs::read(path).map_err(|e| DataError::Io(path.to_path_buf(), e.to_string()))?;
    parse_batch(&bytes, variant, into).map_err(|m| DataError::Format(path.to_path_buf(), m))
}

pub fn parse_batch(
    bytes: &[u8],
    variant: CifarVariant,
    into: &mut CifarRecords,
) -> Result<(), String> {
    variant.whole_records(bytes.len())?;
    let (record, classes) = (variant.record_bytes(), variant.classes());
    for r in bytes.chunks_exact(record) {
        let label = r[variant.label_bytes() - 1];
        if label as usize >= classes {
            return Err(format!(
                "label {label} is out of range for {classes} classes"
            ));
        }
        into.labels.push(label);
        into.pixels.extend_from_slice(&r[variant.label_bytes()..]);
    }
    Ok(())
}
