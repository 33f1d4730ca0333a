//! Checkpoints: the training state as a safetensors file plus a JSON manifest.
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

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::atomic::write_atomic;
use crate::tensor_file::{self, Stored};
use crate::CheckpointError;

pub const FORMAT: u32 = 1;

/// The manifest of one checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub job: String,
    pub spec_hash: String,
    /// Iterations completed.
    pub iteration: u64,
    /// Supervisor generation that wrote it (bumped on every group restart).
    pub generation: u64,
    pub params_sha256: String,
    pub tensors_file: String,
    pub tensors_sha256: String,
    /// Part files holding the rest of the state (multi-process runs only; absent otherwise,
    /// so single-process manifests are unchanged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartRef>,
    /// What the bits depend on besides the spec (`gnc_proto::repro::Key`), filled in by
    /// [`write`]; absent in manifests of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reproducibility: Option<gnc_proto::repro::Key>,
}

/// One part file of a checkpoint, as named in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRef {
    pub file: String,
    pub sha256: String,
    /// The logical workers [lo, hi) whose tensors it holds.
    pub workers: (usize, usize),
}

/// The file name of the part of checkpoint `iteration` written for workers [lo, hi).
pub fn part_file_name(iteration: u64, (lo, hi): (usize, usize)) -> String {
    format!("ckpt-{iteration:09}.part-{lo}-{hi}.safetensors")
}

fn manifest_path(dir: &Path, iteration: u64) -> PathBuf {
    dir.join(format!("ckpt-{iteration:09}.json"))
}

/// The manifest of checkpoint `iteration` in `dir` (which may not exist).
pub fn manifest_file(dir: &Path, iteration: u64) -> PathBuf {
    manifest_path(dir, iteration)
}

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
    let mpath = manifest_path(dir, manifest.iteration);
    let json = serde_json::to_vec_pretty(&manifest).expect("manifests serialise");
    write_atomic(&mpath, &json).map_err(io(&mpath))?;
    prune(dir, keep);
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
        tensor_file::sha256_file(&path).map_err(|e| CheckpointError::Io(path, e.to_string()))?;
    Ok(PartRef {
        file,
        sha256,
        workers,
    })
}

/// Manifests in `dir`, newest first.
fn manifests(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ckpt-") && n.ends_with(".json"))
        })
        .collect();
    found.sort();
    found.reverse();
    found
}

fn prune(dir: &Path, keep: usize) {
    let mut kept = Vec::new();
    for (index, path) in manifests(dir).into_iter().enumerate() {
        let manifest = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str::<Manifest>(&text).ok());
        if index < keep {
            kept.push((path, manifest));
            continue;
        }
        if let Some(m) = manifest {
            let _ = std::fs::remove_file(dir.join(m.tensors_file));
            for part in m.parts {
                let _ = std::fs::remove_file(dir.join(part.file));
            }
        }
        let _ = std::fs::remove_file(path);
    }
    remove_orphans(dir, &kept);
}

/// Removes the files of checkpoints that never got a manifest: parts written before a crash
/// stopped process 0 short of the manifest (under another process count their names are
/// never rewritten), and temporary files of interrupted writes. Only files of iterations up
/// to the newest kept manifest's are touched (a newer one may still be being written), and
/// none of an iteration whose kept manifest cannot be read (what it names is unknown, and
/// loading it will set it aside with its files).
fn remove_orphans(dir: &Path, kept: &[(PathBuf, Option<Manifest>)]) {
    let Some(newest) = kept.first().and_then(|(path, _)| iteration_of(path)) else {
        return;
    };
    let mut named: Vec<String> = Vec::new();
    let mut unreadable: Vec<u64> = Vec::new();
    for (path, manifest) in kept {
        match manifest {
            Some(m) => {
                named.push(m.tensors_file.clone());
                named.extend(m.parts.iter().map(|part| part.file.clone()));
            }
            None => unreadable.extend(iteration_of(path)),
        }
        named.extend(path.file_name().map(|n| n.to_string_lossy().into_owned()));
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let (Some(name), Some(iteration)) = (path.file_name(), iteration_of(&path)) else {
            continue;
        };
        let name = name.to_string_lossy();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file
            && iteration <= newest
            && !unreadable.contains(&iteration)
            && !named.iter().any(|n| *n == name)
        {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The iteration in a checkpoint file's name: `ckpt-<iteration>.…`, or `.ckpt-<iteration>.…`
/// for a temporary file of [`write_atomic`].
fn iteration_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let rest = name
        .strip_prefix('.')
        .unwrap_or(name)
        .strip_prefix("ckpt-")?;
    let digits = rest.split('.').next()?;
    (digits.len() == 9 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// A loaded checkpoint.
pub struct Loaded {
    pub manifest: Manifest,
    pub tensors: Vec<(String, Tensor)>,
}

/// Reads one checkpoint, checking everything that can be checked.
pub fn read(manifest_file: &Path, spec_hash: &str) -> Result<Loaded, CheckpointError> {
    let bad = |m: String| CheckpointError::Format(manifest_file.to_path_buf(), m);
    let text = std::fs::read_to_string(manifest_file)
        .map_err(|e| CheckpointError::Io(manifest_file.to_path_buf(), e.to_string()))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| bad(format!("manifest is not valid: {e}")))?;
    if manifest.format != FORMAT {
        return Err(bad(format!(
            "format {} is not the supported {FORMAT}",
            manifest.format
        )));
    }
    if manifest.spec_hash != spec_hash {
        return Err(CheckpointError::SpecMismatch {
            path: manifest_file.to_path_buf(),
            found: manifest.spec_hash,
            expected: spec_hash.to_string(),
        });
    }
    let dir = manifest_file.parent().unwrap_or(Path::new("."));
    let mut tensors =
        tensor_file::read(&dir.join(&manifest.tensors_file), &manifest.tensors_sha256)?;
    for part in &manifest.parts {
        let path = dir.join(&part.file);
        for (name, tensor) in tensor_file::read(&path, &part.sha256)? {
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

/// The newest readable checkpoint in `dir` for this spec. Damaged ones are moved to
/// `dir/damaged/`, reported through `warn` and skipped; a checkpoint of another spec is an
/// error, since resuming it would silently train something else.
pub fn latest(
    dir: &Path,
    spec_hash: &str,
    warn: &mut dyn FnMut(&str),
) -> Result<Option<Loaded>, CheckpointError> {
    for m in manifests(dir) {
        match read(&m, spec_hash) {
            Ok(loaded) => return Ok(Some(loaded)),
            Err(e @ CheckpointError::SpecMismatch { .. }) => return Err(e),
            Err(e) => {
                let moved = set_aside(dir, &m);
                warn(&format!("skipping {e}; {moved}"));
            }
        }
    }
    Ok(None)
}

/// Moves a damaged checkpoint (its manifest and, if named, its tensor file) to `damaged/`.
fn set_aside(dir: &Path, manifest_file: &Path) -> String {
    let aside = dir.join("damaged");
    let tensors: Vec<PathBuf> = std::fs::read_to_string(manifest_file)
        .ok()
        .and_then(|t| serde_json::from_str::<Manifest>(&t).ok())
        .map(|m| {
            std::iter::once(m.tensors_file)
                .chain(m.parts.into_iter().map(|part| part.file))
                .map(|file| dir.join(file))
                .collect()
        })
        .unwrap_or_default();
    let moved = std::fs::create_dir_all(&aside).and_then(|()| {
        for file in std::iter::once(manifest_file.to_path_buf()).chain(tensors) {
            if let Some(name) = file.file_name().filter(|_| file.exists()) {
                std::fs::rename(&file, aside.join(name))?;
            }
        }
        Ok(())
    });
    match moved {
        Ok(()) => format!("moved to {} for inspection", aside.display()),
        Err(e) => format!("left in place (could not move it: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(iteration: u64, parts: &[&str]) -> Manifest {
        Manifest {
            format: FORMAT,
            job: "j".into(),
            spec_hash: "s".into(),
            iteration,
            generation: 0,
            params_sha256: String::new(),
            tensors_file: format!("ckpt-{iteration:09}.safetensors"),
            tensors_sha256: String::new(),
            parts: parts
                .iter()
                .map(|&file| PartRef {
                    file: file.into(),
                    sha256: String::new(),
                    workers: (0, 4),
                })
                .collect(),
            reproducibility: None,
        }
    }

    #[test]
    fn pruning_removes_unnamed_files_up_to_the_newest_manifest_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let touch = |name: &str| std::fs::write(d.join(name), b"x").unwrap();
        for (iteration, parts) in [
            (4, vec![]),
            (8, vec!["ckpt-000000008.part-0-4.safetensors"]),
        ] {
            let m = manifest(iteration, &parts);
            touch(&m.tensors_file);
            parts.iter().for_each(|p| touch(p));
            let json = serde_json::to_vec(&m).unwrap();
            std::fs::write(manifest_path(d, iteration), json).unwrap();
        }
        std::fs::write(d.join("ckpt-000000006.json"), b"{ damaged").unwrap();
        let orphans = [
            "ckpt-000000002.safetensors",
            "ckpt-000000008.part-4-8.safetensors",
            ".ckpt-000000007.part-0-4.safetensors.tmp-4242",
        ];
        orphans.iter().for_each(|o| touch(o));
        // Newer than the newest manifest (still being written), or not a checkpoint's file.
        let untouched = ["ckpt-000000012.part-0-4.safetensors", "notes.txt"];
        untouched.iter().for_each(|o| touch(o));
        std::fs::create_dir(d.join("damaged")).unwrap();

        prune(d, 2);

        let mut left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                // Kept: checkpoint 8 and (the second newest manifest) the unreadable 6, whose
                // iteration is left alone; checkpoint 4 is beyond `keep`.
                "ckpt-000000006.json",
                "ckpt-000000008.json",
                "ckpt-000000008.part-0-4.safetensors",
                "ckpt-000000008.safetensors",
                "ckpt-000000012.part-0-4.safetensors",
                "damaged",
                "notes.txt",
            ]
        );
    }

    #[test]
    fn iterations_are_read_from_checkpoint_and_temporary_names_only() {
        let of = |name: &str| iteration_of(Path::new(name));
        assert_eq!(of("ckpt-000000016.part-12-16.safetensors"), Some(16));
        assert_eq!(of(".ckpt-000000016.json.tmp-77"), Some(16));
        assert_eq!(of("ckpt-16.json"), None);
        assert_eq!(of("ckpt-00000001x.json"), None);
        assert_eq!(of("damaged"), None);
    }
}
