//! The teacher–student data set: Gaussian inputs labelled by the argmax of a random one-hidden-
//! layer ReLU "teacher". Every number comes from counter-based streams, so the set is a pure
//! function of the seed; it needs no files, which makes it the data of fast tests.

use gnc_proto::TeacherStudentSpec;

use crate::rng::{Purpose, Stream};

/// Features (row-major, `input_dim` per example) and labels.
pub struct Generated {
    pub features: Vec<f32>,
    pub labels: Vec<u8>,
}

/// Generates `count` examples; `split` (0 = train, 1 = test) keeps the two sets disjoint.
pub fn generate(spec: &TeacherStudentSpec, seed: u64, split: u64, count: usize) -> Generated {
    let d = spec.input_dim;
    let h = spec.teacher_hidden;
    let c = spec.classes;
    let mut teacher = Stream::new(seed, Purpose::Synthetic, &[0]);
    let w1: Vec<f64> = (0..h * d)
        .map(|_| teacher.normal() / (d as f64).sqrt())
        .collect();
    let w2: Vec<f64> = (0..c * h)
        .map(|_| teacher.normal() / (h as f64).sqrt())
        .collect();
    let mut inputs = Stream::new(seed, Purpose::Synthetic, &[1, split]);
    let mut features = Vec::with_capacity(count * d);
    let mut labels = Vec::with_capacity(count);
    let mut x = vec![0f64; d];
    let mut hidden = vec![0f64; h];
    for _ in 0..count {
        for v in x.iter_mut() {
            *v = inputs.normal();
        }
        for (j, hj) in hidden.iter_mut().enumerate() {
            let z: f64 = w1[j * d..(j + 1) * d]
                .iter()
                .zip(&x)
                .map(|(w, v)| w * v)
                .sum();
            *hj = z.max(0.0);
        }
        let mut best = (0, f64::NEG_INFINITY);
        for k in 0..c {
            let z: f64 = w2[k * h..(k + 1) * h]
                .iter()
                .zip(&hidden)
                .map(|(w, v)| w * v)
                .sum();
            if z > best.1 {
                best = (k, z);
            }
        }
        features.extend(x.iter().map(|&v| v as f32));
        labels.push(best.0 as u8);
    }
    Generated { features, labels }
}
