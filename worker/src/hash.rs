//! The model's identity: SHA-256 over every parameter and BatchNorm running statistic, in
//! canonical order, each as its name, its shape and its little-endian f32 bytes.

use sha2::{Digest, Sha256};
use tch::Tensor;

use crate::model::ParamSpec;

/// Raw little-endian f32 bytes of a tensor.
pub fn f32_bytes(t: &Tensor) -> Vec<u8> {
    let values = Vec::<f32>::try_from(&t.to_kind(tch::Kind::Float).contiguous().flatten(0, -1))
        .expect("an f32 tensor converts to Vec<f32>");
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn update(h: &mut Sha256, name: &str, t: &Tensor) {
    h.update((name.len() as u64).to_le_bytes());
    h.update(name.as_bytes());
    let shape = t.size();
    h.update((shape.len() as u64).to_le_bytes());
    for d in shape {
        h.update((d as u64).to_le_bytes());
    }
    h.update(f32_bytes(t));
}

/// Hex SHA-256 of the model state.
pub fn model_sha256(
    specs: &[ParamSpec],
    params: &[Tensor],
    running: &[(Tensor, Tensor)],
) -> String {
    let mut h = Sha256::new();
    for (spec, p) in specs.iter().zip(params) {
        update(&mut h, &spec.name, p);
    }
    for (i, (mean, var)) in running.iter().enumerate() {
        update(&mut h, &format!("bn{i}.running_mean"), mean);
        update(&mut h, &format!("bn{i}.running_var"), var);
    }
    hex::encode(h.finalize())
}
