//! `gncctl plot` on two finished tiny runs: a PNG that decodes to the expected size with both
//! runs' colours in it, and a well-formed SVG with the run names and one line per run and panel.

use std::path::{Path, PathBuf};

use gnc_tests::{METHODS, gncctl_output, run_job, tiny_job, write_spec};

/// Two finished runs (baseline and GNC) in `dir`: their output directories.
fn two_runs(dir: &Path) -> [PathBuf; 2] {
    [("plot-baseline", METHODS[0].1), ("plot-gnc", METHODS[1].1)].map(|(name, method)| {
        let spec = write_spec(dir, name, &tiny_job(name, method));
        let out = dir.join(name);
        run_job(&spec, &out, &[]);
        out
    })
}

fn plot(runs: &[PathBuf], output: &Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<&str> = vec!["plot"];
    args.extend(runs.iter().map(|p| p.to_str().unwrap()));
    args.extend(["-o", output.to_str().unwrap()]);
    args.extend_from_slice(extra);
    gncctl_output(&args)
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The first two colours of plotters' Palette99, which the runs are drawn in.
const RUN_COLOURS: [[u8; 3]; 2] = [[0xE6, 0x19, 0x4B], [0x3C, 0xB4, 0x4B]];

#[test]
fn plots_two_runs_as_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let runs = two_runs(dir.path());

    // PNG: signature, IHDR size (three panels of 340 px), decodes, both runs drawn.
    let png_path = dir.path().join("cmp.png");
    ok(&plot(&runs, &png_path, &[]));
    let bytes = std::fs::read(&png_path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (960, 3 * 340));
    let mut reader = png::Decoder::new(std::fs::File::open(&png_path).unwrap())
        .read_info()
        .expect("the PNG decodes");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).expect("the PNG decodes");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let pixels = &pixels[..info.buffer_size()];
    for colour in RUN_COLOURS {
        let count = pixels.chunks(3).filter(|p| *p == colour).count();
        assert!(
            count > 100,
            "run colour {colour:?} covers only {count} pixels"
        );
    }

    // SVG: well-formed XML, the run names in the legend, one line per run in each panel.
    let svg_path = dir.path().join("cmp.svg");
    ok(&plot(&runs, &svg_path, &[]));
    let text = std::fs::read_to_string(&svg_path).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("the SVG is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    for name in [
        "plot-baseline",
        "plot-gnc",
        "test accuracy",
        "training loss",
        "learning rate",
    ] {
        assert!(
            texts.iter().any(|t| t.trim() == name),
            "no text {name:?} in {texts:?}"
        );
    }
    assert_eq!(
        series_lines(&doc),
        2 * 3,
        "expected 2 runs x 3 panels of lines"
    );

    // One chosen metric against the iteration: one panel.
    let one = dir.path().join("loss.svg");
    ok(&plot(
        &runs,
        &one,
        &["--metric", "loss", "--x", "iteration"],
    ));
    let text = std::fs::read_to_string(&one).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    assert_eq!(doc.root_element().attribute("height"), Some("340"));
    assert_eq!(series_lines(&doc), 2);
    assert!(
        doc.descendants()
            .any(|n| n.text().map(str::trim) == Some("iteration"))
    );
}

/// Polylines drawn 2 px wide through more than two points: the data series (legend samples
/// have two points, axes and ticks are 1 px).
fn series_lines(doc: &roxmltree::Document) -> usize {
    doc.descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke-width") == Some("2"))
        .filter(|n| {
            n.attribute("points")
                .unwrap_or("")
                .split_whitespace()
                .count()
                > 2
        })
        .count()
}

#[test]
fn refuses_other_formats_and_non_run_directories() {
    let dir = tempfile::tempdir().unwrap();
    let o = plot(&[dir.path().to_path_buf()], &dir.path().join("x.jpg"), &[]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("x.jpg") && stderr.contains(".png or .svg"),
        "{stderr}"
    );

    let o = plot(&[dir.path().to_path_buf()], &dir.path().join("x.svg"), &[]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("metrics.jsonl"), "{stderr}");
    assert!(!dir.path().join("x.svg").exists());
}
