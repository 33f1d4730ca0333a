//! Reader for the IDX format of MNIST and Fashion-MNIST (LeCun et al.), raw or gzip: the
//! header (`gnc_contract::data_files::idx_header`), then the data in row-major order.

use std::io::Read;
use std::path::Path;

use gnc_contract::data_files::{idx_header, open_idx};

use crate::DataError;

/// An IDX array of unsigned bytes.
#[derive(Debug)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads a whole IDX file; `.gz` files are decompressed.
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let mut bytes = Vec::new();
    open_idx(path)?
        .read_to_end(&mut bytes)
        .map_err(|e| DataError::Io(path.to_path_buf(), e.to_string()))?;
    parse_idx(&bytes).map_err(|m| DataError::Format(path.to_path_buf(), m))
}

/// Parses IDX bytes; the error says what is wrong.
pub fn parse_idx(bytes: &[u8]) -> Result<IdxArray, String> {
    let (dims, header) = idx_header(bytes)?;
    let count: usize = dims.iter().product();
    let data = &bytes[header..];
    if data.len() != count {
        return Err(format!(
            "dimensions {dims:?} need {count} data bytes, the file has {}",
            data.len()
        ));
    }
    Ok(IdxArray {
        dims,
        data: data.to_vec(),
    })
}

/// Encodes an IDX array (used by tests and tools that write small IDX files).
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&(*d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors_name_the_problem() {
        let bytes = encode_idx(&[2, 2, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let a = parse_idx(&bytes).unwrap();
        assert_eq!(a.dims, vec![2, 2, 3]);
        assert_eq!(a.data[11], 12);
        let truncated = &bytes[..bytes.len() - 1];
        assert!(
            parse_idx(truncated)
                .unwrap_err()
                .contains("need 12 data bytes")
        );
        let mut bad = bytes.clone();
        bad[0] = 1;
        assert!(parse_idx(&bad).unwrap_err().contains("magic"));
    }

    #[test]
    fn reads_gzip_files() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x-idx1-ubyte.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&encode_idx(&[3], &[7, 8, 9])).unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let found = gnc_contract::data_files::locate(dir.path(), "x-idx1-ubyte").unwrap();
        assert_eq!(found, path);
        assert_eq!(read_idx(&path).unwrap().data, vec![7, 8, 9]);
    }
}
