//! Checkpoints: the training state as a safetensors file plus a JSON manifest (the manifest,
//! its file names, pruning and finding the newest intact one are in `gnc_contract::manifest`,
//! shared with the supervisor).
//!
//! `ckpt-<iteration>.safetensors` holds every tensor of the state (see [`crate::state`] for
//! the names); `ckpt-<iteration>.json` is written after it and names it with its SHA-256, so a
//! manifest only ever points at a complete tensor file. Both are replaced atomically, and the
//! newest `keep` checkpoints are retained. Loading verifies the spec hash and the tensor
//! file's checksum; a damaged newest checkpoint is reported, moved to `damaged/` for
//! inspection (so neither pruning nor a later resume touches it) and the previous one is used.
//!
//! A checkpoint written by several worker processes also has *parts*: process p writes the
//! tensors only it holds (the previous gradients of its block of logical workers) to
//! `ckpt-<iteration>.part-<lo>-<hi>.safetensors` ([`write_part`]), and process 0 writes the
//! main file and the manifest only once every part is durable, naming each part with its
//! SHA-256 ([`Manifest::parts`]). [`read`] verifies and merges the parts, so a checkpoint
//! loads the same whatever process count wrote it, and whatever count reads it. Files of a
//! checkpoint that never got its manifest (a crash between the parts and the manifest) and
//! temporary files of interrupted writes are removed when a later checkpoint is written.

use std::path::{Path, PathBuf};

use gnc_contract::CheckpointError;
use gnc_contract::atomic::write_atomic;
use gnc_contract::manifest::{self, FORMAT, Manifest, PartRef, part_file_name};
use tch::Tensor;

use crate::tensor_file::{self, Stored};

/// Writes a checkpoint and prunes old ones beyond `keep`.
pub fn write(
    dir: &Path,
    mut manifest: Manifest,
    tensors: &[(String, Stored)],
    keep: usize,
) -> Result<PathBuf, CheckpointError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| CheckpointError::Io(p, e.to_string())
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    manifest.format = FORMAT;
    manifest.reproducibility = Some(crate::pin::key());
    manifest.tensors_file = format!("ckpt-{:09}.safetensors", manifest.iteration);
    manifest.tensors_sha256 = tensor_file::write(&dir.join(&manifest.tensors_file), tensors)?;
    let mpath = manifest::manifest_file(dir, manifest.iteration);
    let json = serde_json::to_vec_pretty(&manifest).expect("manifests serialise");
    write_atomic(&mpath, &json).map_err(io(&mpath))?;
    manifest::prune(dir, keep);
    Ok(mpath)
}

/// Writes (atomically, durably) the part of checkpoint `iteration` for `workers`.
pub fn write_part(
    dir: &Path,
    iteration: u64,
    workers: (usize, usize),
    tensors: &[(String, Stored)],
) -> Result<PathBuf, CheckpointError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CheckpointError::Io(dir.to_path_buf(), e.to_string()))?;
    let path = dir.join(part_file_name(iteration, workers));
    tensor_file::write(&path, tensors)?;
    Ok(path)
}

/// The manifest entry of a part already written by [`write_part`] (hashes the file).
pub fn part_ref(
    dir: &Path,
    iteration: u64,
    workers: (usize, usize),
) -> Result<PartRef, CheckpointError> {
    let file = part_file_name(iteration, workers);
    let path = dir.join(&file);
    let sha256 =
        manifest::sha256_file(&path).map_err(|e| CheckpointError::Io(path, e.to_string()))?;
    Ok(PartRef {
        file,
        sha256,
        workers,
    })
}

/// A loaded checkpoint.
pub struct Loaded {
    pub manifest: Manifest,
    pub tensors: Vec<(String, Tensor)>,
}

/// Reads one checkpoint, checking everything that can be checked.
pub fn read(manifest_file: &Path, spec_hash: &str) -> Result<Loaded, CheckpointError> {
    let dir = manifest_file.parent().unwrap_or(Path::new("."));
    load(dir, manifest::read_manifest(manifest_file, spec_hash)?)
}

/// The tensors of the checkpoint `manifest` describes, from the files it names in `dir`.
fn load(dir: &Path, manifest: Manifest) -> Result<Loaded, CheckpointError> {
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (file, sha256) in manifest::named_files(&manifest) {
        let path = dir.join(file);
        for (name, tensor) in tensor_file::read(&path, sha256)? {
            if tensors.iter().any(|(n, _)| *n == name) {
                return Err(CheckpointError::Format(
                    path,
                    format!("tensor {name} appears in more than one file of the checkpoint"),
                ));
            }
            tensors.push((name, tensor));
        }
    }
    Ok(Loaded { manifest, tensors })
}

/// The newest readable checkpoint in `dir` for this spec, loaded (see [`manifest::latest`]).
pub fn latest(
    dir: &Path,
    spec_hash: &str,
    warn: &mut dyn FnMut(&str),
) -> Result<Option<Loaded>, CheckpointError> {
    manifest::latest(dir, spec_hash, warn, load)
}
