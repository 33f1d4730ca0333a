//! A job's model file (`[model] kind = "onnx"`): its SHA-256 is pinned into the spec when the
//! spec is loaded, and every later validation — a worker's, gncd's when a queued job starts,
//! `gncctl verify`'s — checks that the file still has it, so a job never trains a model file
//! other than the one it was given, and its spec hash is that of the file's content.

use std::path::Path;

use crate::{JobSpec, ModelSpec, SpecError};

/// Fills in the SHA-256 of the spec's model file where it has none.
pub(crate) fn pin(spec: &mut JobSpec) -> Result<(), SpecError> {
    if let ModelSpec::Onnx { path, sha256, .. } = &mut spec.model
        && sha256.is_none()
    {
        *sha256 = Some(file_sha256(path)?);
    }
    Ok(())
}

/// Refuses a model file that is missing, or whose content is not the one pinned.
pub(crate) fn check(model: &ModelSpec) -> Result<(), SpecError> {
    let ModelSpec::Onnx { path, sha256, .. } = model else {
        return Ok(());
    };
    let now = file_sha256(path)?;
    match sha256 {
        Some(pinned) if *pinned != now => Err(SpecError::Invalid {
            key: "model.path".into(),
            message: format!(
                "{} changed since the job was given it: sha256 {pinned} then, {now} now (a \
                 job trains the model file it was submitted with; submit the new one as a new \
                 job)",
                path.display()
            ),
        }),
        _ => Ok(()),
    }
}

fn file_sha256(path: &Path) -> Result<String, SpecError> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|e| SpecError::Invalid {
        key: "model.path".into(),
        message: format!("cannot read the model file {}: {e}", path.display()),
    })?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}
