//! The progress bar and evaluation lines shared by `run`, `verify` (in gnc-run) and `watch`.

use std::time::Duration;

use gnc_proto::EvalRecord;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar on stderr, updated a few times a second; hidden when `visible` is false
/// (under --json). Shared by the in-process and the supervised run.
pub fn progress_bar(visible: bool) -> ProgressBar {
    let target = if visible {
        ProgressDrawTarget::stderr_with_hz(4)
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(None, target);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} it ({per_sec}, eta {eta}) {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// One evaluation as a line of progress output (shared with `gncctl watch`).
pub fn eval_line(e: &EvalRecord) -> String {
    format!(
        "epoch {:>6.2}  train loss {:.4} acc {:.2}%  test loss {:.4} acc {:.2}%",
        e.epoch,
        e.train_loss,
        100.0 * e.train_accuracy,
        e.test_loss,
        100.0 * e.test_accuracy
    )
}
