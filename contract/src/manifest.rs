//! Checkpoint manifests and the files they name, without reading a tensor.
//!
//! A checkpoint is `ckpt-<iteration>.safetensors` (and, from several worker processes,
//! `ckpt-<iteration>.part-<lo>-<hi>.safetensors` files) plus `ckpt-<iteration>.json`, the
//! manifest, written last and naming every file with its SHA-256, so a manifest only ever
//! points at complete files. The worker writes and loads the tensors (`gnc_worker::checkpoint`);
//! what is here is what the supervisor needs as well: the names, which checkpoint is the newest
//! intact one (verified by hashing its files as a stream, never holding them), setting damaged
//! ones aside, and pruning.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
    /// the worker's checkpoint writer; absent in manifests of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reproducibility: Option<gnc_proto::repro::Key>,
    /// Where the loss trigger (`schedule.loss_trigger`) stands; absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_trigger: Option<LossWindow>,
}

/// The state of a loss trigger: the last `window` iteration losses (oldest first) and what
/// they have triggered. The losses are kept exactly (JSON round-trips an f64), so a resumed
/// run acts at the same iteration as one that never stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LossWindow {
    pub recent: Vec<f64>,
    /// Iterations completed when the rate was halved (later iterations use half).
    pub halved_at: Option<u64>,
    /// Iterations completed when the loss fell below `stop_below`: the run ends there.
    pub converged_at: Option<u64>,
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

/// The manifest of checkpoint `iteration` in `dir` (which may not exist).
pub fn manifest_file(dir: &Path, iteration: u64) -> PathBuf {
    dir.join(format!("ckpt-{iteration:09}.json"))
}

/// The manifest at `manifest_file`, checked to be of this format and of the job whose spec
/// hash is `spec_hash`.
pub fn read_manifest(manifest_file: &Path, spec_hash: &str) -> Result<Manifest, CheckpointError> {
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
    Ok(manifest)
}

/// The files a manifest names, each with the SHA-256 it must have.
pub fn named_files(manifest: &Manifest) -> impl Iterator<Item = (&str, &str)> {
    std::iter::once((
        manifest.tensors_file.as_str(),
        manifest.tensors_sha256.as_str(),
    ))
    .chain(
        manifest
            .parts
            .iter()
            .map(|part| (part.file.as_str(), part.sha256.as_str())),
    )
}

/// The newest checkpoint in `dir` for this spec that `load` accepts (given the checkpoint
/// directory and its manifest). Damaged ones — an unreadable manifest, or any error of `load`
/// — are moved to `dir/damaged/`, reported through `warn` and skipped; a checkpoint of another
/// spec is an error, since resuming it would silently train something else.
pub fn latest<T>(
    dir: &Path,
    spec_hash: &str,
    warn: &mut dyn FnMut(&str),
    mut load: impl FnMut(&Path, Manifest) -> Result<T, CheckpointError>,
) -> Result<Option<T>, CheckpointError> {
    for file in manifests(dir) {
        match read_manifest(&file, spec_hash).and_then(|manifest| load(dir, manifest)) {
            Ok(loaded) => return Ok(Some(loaded)),
            Err(e @ CheckpointError::SpecMismatch { .. }) => return Err(e),
            Err(e) => {
                let moved = set_aside(dir, &file);
                warn(&format!("skipping {e}; {moved}"));
            }
        }
    }
    Ok(None)
}

/// Checks that every file `manifest` names is in `dir` with the SHA-256 it names, reading
/// each as a stream (one block in memory, whatever the checkpoint's size).
pub fn verify_files(dir: &Path, manifest: &Manifest) -> Result<(), CheckpointError> {
    for (name, sha256) in named_files(manifest) {
        let path = dir.join(name);
        let found =
            sha256_file(&path).map_err(|e| CheckpointError::Io(path.clone(), e.to_string()))?;
        if found != sha256 {
            return Err(CheckpointError::Format(
                path,
                format!(
                    "checksum {found} does not match the manifest's {sha256} (truncated or damaged)"
                ),
            ));
        }
    }
    Ok(())
}

/// SHA-256 (hex) of a file, read in blocks.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&block[..n]);
    }
}

/// Manifests in `dir`, newest first.
pub fn manifests(dir: &Path) -> Vec<PathBuf> {
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

/// Removes the checkpoints beyond the newest `keep` and the files no kept manifest names.
pub fn prune(dir: &Path, keep: usize) {
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
/// for a temporary file of [`crate::atomic::write_atomic`].
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

/// Moves a damaged checkpoint (its manifest and, if named, its tensor file) to `damaged/`.
pub fn set_aside(dir: &Path, manifest_file: &Path) -> String {
    let aside = dir.join("damaged");
    let tensors: Vec<PathBuf> = std::fs::read_to_string(manifest_file)
        .ok()
        .and_then(|t| serde_json::from_str::<Manifest>(&t).ok())
        .map(|m| named_files(&m).map(|(file, _)| dir.join(file)).collect())
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
            loss_trigger: None,
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
            std::fs::write(manifest_file(d, iteration), json).unwrap();
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
