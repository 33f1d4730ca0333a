//! The TrueType font plotters lays text out with (both formats measure text with it, and the
//! PNG renders it): `--font`, else the first of the usual system locations that exists.

use std::path::{Path, PathBuf};

use plotters::style::FontStyle;

/// Where Debian/Ubuntu, Fedora, Arch and macOS keep a sans-serif TrueType font.
pub const CANDIDATES: [&str; 7] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// The font family name the charts ask for.
pub const FAMILY: &str = "sans-serif";

/// Loads the font and registers it with plotters as [`FAMILY`].
pub fn register(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no TrueType font found for the chart's text; tried {} \
                     (install fonts-dejavu-core, or pass --font FILE.ttf)",
                    CANDIDATES.join(", ")
                )
            })?,
    };
    let bytes = std::fs::read(&path)
        .map_err(|e| anyhow::anyhow!("cannot read font {}: {e}", path.display()))?;
    // plotters keeps registered fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).map_err(|_| {
        anyhow::anyhow!(
            "{} is not a TrueType font plotters can read",
            path.display()
        )
    })?;
    Ok(path)
}
