//! Finding the `gnc-worker` binary: `$GNC_WORKER_BIN` if set, else next to the running
//! executable (cargo and installs put `gncctl`, `gncd` and `gnc-worker` side by side).

use std::path::PathBuf;

pub const ENV: &str = "GNC_WORKER_BIN";
pub const NAME: &str = "gnc-worker";

/// Where the worker binary should be; [`crate::supervisor`] checks that it exists.
pub fn locate() -> Result<PathBuf, String> {
    locate_named(NAME, ENV)
}

/// Binary `name`: `$env` if set, else next to the running executable.
pub fn locate_named(name: &str, env: &str) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(env) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the running executable ({e}); set {env}"))?;
    let dir = exe
        .parent()
        .ok_or_else(|| format!("{} has no directory; set {env}", exe.display()))?;
    Ok(dir.join(name))
}
