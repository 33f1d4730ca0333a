//! Data sets in memory, normalised per channel, and the assembly of one worker's small batch.
//!
//! Examples live in plain `Vec<f32>` (shared read-only by every compute thread) and a worker's
//! batch is copied out into a fresh tensor, so no tensor is shared between threads.

pub mod cifar;
pub mod idx;
pub mod order;
pub mod synthetic;
mod tensors;

use std::path::Path;
use std::sync::Arc;

use gnc_contract::data_files::{self, CifarVariant, root};
use gnc_contract::tensor_files::{self, Elem};
use gnc_proto::{DataSpec, Dataset};
use tch::Tensor;

use crate::DataError;
use crate::device::Device;
use crate::rng::{Purpose, Stream};

/// One split (train or test) of a data set.
#[derive(Clone)]
pub struct Examples {
    features: Features,
    pub labels: Arc<Vec<i64>>,
    /// Per-example shape: `[C, H, W]` for images, `[D]` for vectors.
    pub shape: Vec<usize>,
}

/// Where the examples' values are.
#[derive(Clone)]
enum Features {
    /// In memory, normalised, `example_len` per example, channel-major for images.
    Memory(Arc<Vec<f32>>),
    /// In a file, as stored (uint8 or float32; memory-mapped where the format allows), example
    /// `i` at row `rows[i]`; normalised with `stats` as each example is copied out.
    Stored {
        array: tensor_files::Array,
        rows: Arc<Vec<u32>>,
        stats: Arc<Vec<(f64, f64)>>,
    },
}

impl Examples {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn example_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Keeps the first `n` examples (`n` ≤ the examples there are).
    fn truncate(&mut self, n: usize) {
        if n < self.len() {
            let len = self.example_len();
            self.features = match &self.features {
                Features::Memory(f) => Features::Memory(Arc::new(f[..n * len].to_vec())),
                Features::Stored { array, rows, stats } => Features::Stored {
                    array: array.clone(),
                    rows: Arc::new(rows[..n].to_vec()),
                    stats: Arc::clone(stats),
                },
            };
            self.labels = Arc::new(self.labels[..n].to_vec());
        }
    }

    /// Writes example `i`'s normalised values into `dst` (`example_len` of them).
    pub fn example_into(&self, i: usize, dst: &mut [f32]) {
        let len = self.example_len();
        match &self.features {
            Features::Memory(f) => dst.copy_from_slice(&f[i * len..(i + 1) * len]),
            Features::Stored { array, rows, stats } => {
                let row = rows[i] as usize;
                let plane = len / stats.len();
                stored_values(array, row * len, dst);
                for (c, &(mean, std)) in stats.iter().enumerate() {
                    for v in &mut dst[c * plane..(c + 1) * plane] {
                        *v = normalised(*v, mean, std);
                    }
                }
            }
        }
    }

    /// Example `i`'s normalised values.
    pub fn example(&self, i: usize) -> Vec<f32> {
        let mut v = vec![0f32; self.example_len()];
        self.example_into(i, &mut v);
        v
    }
}

/// `dst.len()` values of `array` from element `start`, as the image sets' values are: uint8
/// scaled to [0, 1] by the same f32 division, float32 as stored.
fn stored_values(array: &tensor_files::Array, start: usize, dst: &mut [f32]) {
    let data = array.data();
    let n = dst.len();
    match array.elem {
        Elem::U8 => {
            for (v, &b) in dst.iter_mut().zip(&data[start..start + n]) {
                *v = b as f32 / 255.0;
            }
        }
        Elem::F32 => {
            let bytes = &data[start * 4..(start + n) * 4];
            for (v, b) in dst.iter_mut().zip(bytes.chunks_exact(4)) {
                *v = f32::from_le_bytes(b.try_into().expect("4 bytes"));
            }
        }
        other => unreachable!("inputs of {other:?} are refused when the files are read"),
    }
}

/// One value normalised by its channel's mean and standard deviation (the same arithmetic for
/// every data set, so a set read from a tensors file has the bits of the same set in IDX).
fn normalised(v: f32, mean: f64, std: f64) -> f32 {
    ((v as f64 - mean) / std) as f32
}

/// A loaded data set.
#[derive(Clone)]
pub struct DataSet {
    pub train: Examples,
    pub test: Examples,
    pub classes: usize,
}

/// Loads the data set a job names, applies the subsets and normalises with the training
/// split's per-channel mean and standard deviation.
pub fn load(spec: &DataSpec, seed: u64) -> Result<DataSet, DataError> {
    let mut set = match spec.dataset {
        Dataset::FashionMnist | Dataset::Mnist => load_idx(root(spec)?)?,
        Dataset::Cifar10 | Dataset::Cifar100 => {
            load_cifar(root(spec)?, CifarVariant::of(spec.dataset))?
        }
        Dataset::Tensors => tensors::load(spec)?,
        Dataset::TeacherStudent => {
            let ts = spec
                .teacher_student
                .as_ref()
                .ok_or_else(|| DataError::Spec("data.teacher_student is missing".into()))?;
            let make = |split, n| {
                let g = synthetic::generate(ts, seed, split, n);
                Examples {
                    features: Features::Memory(Arc::new(g.features)),
                    labels: Arc::new(g.labels.into_iter().map(i64::from).collect()),
                    shape: vec![ts.input_dim],
                }
            };
            DataSet {
                train: make(0, ts.train_examples),
                test: make(1, ts.test_examples),
                classes: ts.classes,
            }
        }
    };
    for (key, n, split) in [
        ("data.train_subset", spec.train_subset, &mut set.train),
        ("data.test_subset", spec.test_subset, &mut set.test),
    ] {
        let keep = data_files::subset(key, n, split.len())?;
        split.truncate(keep);
    }
    normalise(&mut set);
    Ok(set)
}

fn bytes_to_examples(pixels: &[u8], labels: Vec<u8>, shape: Vec<usize>) -> Examples {
    Examples {
        features: Features::Memory(Arc::new(pixels.iter().map(|&p| p as f32 / 255.0).collect())),
        labels: Arc::new(labels.into_iter().map(i64::from).collect()),
        shape,
    }
}

fn load_idx_split(dir: &Path, prefix: &str) -> Result<Examples, DataError> {
    let (images_path, labels_path) = data_files::idx_files(dir, prefix)?;
    let images = idx::read_idx(&images_path)?;
    let labels = idx::read_idx(&labels_path)?;
    let (_, shape) = data_files::idx_split_shape(&images.dims, &labels.dims)
        .map_err(|m| DataError::Format(images_path, m))?;
    if let Some(bad) = labels.data.iter().find(|&&l| l > 9) {
        return Err(DataError::Format(
            labels_path,
            format!("label {bad} is not in 0..=9"),
        ));
    }
    Ok(bytes_to_examples(&images.data, labels.data, shape))
}

fn load_idx(dir: &Path) -> Result<DataSet, DataError> {
    Ok(DataSet {
        train: load_idx_split(dir, "train")?,
        test: load_idx_split(dir, "t10k")?,
        classes: data_files::IDX_CLASSES,
    })
}

fn load_cifar(dir: &Path, variant: CifarVariant) -> Result<DataSet, DataError> {
    let read = |files: &[&str]| -> Result<Examples, DataError> {
        let mut records = cifar::CifarRecords::default();
        for f in files {
            let path = dir.join(f);
            if !path.is_file() {
                return Err(DataError::Missing(path));
            }
            cifar::read_batch(&path, variant, &mut records)?;
        }
        Ok(bytes_to_examples(
            &records.pixels,
            records.labels,
            data_files::CIFAR_SHAPE.to_vec(),
        ))
    };
    Ok(DataSet {
        train: read(variant.train_files())?,
        test: read(variant.test_files())?,
        classes: variant.classes(),
    })
}

/// Per-channel mean and standard deviation of the training split, in f64, over the values as
/// stored (before normalisation), in example order.
fn channel_stats(ex: &Examples) -> Vec<(f64, f64)> {
    let channels = if ex.shape.len() == 3 { ex.shape[0] } else { 1 };
    let plane = ex.example_len() / channels;
    let mut sums = vec![(0f64, 0f64); channels];
    let mut buffer = vec![0f32; ex.example_len()];
    for i in 0..ex.len() {
        let example: &[f32] = match &ex.features {
            Features::Memory(f) => &f[i * buffer.len()..(i + 1) * buffer.len()],
            Features::Stored { array, rows, .. } => {
                stored_values(array, rows[i] as usize * buffer.len(), &mut buffer);
                &buffer
            }
        };
        for (c, s) in sums.iter_mut().enumerate() {
            for &v in &example[c * plane..(c + 1) * plane] {
                s.0 += v as f64;
                s.1 += (v as f64) * (v as f64);
            }
        }
    }
    let n = (ex.len() * plane) as f64;
    sums.into_iter()
        .map(|(s, sq)| {
            let mean = s / n;
            let var = (sq / n - mean * mean).max(0.0);
            (mean, var.sqrt().max(1e-6))
        })
        .collect()
}

fn normalise(set: &mut DataSet) {
    let stats = channel_stats(&set.train);
    for ex in [&mut set.train, &mut set.test] {
        let channels = stats.len();
        let plane = ex.example_len() / channels;
        let len = ex.example_len();
        match &mut ex.features {
            // Just loaded, so this is the only reference: normalise in place, no copy.
            Features::Memory(features) => {
                for example in Arc::make_mut(features).chunks_exact_mut(len) {
                    for (c, &(mean, std)) in stats.iter().enumerate() {
                        for v in &mut example[c * plane..(c + 1) * plane] {
                            *v = normalised(*v, mean, std);
                        }
                    }
                }
            }
            // Stored examples stay as they are; each is normalised as it is copied out.
            Features::Stored { stats: s, .. } => *s = Arc::new(stats.clone()),
        }
    }
}

/// Random crop with zero padding and horizontal flip, drawn per (epoch, example).
#[derive(Debug, Clone, Copy)]
pub struct Augment {
    pub seed: u64,
    pub epoch: u64,
    pub padding: usize,
}

/// Copies the examples `indices` into a `[n, shape...]` f32 tensor and an i64 label tensor on
/// `device`, augmenting images when asked.
pub fn gather(
    ex: &Examples,
    indices: &[u32],
    augment: Option<Augment>,
    device: Device,
) -> (Tensor, Tensor) {
    let len = ex.example_len();
    let mut features = vec![0f32; indices.len() * len];
    let mut src = Vec::new();
    for (dst, &i) in features.chunks_exact_mut(len).zip(indices) {
        match augment {
            Some(a) if ex.shape.len() == 3 => {
                src.resize(len, 0.0);
                ex.example_into(i as usize, &mut src);
                crop_and_flip(&src, dst, &ex.shape, a, i);
            }
            _ => ex.example_into(i as usize, dst),
        }
    }
    let mut shape: Vec<i64> = vec![indices.len() as i64];
    shape.extend(ex.shape.iter().map(|&d| d as i64));
    let labels: Vec<i64> = indices.iter().map(|&i| ex.labels[i as usize]).collect();
    (device.floats(&features, &shape), device.longs(&labels))
}

/// Takes a window of the zero-padded image at a random offset and flips it with p = 1/2.
/// Padding with zeros happens after normalisation, i.e. pads with the channel mean.
fn crop_and_flip(src: &[f32], dst: &mut [f32], shape: &[usize], a: Augment, example: u32) {
    let (c, h, w) = (shape[0], shape[1], shape[2]);
    let mut s = Stream::new(a.seed, Purpose::Augment, &[a.epoch, example as u64]);
    let span = 2 * a.padding as u64 + 1;
    let dy = s.below(span) as isize - a.padding as isize;
    let dx = s.below(span) as isize - a.padding as isize;
    let flip = s.below(2) == 1;
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                let sx = if flip { w - 1 - x } else { x } as isize + dx;
                let sy = y as isize + dy;
                let inside = sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize;
                dst[(ch * h + y) * w + x] = if inside {
                    src[(ch * h + sy as usize) * w + sx as usize]
                } else {
                    0.0
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subset_larger_than_its_split_is_refused() {
        let spec = |train_subset, test_subset| DataSpec {
            dataset: Dataset::TeacherStudent,
            root: None,
            augment: false,
            crop_padding: 4,
            teacher_student: Some(gnc_proto::TeacherStudentSpec {
                train_examples: 64,
                test_examples: 8,
                input_dim: 4,
                classes: 2,
                teacher_hidden: 4,
            }),
            train_subset,
            test_subset,
            tensors: None,
        };
        let set = load(&spec(Some(32), Some(8)), 1).unwrap();
        assert_eq!((set.train.len(), set.test.len()), (32, 8));
        let error = |train, test| match load(&spec(train, test), 1) {
            Ok(_) => panic!("{train:?} / {test:?} was accepted"),
            Err(e) => e.to_string(),
        };
        let e = error(Some(65), None);
        assert!(
            e.contains("data.train_subset = 65") && e.contains("64"),
            "{e}"
        );
        let e = error(None, Some(9));
        assert!(e.contains("data.test_subset = 9"), "{e}");
    }

    #[test]
    fn cifar_reader_reads_a_file_in_that_format() {
        // Two CIFAR-10 records written here in the binary format: label, then R, G, B planes.
        let mut bytes = Vec::new();
        for (label, value) in [(3u8, 10u8), (7, 200)] {
            bytes.push(label);
            for plane in 0..3u8 {
                bytes.extend(std::iter::repeat_n(value.wrapping_add(plane), 1024));
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data_batch_1.bin");
        std::fs::write(&path, &bytes).unwrap();
        let mut r = cifar::CifarRecords::default();
        cifar::read_batch(&path, CifarVariant::Cifar10, &mut r).unwrap();
        assert_eq!(r.labels, vec![3, 7]);
        assert_eq!(r.pixels.len(), 2 * data_files::CIFAR_IMAGE_BYTES);
        assert_eq!(r.pixels[1024], 11, "green plane follows red");
        assert_eq!(r.pixels[data_files::CIFAR_IMAGE_BYTES + 2048], 202);
        let mut short = cifar::CifarRecords::default();
        let err = cifar::parse_batch(&bytes[..100], CifarVariant::Cifar10, &mut short);
        assert!(err.unwrap_err().contains("whole number"));
    }

    #[test]
    fn crop_and_flip_moves_pixels_and_is_reproducible() {
        let shape = [1usize, 4, 4];
        let src: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let a = Augment {
            seed: 1,
            epoch: 0,
            padding: 1,
        };
        let mut seen_different = false;
        for example in 0..20 {
            let mut d1 = vec![0f32; 16];
            let mut d2 = vec![0f32; 16];
            crop_and_flip(&src, &mut d1, &shape, a, example);
            crop_and_flip(&src, &mut d2, &shape, a, example);
            assert_eq!(d1, d2);
            seen_different |= d1 != src;
            // Every output pixel is an input pixel or padding.
            assert!(d1.iter().all(|v| *v == 0.0 || src.contains(v)));
        }
        assert!(seen_different);
    }
}
