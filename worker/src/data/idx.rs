//! Reader for the IDX format of MNIST and Fashion-MNIST (LeCun et al.), raw or gzip.
//!
//! Layout: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, each
//! dimension as a big-endian u32, then the data in row-major order.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::DataError;

/// An IDX array of unsigned bytes.
#[derive(Debug)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Finds `<dir>/<name>` or `<dir>/<name>.gz`.
pub fn locate(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let raw = dir.join(name);
    if raw.is_file() {
        return Ok(raw);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(DataError::Missing(raw))
}

/// Reads a whole IDX file; `.gz` files are decompressed.
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let io = |e: std::io::Error| DataError::Io(path.to_path_buf(), e.to_string());
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut bytes)
            .map_err(io)?;
    } else {
        std::io::BufReader::new(file)
            .read_to_end(&mut bytes)
            .map_err(io)?;
    }
    parse_idx(&bytes).map_err(|m| DataError::Format(path.to_path_buf(), m))
}

/// Parses IDX bytes; the error says what is wrong.
pub fn parse_idx(bytes: &[u8]) -> Result<IdxArray, String> {
    if bytes.len() < 4 {
        return Err(format!(
            "{} bytes is too short for an IDX header",
            bytes.len()
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err("bad magic: the first two bytes of an IDX file are zero".into());
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "element type 0x{:02x} is not supported (only 0x08, unsigned byte)",
            bytes[2]
        ));
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if ndim == 0 || bytes.len() < header {
        return Err(format!("truncated header for {ndim} dimensions"));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let b = &bytes[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
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
        assert!(parse_idx(truncated)
            .unwrap_err()
            .contains("need 12 data bytes"));
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
        assert_eq!(locate(dir.path(), "x-idx1-ubyte").unwrap(), path);
        assert_eq!(read_idx(&path).unwrap().data, vec![7, 8, 9]);
    }
}
