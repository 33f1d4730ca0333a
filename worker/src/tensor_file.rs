//! Files of named f32 tensors in the safetensors format, written and read one tensor at a time.
//!
//! A checkpoint of GNC holds every logical worker's previous gradient: M·P floats, as large as
//! everything else in the process together. Building the whole file in memory (as
//! `safetensors::serialize` and `SafeTensors::deserialize` over a read buffer do) would hold
//! that state two or three times over at each checkpoint and resume; here the largest buffer
//! is one tensor's bytes. Files are replaced atomically and durably ([`crate::atomic`]), and
//! identified by the SHA-256 of their bytes, which [`read`] checks as it goes.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use safetensors::tensor::{Dtype, Metadata, View};
use sha2::{Digest, Sha256};
use tch::Tensor;

use crate::CheckpointError;
use crate::hash::f32_bytes;
use gnc_contract::atomic::replace_atomic;
use gnc_contract::manifest::sha256_file;

/// What a file holds under one name: a tensor, or values of a given shape (row-major), such
/// as GNC's saved gradients.
pub enum Stored<'a> {
    Tensor(Tensor),
    Values(&'a [f32], Vec<i64>),
}

impl Stored<'_> {
    fn shape(&self) -> Vec<i64> {
        match self {
            Stored::Tensor(t) => t.size(),
            Stored::Values(_, shape) => shape.clone(),
        }
    }
}

/// One tensor as the safetensors writer sees it: its bytes are made when the writer reaches it
/// and dropped once written.
struct Lazy<'a> {
    stored: &'a Stored<'a>,
    shape: Vec<usize>,
}

impl View for Lazy<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(match self.stored {
            Stored::Tensor(t) => f32_bytes(t),
            Stored::Values(v, _) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        })
    }
    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * 4
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CheckpointError + '_ {
    move |e| CheckpointError::Io(path.to_path_buf(), e.to_string())
}

/// Writes `tensors` to `path` (atomically, durably) and returns the file's SHA-256 (hex).
pub fn write(path: &Path, tensors: &[(String, Stored)]) -> Result<String, CheckpointError> {
    let views = tensors.iter().map(|(name, stored)| {
        let shape = stored.shape().iter().map(|&d| d as usize).collect();
        (name.as_str(), Lazy { stored, shape })
    });
    let mut digest = None;
    replace_atomic(path, |tmp| {
        safetensors::serialize_to_file(views, &None, tmp).map_err(std::io::Error::other)?;
        digest = Some(sha256_file(tmp)?);
        Ok(())
    })
    .map_err(io(path))?;
    Ok(digest.expect("a successful write hashed its file"))
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The tensors of the file at `path`, whose SHA-256 must be `sha256`; any damage (a wrong
/// checksum, a truncated file, a header that does not describe the data) is an error naming
/// the file.
pub fn read(path: &Path, sha256: &str) -> Result<Vec<(String, Tensor)>, CheckpointError> {
    let bad = |m: String| CheckpointError::Format(path.to_path_buf(), m);
    let file = File::open(path).map_err(io(path))?;
    let size = file.metadata().map_err(io(path))?.len();
    let mut reader = Hashing {
        inner: BufReader::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
    };
    // Everything up to the end is read (and hashed) even when the contents turn out to be
    // damaged, so that a checksum mismatch, the likelier cause, is what gets reported.
    let parsed = parse(&mut reader, size);
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(io(path))?;
    let digest = hex::encode(reader.hasher.finalize());
    if digest != sha256 {
        return Err(bad(format!(
            "checksum {digest} does not match the manifest's {sha256} ({size} bytes; truncated or damaged)"
        )));
    }
    parsed.map_err(bad)
}

/// The header and the tensors, in the order of their data.
fn parse(reader: &mut impl Read, size: u64) -> Result<Vec<(String, Tensor)>, String> {
    let mut n = [0u8; 8];
    reader
        .read_exact(&mut n)
        .map_err(|e| format!("no header: {e}"))?;
    let n = u64::from_le_bytes(n);
    if n > size.saturating_sub(8) {
        return Err(format!("the header claims {n} bytes of a {size}-byte file"));
    }
    let mut header = vec![0u8; n as usize];
    reader
        .read_exact(&mut header)
        .map_err(|e| format!("header: {e}"))?;
    let metadata: Metadata = serde_json::from_slice(&header).map_err(|e| format!("header: {e}"))?;
    let mut infos: Vec<_> = metadata.tensors().into_iter().collect();
    infos.sort_by_key(|(_, info)| info.data_offsets);
    let mut end = 0;
    let mut tensors = Vec::with_capacity(infos.len());
    for (name, info) in infos {
        if info.dtype != Dtype::F32 {
            return Err(format!("tensor {name} is {:?}, not F32", info.dtype));
        }
        let (lo, hi) = info.data_offsets;
        let numel: usize = info.shape.iter().product();
        if lo != end || hi.checked_sub(lo) != Some(numel * 4) {
            return Err(format!(
                "tensor {name}'s data offsets {lo}..{hi} do not follow the previous tensor's \
                 end {end} with {numel} floats"
            ));
        }
        end = hi;
        let mut bytes = vec![0u8; hi - lo];
        reader
            .read_exact(&mut bytes)
            .map_err(|e| format!("tensor {name}: {e}"))?;
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
        tensors.push((name, Tensor::from_slice(&values).view(shape.as_slice())));
    }
    if 8 + n + end as u64 != size {
        return Err(format!(
            "{size} bytes, but the header describes {}",
            8 + n + end as u64
        ));
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUES: [f32; 6] = [0.5, 0.25, -0.125, 8.0, 9.0, 10.0];

    fn sample() -> Vec<(String, Stored<'static>)> {
        vec![
            (
                "b".into(),
                Stored::Tensor(Tensor::from_slice(&[1f32, -2.5, 3.0])),
            ),
            ("a/w".into(), Stored::Values(&VALUES, vec![2, 3])),
        ]
    }

    #[test]
    fn a_written_file_reads_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let sha = write(&path, &sample()).unwrap();
        assert_eq!(sha, sha256_file(&path).unwrap());
        // The crate's own reader agrees with the file.
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.len(), 2);
        let mut back = read(&path, &sha).unwrap();
        back.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(back[0].0, "a/w");
        assert_eq!(back[0].1.size(), [2, 3]);
        assert_eq!(
            Vec::<f32>::try_from(back[0].1.flatten(0, -1)).unwrap(),
            VALUES
        );
        assert_eq!(back[1].0, "b");
        assert_eq!(Vec::<f32>::try_from(&back[1].1).unwrap(), [1.0, -2.5, 3.0]);
    }

    #[test]
    fn truncation_and_damage_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let sha = write(&path, &sample()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let e = read(&path, &sha).unwrap_err().to_string();
        assert!(e.contains("truncated or damaged"), "{e}");
        // A file whose checksum matches but whose header lies about its data.
        let mut lying = bytes.clone();
        lying.truncate(bytes.len() - 4);
        std::fs::write(&path, &lying).unwrap();
        let e = read(&path, &sha256_file(&path).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.safetensors"), "{e}");
    }
}
