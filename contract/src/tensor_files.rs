//! The user's arrays (`dataset = "tensors"`): NumPy `.npy` files and `.safetensors` files read
//! in place (memory-mapped: a file larger than memory is paged in as batches touch it), `.npz`
//! archives read whole (a member may be compressed). npyz reads NumPy's headers, the
//! `safetensors` crate its format's, `zip` the archive; every refusal names the file and what
//! is wrong with it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gnc_proto::TensorFiles;
use gnc_shm::MappedFile;

use crate::DataError;

/// The element types gnc reads: inputs as uint8 or float32, labels as integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    U8,
    F32,
    I32,
    I64,
}

impl Elem {
    pub fn size(self) -> usize {
        match self {
            Elem::U8 => 1,
            Elem::F32 | Elem::I32 => 4,
            Elem::I64 => 8,
        }
    }
}

/// Where an array's bytes live.
#[derive(Clone)]
enum Bytes {
    Mapped(Arc<MappedFile>),
    Owned(Arc<Vec<u8>>),
}

/// One array of a split: its dimensions, element type and little-endian C-order data.
#[derive(Clone)]
pub struct Array {
    /// The file (and member) it came from, for messages.
    pub origin: PathBuf,
    pub dims: Vec<usize>,
    pub elem: Elem,
    bytes: Bytes,
    offset: usize,
}

impl Array {
    /// The elements' bytes, exactly `dims.product() × elem.size()` of them.
    pub fn data(&self) -> &[u8] {
        let all = match &self.bytes {
            Bytes::Mapped(m) => m.bytes(),
            Bytes::Owned(v) => v.as_slice(),
        };
        &all[self.offset..self.offset + self.len() * self.elem.size()]
    }

    /// Elements in all.
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as an integer (a label), for integer arrays.
    pub fn int(&self, i: usize) -> i64 {
        let d = self.data();
        match self.elem {
            Elem::U8 => i64::from(d[i]),
            Elem::I32 => i64::from(i32::from_le_bytes(d[i * 4..i * 4 + 4].try_into().unwrap())),
            Elem::I64 => i64::from_le_bytes(d[i * 8..i * 8 + 8].try_into().unwrap()),
            Elem::F32 => panic!("{} holds floats, not integers", self.origin.display()),
        }
    }
}

/// A split's inputs `(N, ...)` and labels `(N,)`, checked to agree.
pub struct Split {
    pub inputs: Array,
    pub labels: Array,
}

impl Split {
    /// Reads the files of one split (relative to `root`).
    pub fn read(root: &Path, files: &TensorFiles) -> Result<Split, DataError> {
        let (inputs, labels) = match files {
            TensorFiles::Npy { inputs, labels } => {
                (npy_file(&root.join(inputs))?, npy_file(&root.join(labels))?)
            }
            TensorFiles::File(path) => {
                let path = root.join(path);
                match path.extension().and_then(|e| e.to_str()) {
                    Some("npz") => (npz_member(&path, "inputs")?, npz_member(&path, "labels")?),
                    Some("safetensors") => {
                        let map = Arc::new(map(&path)?);
                        (
                            safetensors(&path, &map, "inputs")?,
                            safetensors(&path, &map, "labels")?,
                        )
                    }
                    _ => {
                        return Err(DataError::Format(
                            path,
                            "is neither .npz nor .safetensors (or name two .npy files: \
                             { inputs = \"x.npy\", labels = \"y.npy\" })"
                                .into(),
                        ));
                    }
                }
            }
        };
        let bad = |a: &Array, m: String| Err(DataError::Format(a.origin.clone(), m));
        if !matches!(inputs.elem, Elem::U8 | Elem::F32) {
            return bad(
                &inputs,
                format!("inputs are {:?}; gnc reads uint8 or float32", inputs.elem),
            );
        }
        if inputs.dims.len() < 2 {
            return bad(
                &inputs,
                format!("inputs have shape {:?}, not (N, ...)", inputs.dims),
            );
        }
        if labels.elem == Elem::F32 || labels.dims.len() != 1 {
            return bad(
                &labels,
                format!(
                    "labels must be integers of shape (N,); these are {:?} of shape {:?}",
                    labels.elem, labels.dims
                ),
            );
        }
        if labels.dims[0] != inputs.dims[0] {
            return bad(
                &labels,
                format!(
                    "{} labels for {} inputs ({})",
                    labels.dims[0],
                    inputs.dims[0],
                    inputs.origin.display()
                ),
            );
        }
        Ok(Split { inputs, labels })
    }

    pub fn examples(&self) -> usize {
        self.inputs.dims[0]
    }

    /// One example's shape: `(C, H, W)` for images, `(H, W)` read as one channel, `(D)`.
    pub fn example_shape(&self) -> Vec<usize> {
        match &self.inputs.dims[1..] {
            [h, w] => vec![1, *h, *w],
            rest => rest.to_vec(),
        }
    }

    /// Every label, checked to lie in `0..classes`.
    pub fn labels(&self, classes: usize) -> Result<Vec<i64>, DataError> {
        (0..self.labels.len())
            .map(|i| {
                let label = self.labels.int(i);
                if (0..classes as i64).contains(&label) {
                    Ok(label)
                } else {
                    Err(DataError::Format(
                        self.labels.origin.clone(),
                        format!("label {label} of example {i} is not in 0..{classes}"),
                    ))
                }
            })
            .collect()
    }
}

fn map(path: &Path) -> Result<MappedFile, DataError> {
    if !path.is_file() {
        return Err(DataError::Missing(path.to_path_buf()));
    }
    MappedFile::open(path).map_err(|e| DataError::Io(path.to_path_buf(), e.to_string()))
}

fn npy_file(path: &Path) -> Result<Array, DataError> {
    let mapped = Arc::new(map(path)?);
    npy(path.to_path_buf(), Bytes::Mapped(mapped))
}

/// An array from the bytes of a `.npy` file (or an archive member).
fn npy(origin: PathBuf, bytes: Bytes) -> Result<Array, DataError> {
    let all = match &bytes {
        Bytes::Mapped(m) => m.bytes(),
        Bytes::Owned(v) => v.as_slice(),
    };
    let bad = |m: String| DataError::Format(origin.clone(), m);
    let file = npyz::NpyFile::new(all).map_err(|e| bad(format!("not a NumPy .npy array: {e}")))?;
    if file.order() != npyz::Order::C {
        return Err(bad("is in Fortran order; save it C-contiguous".into()));
    }
    // descr() is the header's Python literal, e.g. '<f4' with its quotes.
    let descr = file.dtype().descr().trim_matches('\'').to_string();
    let elem = match descr.as_str() {
        "|u1" | "<u1" => Elem::U8,
        "<f4" => Elem::F32,
        "<i4" => Elem::I32,
        "<i8" => Elem::I64,
        other => {
            return Err(bad(format!(
                "elements of type {other:?}; gnc reads uint8 or float32 inputs and int32, int64 \
                 or uint8 labels, little-endian"
            )));
        }
    };
    let dims: Vec<usize> = file.shape().iter().map(|&d| d as usize).collect();
    let offset = npy_data_offset(all).ok_or_else(|| bad("has no complete header".into()))?;
    let need = dims.iter().product::<usize>() * elem.size();
    let have = all.len().saturating_sub(offset);
    if have != need {
        return Err(bad(format!(
            "shape {dims:?} of {descr} needs {need} bytes of data, the file has {have} \
             ({})",
            if have < need {
                "truncated"
            } else {
                "trailing bytes"
            }
        )));
    }
    Ok(Array {
        origin,
        dims,
        elem,
        bytes,
        offset,
    })
}

/// Where a `.npy` file's data starts: after the magic, the version, the header's length
/// (2 bytes in version 1, 4 in versions 2 and 3) and the header (NumPy's format spec).
fn npy_data_offset(bytes: &[u8]) -> Option<usize> {
    let le = |r: std::ops::Range<usize>| -> Option<usize> {
        let b = bytes.get(r)?;
        Some(
            b.iter()
                .rev()
                .fold(0usize, |acc, &x| (acc << 8) | usize::from(x)),
        )
    };
    match bytes.get(6)? {
        1 => Some(10 + le(8..10)?),
        2 | 3 => Some(12 + le(8..12)?),
        _ => None,
    }
}

fn npz_member(path: &Path, name: &str) -> Result<Array, DataError> {
    let io = |e: std::io::Error| DataError::Io(path.to_path_buf(), e.to_string());
    let file = std::fs::File::open(path).map_err(|e| {
        if path.is_file() {
            io(e)
        } else {
            DataError::Missing(path.to_path_buf())
        }
    })?;
    let bad = |m: String| DataError::Format(path.to_path_buf(), m);
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| bad(format!("not a .npz archive: {e}")))?;
    let member = format!("{name}.npy");
    let mut entry = archive
        .by_name(&member)
        .map_err(|_| bad(format!("has no array named {name:?} ({member})")))?;
    let mut bytes = Vec::new();
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("{member} cannot be read: {e}")))?;
    npy(path.join(&member), Bytes::Owned(Arc::new(bytes)))
}

fn safetensors(path: &Path, map: &Arc<MappedFile>, name: &str) -> Result<Array, DataError> {
    use safetensors::Dtype;
    let bad = |m: String| DataError::Format(path.to_path_buf(), m);
    let bytes = map.bytes();
    let (header, metadata) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("not a .safetensors file: {e}")))?;
    let info = metadata
        .info(name)
        .ok_or_else(|| bad(format!("has no tensor named {name:?}")))?;
    let elem = match info.dtype {
        Dtype::U8 => Elem::U8,
        Dtype::F32 => Elem::F32,
        Dtype::I32 => Elem::I32,
        Dtype::I64 => Elem::I64,
        other => {
            return Err(bad(format!(
                "tensor {name:?} is {other:?}; gnc reads U8, F32, I32, I64"
            )));
        }
    };
    let (begin, end) = info.data_offsets;
    let offset = 8 + header + begin;
    let need = info.shape.iter().product::<usize>() * elem.size();
    if end - begin != need || offset + need > bytes.len() {
        return Err(bad(format!(
            "tensor {name:?} of shape {:?} does not fit in the file (truncated?)",
            info.shape
        )));
    }
    Ok(Array {
        origin: path.to_path_buf(),
        dims: info.shape.clone(),
        elem,
        bytes: Bytes::Mapped(Arc::clone(map)),
        offset,
    })
}
