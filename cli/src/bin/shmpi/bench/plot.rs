//! Latency against message size, log-log, one line per path, as SVG
//! (plotters without default features: no font files needed).

use plotters::prelude::*;
use shmpi_cli::bench::Report;

/// Axis ticks fall on powers of ten: `1000.0` → `1 kB`.
fn size_label(bytes: f64) -> String {
    match bytes {
        b if b >= 1e6 => format!("{:.0} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.0} kB", b / 1e3),
        b => format!("{b:.0} B"),
    }
}

/// Nanoseconds as ns, µs or ms.
fn time_label(ns: f64) -> String {
    match ns {
        t if t >= 1e6 => format!("{:.0} ms", t / 1e6),
        t if t >= 1e3 => format!("{:.0} µs", t / 1e3),
        t => format!("{t:.0} ns"),
    }
}

/// Writes the plot of every latency path measured at two sizes or more.
pub fn latency(report: &Report, path: &str) -> Result<(), String> {
    let mut paths: Vec<&str> = Vec::new();
    for r in report.records.iter().filter(|r| r.metric == "latency_ns") {
        if !paths.contains(&r.path.as_str()) {
            paths.push(&r.path);
        }
    }
    let series: Vec<(&str, Vec<(f64, f64)>)> = paths
        .into_iter()
        .map(|p| {
            let pts: Vec<(f64, f64)> = report
                .records
                .iter()
                .filter(|r| r.path == p && r.metric == "latency_ns" && r.size > 0 && r.median > 0.0)
                .map(|r| (r.size as f64, r.median))
                .collect();
            (p, pts)
        })
        .filter(|(_, pts)| pts.len() >= 2)
        .collect();
    if series.is_empty() {
        return Err("no latency measured at two sizes: nothing to plot".into());
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, 0f64, f64::MAX, 0f64);
    for (_, pts) in &series {
        for &(x, y) in pts {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
    }
    let e = |e: &dyn std::fmt::Display| format!("plotting {path}: {e}");
    let root = SVGBackend::new(path, (1000, 650)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "shmpi bench: one-way latency by message size",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (x0 / 1.5..x1 * 1.5).log_scale(),
            (y0 / 1.5..y1 * 1.5).log_scale(),
        )
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("message size")
        .y_desc("one-way latency")
        .x_label_formatter(&|x| size_label(*x))
        .y_label_formatter(&|y| time_label(*y))
        .draw()
        .map_err(|x| e(&x))?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
