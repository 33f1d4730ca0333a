//! Handing the training commands (`run`, `verify`) from `gncctl` to `gnc-run`, the binary
//! that links libtorch: same arguments, same process (exec), so exit codes, signals and the
//! terminal behave as if `gncctl` trained itself.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::Context;

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

/// Replaces this process with `gnc-run` and this process's arguments; returns only on error.
pub fn exec() -> anyhow::Result<()> {
    let path = locate()?;
    let error = std::process::Command::new(&path)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(error).with_context(|| {
        format!(
            "cannot start {} for this training command (install it next to gncctl, or set {ENV})",
            path.display()
        )
    })
}
