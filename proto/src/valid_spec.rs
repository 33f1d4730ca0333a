//! [`ValidSpec`]: a job spec that passed every check, and the only kind that trains, plans or
//! runs. A spec is validated where it enters a process — a TOML file, a socket message, a
//! run's recorded `spec.json` — and the code it then reaches takes a `&ValidSpec`, so nothing
//! checks it again and nothing can skip the check.

use std::ops::Deref;
use std::path::Path;

use serde::Serialize;

use crate::{JobSpec, SpecError};

/// A [`JobSpec`] that passed [`JobSpec::validated`]. Reads as a `JobSpec` (`Deref`); changing
/// it goes through [`ValidSpec::edit`], which checks again. It serialises as the spec itself;
/// it deliberately does not deserialise, so a spec read from anywhere is validated by name.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ValidSpec(JobSpec);

impl JobSpec {
    /// Checks every rule (each error names its key) and returns the spec as valid.
    pub fn validated(self) -> Result<ValidSpec, SpecError> {
        crate::validate::validate(&self)?;
        Ok(ValidSpec(self))
    }

    /// Reads, parses and validates a spec file (TOML), pinning its model file's SHA-256.
    pub fn load(path: &Path) -> Result<ValidSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut spec = JobSpec::from_toml(&text, &path.display().to_string())?;
        spec.pin_model_file()?;
        spec.validated()
    }

    /// Reads a spec as a launcher records it for its workers (`spec.json`, JSON, its model file
    /// already pinned) or, for any other extension, as [`JobSpec::load`] does; validated
    /// either way. The one way every worker process reads its spec.
    pub fn load_for_worker(path: &Path) -> Result<ValidSpec, SpecError> {
        if path.extension().is_none_or(|e| e != "json") {
            return JobSpec::load(path);
        }
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let spec: JobSpec = serde_json::from_str(&text).map_err(|e| SpecError::Parse {
            origin: path.display().to_string(),
            message: e.to_string(),
        })?;
        spec.validated()
    }

    /// Fills in the SHA-256 of the model file (`kind = "onnx"`) where the spec has none, so
    /// that every later validation refuses a file that changed (`crate::model_file`). Done
    /// where a spec enters from a user: [`JobSpec::load`], gncd's submit.
    pub fn pin_model_file(&mut self) -> Result<(), SpecError> {
        crate::model_file::pin(self)
    }
}

impl ValidSpec {
    /// Applies `change` and validates the result.
    pub fn edit(self, change: impl FnOnce(&mut JobSpec)) -> Result<ValidSpec, SpecError> {
        let mut spec = self.0;
        change(&mut spec);
        spec.validated()
    }

    pub fn into_inner(self) -> JobSpec {
        self.0
    }
}

impl Deref for ValidSpec {
    type Target = JobSpec;

    fn deref(&self) -> &JobSpec {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use crate::JobSpec;
    use crate::spec::TINY_SPEC;

    #[test]
    fn an_edit_is_checked_again() {
        let spec = JobSpec::from_toml(TINY_SPEC, "t")
            .unwrap()
            .validated()
            .unwrap();
        let e = spec
            .edit(|s| s.parallel.workers = 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("parallel.workers"), "{e}");
    }
}
