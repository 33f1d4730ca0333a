//! Which files a job may read: its `data.root` and its model file (`model.path`) must resolve
//! (symlinks and `..` included) to paths under one of the daemon's allowed roots, since the
//! workers read them with the daemon's rights rather than the submitter's.

use std::path::{Path, PathBuf};

/// Checks `root`, the spec's value of `key`, against `allowed` (canonical directories).
pub fn check(key: &str, root: &Path, allowed: &[PathBuf]) -> Result<(), String> {
    if !root.is_absolute() {
        return Err(format!(
            "{key} {} must be an absolute path (gncctl resolves it against its working directory)",
            root.display()
        ));
    }
    let canonical = root
        .canonicalize()
        .map_err(|e| format!("{key} {} cannot be resolved: {e}", root.display()))?;
    if allowed.iter().any(|a| canonical.starts_with(a)) {
        return Ok(());
    }
    let list: Vec<String> = allowed.iter().map(|a| a.display().to_string()).collect();
    Err(format!(
        "{key} {} (resolved to {}) is not under an allowed data root of this daemon ({})",
        root.display(),
        canonical.display(),
        if list.is_empty() {
            "none configured".to_string()
        } else {
            list.join(", ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_and_symlinks_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("data");
        let inside = allowed.join("mnist");
        let outside = dir.path().join("secret");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, allowed.join("link")).unwrap();
        let roots = vec![allowed.canonicalize().unwrap()];
        assert!(check("data.root", &inside, &roots).is_ok());
        assert!(check("data.root", &allowed.join("mnist/../mnist"), &roots).is_ok());
        for escape in [allowed.join("../secret"), allowed.join("link"), outside] {
            let e = check("data.root", &escape, &roots).unwrap_err();
            assert!(e.contains("not under an allowed data root"), "{e}");
        }
        assert!(
            check("data.root", Path::new("data/mnist"), &roots)
                .unwrap_err()
                .contains("absolute")
        );
        // A sibling whose name starts with the allowed root's is not inside it.
        let sibling = dir.path().join("data2");
        std::fs::create_dir_all(&sibling).unwrap();
        assert!(check("data.root", &sibling, &roots).is_err());
    }
}
