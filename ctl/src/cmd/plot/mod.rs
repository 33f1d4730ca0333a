//! `gncctl plot RUN_DIR... -o out.png|out.svg`: compares runs in one figure, by default three
//! panels (test accuracy, training loss, learning rate) against the epoch.

mod draw;
mod font;
mod runs;
mod series;

use clap::ValueEnum;
use std::path::{Path, PathBuf};

use plotters::prelude::{BitMapBackend, IntoDrawingArea, SVGBackend};

pub use series::{Metric, XAxis};

#[derive(clap::Args)]
pub struct Args {
    /// Run output directories (of `gncctl run`, or a gncd job's output directory).
    #[arg(required = true, value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// The image to write; `.png` or `.svg` chooses the format.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Plot only this metric (one panel); repeat for more panels. Default: test-accuracy,
    /// loss and lr.
    #[arg(long, value_enum)]
    pub metric: Vec<Metric>,
    /// The x axis.
    #[arg(long, value_enum, default_value = "epoch")]
    pub x: XAxis,
    /// A TrueType font for the text (default: DejaVu Sans or Liberation Sans from the usual
    /// system locations).
    #[arg(long, value_name = "FILE.ttf")]
    pub font: Option<PathBuf>,
}

/// The image formats `plot` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Png,
    Svg,
}

fn format_of(path: &Path) -> anyhow::Result<Format> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => Ok(Format::Png),
        Some("svg") => Ok(Format::Svg),
        _ => anyhow::bail!(
            "cannot tell which image format to write to {}: the name must end in .png or .svg",
            path.display()
        ),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let format = format_of(&args.output)?;
    let runs = runs::load(&args.runs)?;
    font::register(args.font.as_deref())?;
    let metrics = if args.metric.is_empty() {
        Metric::DEFAULT.to_vec()
    } else {
        args.metric.clone()
    };
    for metric in &metrics {
        if runs.iter().all(|run| metric.points(run, args.x).is_empty()) {
            anyhow::bail!(
                "no run has a point of {} ({}){}",
                metric.title(),
                metric
                    .to_possible_value()
                    .map_or(String::new(), |v| v.get_name().to_string()),
                metric.source().map_or(String::new(), |s| format!(": {s}"))
            );
        }
    }
    let size = (draw::WIDTH, draw::PANEL_HEIGHT * metrics.len() as u32);
    let drawn = match format {
        Format::Png => draw::figure(
            BitMapBackend::new(&args.output, size).into_drawing_area(),
            &runs,
            &metrics,
            args.x,
        ),
        Format::Svg => draw::figure(
            SVGBackend::new(&args.output, size).into_drawing_area(),
            &runs,
            &metrics,
            args.x,
        ),
    };
    drawn.map_err(|e| anyhow::anyhow!("cannot draw {}: {e:#}", args.output.display()))?;
    eprintln!(
        "wrote {} ({} run(s), {} panel(s))",
        args.output.display(),
        runs.len(),
        metrics.len()
    );
    Ok(())
}
