//! Handing the training commands (`run`, `verify`, `doctor`) from `gncctl` to `gnc-run`, the
//! binary that links libtorch: same arguments, same process (exec), so exit codes, signals and
//! the terminal behave as if `gncctl` trained itself. `gncctl` is `gnc-run`'s launcher: it
//! starts it with the reproducibility level's environment, which `gnc-run` checks.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use gnc_proto::JobSpec;
use gnc_proto::repro::Level;

/// Overrides where `gnc-run` is (else next to the running `gncctl`).
pub const ENV: &str = "GNC_RUN_BIN";
pub const NAME: &str = "gnc-run";

fn locate() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(ENV) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    Ok(exe.with_file_name(NAME))
}

/// The level of the spec at `path`; `None` if it does not load (`gnc-run` then reports why).
pub fn spec_level(path: &Path) -> Option<Level> {
    let text = std::fs::read_to_string(path).ok()?;
    let spec = JobSpec::from_toml(&text, &path.display().to_string()).ok()?;
    Some(spec.reproducibility)
}

/// The level a run directory's `spec.json` recorded; `None` if it is unreadable.
pub fn recorded_level(run_dir: &Path) -> Option<Level> {
    let text = std::fs::read_to_string(run_dir.join("spec.json")).ok()?;
    let spec: JobSpec = serde_json::from_str(&text).ok()?;
    Some(spec.reproducibility)
}

/// Replaces this process with `gnc-run` and this process's arguments, in `level`'s
/// environment (the default level's where none is known: `gnc-run` then fails on the input
/// before it computes); returns only on error.
pub fn exec(level: Option<Level>) -> anyhow::Result<()> {
    let path = locate()?;
    let mut command = std::process::Command::new(&path);
    level.unwrap_or_default().apply(&mut command);
    let error = command.args(std::env::args_os().skip(1)).exec();
    Err(error).with_context(|| {
        format!(
            "cannot start {} for this training command (install it next to gncctl, or set {ENV})",
            path.display()
        )
    })
}
