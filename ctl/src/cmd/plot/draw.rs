//! Drawing: one panel per metric, stacked, each with one line per run, axes and a legend.

use std::ops::Range;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::font::FAMILY;
use super::runs::Run;
use super::series::{Metric, XAxis};

/// Width of the figure and height of one panel, in pixels.
pub const WIDTH: u32 = 960;
pub const PANEL_HEIGHT: u32 = 340;

/// Draws every panel on `root` and presents it (writes the file).
pub fn figure<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    runs: &[Run],
    metrics: &[Metric],
    x: XAxis,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let panels = root.split_evenly((metrics.len(), 1));
    for (panel, &metric) in panels.iter().zip(metrics) {
        draw_panel(panel, runs, metric, x)?;
    }
    root.present()?;
    Ok(())
}

/// `lo..hi` widened a little, and to a unit range when all values are equal (or absent).
fn range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = if hi > lo {
        0.05 * (hi - lo)
    } else {
        0.5 * lo.abs().max(1.0)
    };
    (lo - pad)..(hi + pad)
}

fn draw_panel<DB: DrawingBackend>(
    panel: &DrawingArea<DB, Shift>,
    runs: &[Run],
    metric: Metric,
    x: XAxis,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let series: Vec<(&str, Vec<(f64, f64)>)> = runs
        .iter()
        .map(|run| (run.label.as_str(), metric.points(run, x)))
        .collect();
    let all = || series.iter().flat_map(|(_, points)| points.iter());
    let x_range = range(all().map(|p| p.0));
    let y_range = range(all().map(|p| p.1));
    let mut chart = ChartBuilder::on(panel)
        .caption(metric.title(), (FAMILY, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, y_range)?;
    chart
        .configure_mesh()
        .x_desc(metric.x_label(x))
        .y_desc(metric.title())
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 15))
        .draw()?;
    for (i, (label, points)) in series.into_iter().enumerate() {
        if points.is_empty() {
            continue;
        }
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}
