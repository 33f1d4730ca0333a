//! Reader for the CIFAR-10 / CIFAR-100 binary format (Krizhevsky 2009).
//!
//! Each record is the label byte(s) — one for CIFAR-10; coarse then fine for CIFAR-100, of
//! which we use the fine label — followed by 3072 pixel bytes: the 1024 red, then green, then
//! blue values of a 32x32 image, row-major.

use std::path::Path;

use crate::DataError;

pub const IMAGE_BYTES: usize = 3 * 32 * 32;

/// Images (N x 3072 bytes, channel-major) and labels of one or more batch files.
#[derive(Debug, Default)]
pub struct CifarRecords {
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

/// Which CIFAR variant, i.e. how many label bytes precede each image.
#[derive(Debug, Clone, Copy)]
pub enum Variant {
    Cifar10,
    Cifar100,
}

impl Variant {
    fn label_bytes(self) -> usize {
        match self {
            Variant::Cifar10 => 1,
            Variant::Cifar100 => 2,
        }
    }
}

/// Appends the records of one batch file.
pub fn read_batch(path: &Path, variant: Variant, into: &mut CifarRecords) -> Result<(), DataError> {
    let bytes =
        std::fs::read(path).map_err(|e| DataError::Io(path.to_path_buf(), e.to_string()))?;
    parse_batch(&bytes, variant, into).map_err(|m| DataError::Format(path.to_path_buf(), m))
}

pub fn parse_batch(bytes: &[u8], variant: Variant, into: &mut CifarRecords) -> Result<(), String> {
    let record = variant.label_bytes() + IMAGE_BYTES;
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
        return Err(format!(
            "{} bytes is not a whole number of {record}-byte records",
            bytes.len()
        ));
    }
    let classes = match variant {
        Variant::Cifar10 => 10,
        Variant::Cifar100 => 100,
    };
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
