//! The data sets' standard files as far as their headers go: where each split's files are, how
//! many examples they hold and of what shape. The worker loads the examples
//! (`gnc_worker::data`); the supervisor needs only these counts, so it reads a few bytes of each
//! file and never the data.

use std::io::Read;
use std::path::{Path, PathBuf};

use gnc_proto::{DataSpec, Dataset, TensorsSpec};

use crate::tensor_files::Split;

use crate::DataError;

/// The examples a job's data set has, after its subsets, and their shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataShape {
    pub train: usize,
    pub test: usize,
    /// Per-example shape: `[C, H, W]` for images, `[D]` for vectors.
    pub example: Vec<usize>,
    pub classes: usize,
}

impl DataShape {
    /// From the headers (IDX) or sizes (CIFAR) of the files `spec` names, or from the spec
    /// alone for the synthetic set; subsets applied and checked.
    pub fn read(spec: &DataSpec) -> Result<DataShape, DataError> {
        let (train, test, example, classes) = match spec.dataset {
            Dataset::FashionMnist | Dataset::Mnist => {
                let dir = root(spec)?;
                let train = idx_split(dir, "train")?;
                let test = idx_split(dir, "t10k")?;
                (train.0, test.0, train.1, IDX_CLASSES)
            }
            Dataset::Cifar10 | Dataset::Cifar100 => {
                let variant = CifarVariant::of(spec.dataset);
                let dir = root(spec)?;
                let count = |files: &[&str]| -> Result<usize, DataError> {
                    files
                        .iter()
                        .map(|f| variant.records(&existing(dir.join(f))?))
                        .sum()
                };
                (
                    count(variant.train_files())?,
                    count(variant.test_files())?,
                    CIFAR_SHAPE.to_vec(),
                    variant.classes(),
                )
            }
            Dataset::Tensors => {
                let (t, root) = tensors(spec)?;
                let train = Split::read(root, &t.train)?;
                let (train_n, test_n) = match (&t.test, t.test_fraction) {
                    (Some(files), _) => {
                        let test = Split::read(root, files)?;
                        if test.example_shape() != train.example_shape() {
                            return Err(DataError::Format(
                                test.inputs.origin.clone(),
                                format!(
                                    "test examples of shape {:?}, training examples of {:?}",
                                    test.example_shape(),
                                    train.example_shape()
                                ),
                            ));
                        }
                        (train.examples(), test.examples())
                    }
                    (None, fraction) => {
                        let test = held_out(train.examples(), fraction.unwrap_or(0.0));
                        (train.examples() - test, test)
                    }
                };
                (train_n, test_n, train.example_shape(), t.classes)
            }
            Dataset::TeacherStudent => {
                let ts = spec
                    .teacher_student
                    .as_ref()
                    .ok_or_else(|| DataError::Spec("data.teacher_student is missing".into()))?;
                (
                    ts.train_examples,
                    ts.test_examples,
                    vec![ts.input_dim],
                    ts.classes,
                )
            }
        };
        Ok(DataShape {
            train: subset("data.train_subset", spec.train_subset, train)?,
            test: subset("data.test_subset", spec.test_subset, test)?,
            example,
            classes,
        })
    }
}

/// The examples a split keeps under `data.<key>` = `subset`: the first `subset` of its `len`,
/// or all of them. A subset larger than the split is refused, since the run would train or
/// evaluate on fewer examples than asked.
pub fn subset(key: &str, subset: Option<usize>, len: usize) -> Result<usize, DataError> {
    match subset {
        Some(n) if n > len => Err(DataError::Spec(format!(
            "{key} = {n} exceeds the {len} examples of that split; the run would train or \
             evaluate on fewer than asked"
        ))),
        Some(n) => Ok(n),
        None => Ok(len),
    }
}

/// The examples `test_fraction` holds out of `n` for the test split: round(n × fraction).
pub fn held_out(n: usize, fraction: f64) -> usize {
    ((n as f64 * fraction).round() as usize).min(n)
}

/// `data.tensors` and `data.root` of a `dataset = "tensors"` spec.
pub fn tensors(spec: &DataSpec) -> Result<(&TensorsSpec, &Path), DataError> {
    let t = spec
        .tensors
        .as_ref()
        .ok_or_else(|| DataError::Spec("data.tensors is missing".into()))?;
    Ok((t, root(spec)?))
}

/// `data.root`, which every data set read from files needs.
pub fn root(spec: &DataSpec) -> Result<&Path, DataError> {
    spec.root
        .as_deref()
        .ok_or_else(|| DataError::Spec("data.root is missing".into()))
}

fn existing(path: PathBuf) -> Result<PathBuf, DataError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(DataError::Missing(path))
    }
}

/// MNIST and Fashion-MNIST have ten classes.
pub const IDX_CLASSES: usize = 10;

/// The images and labels files of an IDX split (`train` or `t10k`).
pub fn idx_files(dir: &Path, prefix: &str) -> Result<(PathBuf, PathBuf), DataError> {
    Ok((
        locate(dir, &format!("{prefix}-images-idx3-ubyte"))?,
        locate(dir, &format!("{prefix}-labels-idx1-ubyte"))?,
    ))
}

/// Examples and their shape `[1, H, W]` in an IDX split, from the two files' headers, which
/// must agree.
fn idx_split(dir: &Path, prefix: &str) -> Result<(usize, Vec<usize>), DataError> {
    let (images_path, labels_path) = idx_files(dir, prefix)?;
    let images = idx_dims(&images_path)?;
    let labels = idx_dims(&labels_path)?;
    idx_split_shape(&images, &labels).map_err(|m| DataError::Format(images_path, m))
}

/// The examples and `[1, H, W]` of an images file of `images` dimensions and a labels file of
/// `labels` dimensions, if they describe the same N examples of H×W.
pub fn idx_split_shape(images: &[usize], labels: &[usize]) -> Result<(usize, Vec<usize>), String> {
    if images.len() != 3 || labels.len() != 1 || images[0] != labels[0] {
        return Err(format!(
            "images {images:?} and labels {labels:?} do not describe the same N examples of HxW"
        ));
    }
    Ok((images[0], vec![1, images[1], images[2]]))
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

/// A reader of the file's contents, decompressed if it is `.gz`.
pub fn open_idx(path: &Path) -> Result<Box<dyn Read>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::Io(path.into(), e.to_string()))?;
    let file = std::io::BufReader::new(file);
    Ok(if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

/// The dimensions in an IDX file's header (its data is not read).
pub fn idx_dims(path: &Path) -> Result<Vec<usize>, DataError> {
    let io = |e: std::io::Error| DataError::Io(path.into(), e.to_string());
    let mut reader = open_idx(path)?;
    // The first four bytes say how many dimensions follow (a short file stops short, and
    // `idx_header` names what is missing).
    let mut header = Vec::new();
    reader
        .by_ref()
        .take(4)
        .read_to_end(&mut header)
        .map_err(io)?;
    if let Some(&ndim) = header.get(3) {
        reader
            .take(4 * u64::from(ndim))
            .read_to_end(&mut header)
            .map_err(io)?;
    }
    idx_header(&header)
        .map(|(dims, _)| dims)
        .map_err(|m| DataError::Format(path.into(), m))
}

/// Parses the header at the start of `bytes`: two zero bytes, the type code (0x08, unsigned
/// byte), the number of dimensions, each dimension as a big-endian u32. Returns the dimensions
/// and the header's length.
pub fn idx_header(bytes: &[u8]) -> Result<(Vec<usize>, usize), String> {
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
    let dims = (0..ndim)
        .map(|i| {
            let b = &bytes[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    Ok((dims, header))
}

/// Per-example shape of CIFAR images.
pub const CIFAR_SHAPE: [usize; 3] = [3, 32, 32];
/// Pixel bytes of one CIFAR image: 1024 red, then green, then blue values of 32x32.
pub const CIFAR_IMAGE_BYTES: usize = 3 * 32 * 32;

/// Which CIFAR variant: its files, classes and how many label bytes precede each image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CifarVariant {
    Cifar10,
    Cifar100,
}

impl CifarVariant {
    /// The variant of a CIFAR data set.
    pub fn of(dataset: Dataset) -> CifarVariant {
        match dataset {
            Dataset::Cifar100 => CifarVariant::Cifar100,
            _ => CifarVariant::Cifar10,
        }
    }

    /// One for CIFAR-10; coarse then fine for CIFAR-100 (the fine one is used).
    pub fn label_bytes(self) -> usize {
        match self {
            CifarVariant::Cifar10 => 1,
            CifarVariant::Cifar100 => 2,
        }
    }

    pub fn classes(self) -> usize {
        match self {
            CifarVariant::Cifar10 => 10,
            CifarVariant::Cifar100 => 100,
        }
    }

    pub fn record_bytes(self) -> usize {
        self.label_bytes() + CIFAR_IMAGE_BYTES
    }

    pub fn train_files(self) -> &'static [&'static str] {
        match self {
            CifarVariant::Cifar10 => &[
                "data_batch_1.bin",
                "data_batch_2.bin",
                "data_batch_3.bin",
                "data_batch_4.bin",
                "data_batch_5.bin",
            ],
            CifarVariant::Cifar100 => &["train.bin"],
        }
    }

    pub fn test_files(self) -> &'static [&'static str] {
        match self {
            CifarVariant::Cifar10 => &["test_batch.bin"],
            CifarVariant::Cifar100 => &["test.bin"],
        }
    }

    /// Records in a batch file of `bytes` bytes, which must be a whole number of them.
    pub fn whole_records(self, bytes: usize) -> Result<usize, String> {
        let record = self.record_bytes();
        if bytes == 0 || !bytes.is_multiple_of(record) {
            return Err(format!(
                "{bytes} bytes is not a whole number of {record}-byte records"
            ));
        }
        Ok(bytes / record)
    }

    /// Records in the batch file at `path`, from its size.
    fn records(self, path: &Path) -> Result<usize, DataError> {
        let bytes = std::fs::metadata(path)
            .map_err(|e| DataError::Io(path.into(), e.to_string()))?
            .len();
        self.whole_records(bytes as usize)
            .map_err(|m| DataError::Format(path.into(), m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn encode(dims: &[u32]) -> Vec<u8> {
        let mut out = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out
    }

    #[test]
    fn idx_dimensions_come_from_the_header_of_raw_and_gzip_files() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("a-idx3-ubyte");
        let mut bytes = encode(&[2, 3, 4]);
        bytes.extend([0u8; 24]);
        std::fs::write(&raw, &bytes).unwrap();
        assert_eq!(idx_dims(&raw).unwrap(), [2, 3, 4]);
        let gz = dir.path().join("b-idx1-ubyte.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&encode(&[7])).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        assert_eq!(idx_dims(&gz).unwrap(), [7]);
        std::fs::write(&raw, &bytes[..9]).unwrap();
        let err = idx_dims(&raw).unwrap_err().to_string();
        assert!(err.contains("truncated header for 3 dimensions"), "{err}");
    }

    #[test]
    fn cifar_files_must_hold_whole_records() {
        assert_eq!(CifarVariant::Cifar10.whole_records(2 * 3073), Ok(2));
        assert_eq!(CifarVariant::Cifar100.whole_records(3074), Ok(1));
        let err = CifarVariant::Cifar10.whole_records(100).unwrap_err();
        assert!(err.contains("3073-byte records"), "{err}");
    }

    #[test]
    fn a_subset_larger_than_its_split_is_refused_naming_the_key() {
        assert_eq!(subset("data.train_subset", Some(5), 10).unwrap(), 5);
        assert_eq!(subset("data.train_subset", None, 10).unwrap(), 10);
        let err = subset("data.test_subset", Some(11), 10)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("data.test_subset = 11 exceeds the 10 examples"),
            "{err}"
        );
    }
}
