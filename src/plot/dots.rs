//! Per-branch summaries drawn as dots with 95% CI whiskers: final validation loss,
//! volatility, and loss per window index. Seeds are shown as small hollow dots so a
//! reader sees n and the spread, not only the interval.

use super::style::{self, color, frame_of, range_of, Chart, Entry, Plot, Px, Swatch, XAxis, FONT, INK};
use super::summary::{self, branch_stats, Branch};
use super::PlotOptions;
use crate::stats::{self, VolatilityOpts};
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};

/// One branch in a dot panel: its seeds' values, and the interval drawn (mean ± 95% CI of
/// the seeds unless `interval` gives another `(centre, lo, hi)`, e.g. a std and its CI).
struct Row {
    label: String,
    color: RGBColor,
    seeds: Vec<f64>,
    interval: Option<(f64, f64, f64)>,
}

impl Row {
    fn new(label: String, color: RGBColor, seeds: Vec<f64>) -> Self {
        Self { label, color, seeds, interval: None }
    }

    /// (centre, lo, hi); lo/hi NaN where there is no interval.
    fn interval(&self) -> (f64, f64, f64) {
        self.interval.unwrap_or_else(|| {
            let (m, h) = stats::mean_ci95(&self.seeds);
            (m, m - h, m + h)
        })
    }
}

/// One horizontal dot plot: rows top to bottom, x = the measured value.
struct Panel {
    x_desc: String,
    rows: Vec<Row>,
}

impl Panel {
    /// x range: seeds and means always visible; whiskers shown up to one data span beyond
    /// them (a 2-seed CI can be 10× the spread) and marked with arrow-heads when cut.
    fn x_range(&self) -> (f64, f64) {
        let ci: Vec<(f64, f64, f64)> = self.rows.iter().map(Row::interval).collect();
        let core = range_of(self.rows.iter().flat_map(|r| r.seeds.iter().copied().chain([r.interval().0])), 0.0);
        let span = (core.1 - core.0).max(1e-9);
        let ends = ci.iter().filter(|c| c.1.is_finite()).flat_map(|c| [c.1, c.2]);
        let full = range_of(ends.chain([core.0, core.1]), 0.0);
        let (lo, hi) = (full.0.max(core.0 - span), full.1.min(core.1 + span));
        range_of([lo, hi], 0.06)
    }
}

struct DotChart {
    title: String,
    caption: Vec<String>,
    legend: Vec<Entry>,
    notes: Vec<String>,
    panels: Vec<Panel>,
}

impl Chart for DotChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let area = frame_of!(self).draw(root)?;
        let font = TextStyle::from((FONT, 16).into_font());
        let label_w = self.panels[0].rows.iter().map(|r| root.estimate_text_size(&r.label, &font).map_or(200, |d| d.0)).max().unwrap_or(0) + 24;
        let (w, _) = area.dim_in_pixel();
        let mut rest = area.clone();
        for (i, panel) in self.panels.iter().enumerate() {
            let lw = if i == 0 { label_w } else { 14 };
            let left = self.panels.len() - i;
            let pw = if left == 1 { rest.dim_in_pixel().0 } else { lw + (w - label_w - 14 * (self.panels.len() as u32 - 1)) / self.panels.len() as u32 };
            let (this, next) = rest.split_horizontally(pw);
            draw_panel(&this, panel, lw, i == 0)?;
            rest = next;
        }
        Ok(())
    }
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel, lw: u32, labels: bool) -> Result<()> {
    let n = panel.rows.len();
    let mut p = Plot::new(area, panel.x_range(), (-0.6, n as f64 - 0.4), &panel.x_desc, None, lw, XAxis::Num)?;
    let label = TextStyle::from((FONT, 16).into_font()).color(&INK).pos(Pos::new(HPos::Right, VPos::Center));
    for (i, r) in panel.rows.iter().enumerate() {
        let y = (n - 1 - i) as f64;
        p.line(&[(p.xr.0, y), (p.xr.1, y)], BLACK.mix(0.08).stroke_width(1))?;
        let (m, lo, hi) = r.interval();
        if lo.is_finite() && hi.is_finite() {
            p.whisker((lo, y), (hi, y), r.color)?;
        }
        for &s in &r.seeds {
            p.dot((s, y + 0.18), 4, r.color.mix(0.9).stroke_width(2))?;
        }
        p.dot((m, y), 7, r.color.filled())?;
        if labels {
            let el = EmptyElement::at((p.xr.0, y)) + Text::new(r.label.clone(), (-12, 0), label.clone());
            p.ctx.draw_series(std::iter::once(el)).px()?;
        }
    }
    Ok(())
}

fn ci_text(xs: &[f64], digits: usize) -> String {
    let (m, h) = stats::mean_ci95(xs);
    if h.is_finite() {
        format!("{m:.digits$} ± {h:.digits$}")
    } else {
        format!("{m:.digits$} (n=1)")
    }
}

const WHISKER_NOTE: &str = "big dot: mean over seeds; bar: 95% CI (Student t); small hollow dots: individual seeds";

/// Final loss per branch (test where every seed has it, else validation), best at the top.
pub fn val_final(branches: &[Branch], out: &Path, o: &PlotOptions) -> Result<Vec<PathBuf>> {
    let vo = VolatilityOpts::default();
    let mut rows: Vec<(f64, Row, Entry)> = vec![];
    let (mut missing, mut splits) = (vec![], std::collections::BTreeSet::new());
    for b in branches {
        let s = branch_stats(b, &vo);
        let (split, finals) = s.final_loss();
        if finals.is_empty() {
            missing.push(b.name.clone());
            continue;
        }
        splits.insert(split);
        let label = format!("{}  {}", b.name, ci_text(finals, 3));
        rows.push((stats::mean(finals), Row::new(label, color(b.color), finals.to_vec()), Entry::new(b.label(), color(b.color), Swatch::Dot)));
    }
    if rows.is_empty() {
        return Ok(vec![]);
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut notes = vec![WHISKER_NOTE.to_string()];
    if !missing.is_empty() {
        notes.push(format!("no val rows: {}", missing.join(", ")));
    }
    let what = match (splits.contains("test"), splits.contains("val")) {
        (true, false) => "test",
        (false, _) => "validation",
        (true, true) => "test (validation where a run has no test row)",
    };
    let chart = DotChart {
        title: format!("{}: final {} loss", o.title, what.split(' ').next().unwrap_or(what)),
        caption: vec![format!("Final {what} loss of each seed; branches sorted best (top) to worst. Labels: mean ± 95% CI half-width.")],
        legend: rows.iter().map(|r| r.2.clone()).collect(),
        notes,
        panels: vec![Panel { x_desc: format!("final {} loss (nats/token)", what.split(' ').next().unwrap_or(what)), rows: rows.into_iter().map(|r| r.1).collect() }],
    };
    style::save(out, "val_final", &chart)
}

/// Volatility per branch: paired noise against the baseline, seed spread of the final loss,
/// and raw roughness for context; same row order in every panel.
pub fn volatility(branches: &[Branch], out: &Path, o: &PlotOptions) -> Result<Vec<PathBuf>> {
    let vo = VolatilityOpts::default();
    let stats: Vec<_> = branches.iter().map(|b| branch_stats(b, &vo)).collect();
    let cmp = summary::compare(branches, &vo);
    let base = summary::baseline(branches).map(|b| b.name.clone()).unwrap_or_default();
    let noise = |b: &Branch| cmp.iter().find(|c| c.branch == b.name).map(|c| c.noise()).unwrap_or_default();
    let row = |b: &Branch, seeds: Vec<f64>| Row::new(b.name.clone(), color(b.color), seeds);
    let spread_row = |b: &Branch, s: &summary::BranchStats| {
        let (_, finals) = s.final_loss();
        let (sd, lo, hi) = stats::std_ci95(finals);
        let m = stats::mean(finals);
        Row { interval: Some((sd, lo, hi)), ..row(b, finals.iter().map(|v| (v - m).abs()).collect()) }
    };
    let tail = vo.tail_frac * 100.0;
    let chart = DotChart {
        title: format!("{}: volatility", o.title),
        caption: vec![
            format!("Left: paired noise = std of the detrended per-step difference of raw training losses against {base} on the same batches (last {tail:.0}% of steps), per seed."),
            "Middle: seed spread = std of the final loss across seeds (big dot), 95% χ² CI; small dots: each seed's distance from the mean.".into(),
            "Right, context only: roughness = std of step-to-step differences of the raw loss; mostly batch-to-batch difficulty, shared by all branches.".into(),
        ],
        legend: branches.iter().map(|b| Entry::new(b.label(), color(b.color), Swatch::Dot)).collect(),
        notes: vec![WHISKER_NOTE.to_string()],
        panels: vec![
            Panel { x_desc: "paired noise (nats/token)".into(), rows: branches.iter().map(|b| row(b, noise(b))).collect() },
            Panel { x_desc: "seed spread (nats/token)".into(), rows: branches.iter().zip(&stats).map(|(b, s)| spread_row(b, s)).collect() },
            Panel { x_desc: "roughness (nats/token/step)".into(), rows: branches.iter().zip(&stats).map(|(b, s)| row(b, s.roughness.clone())).collect() },
        ],
    };
    style::save(out, "volatility", &chart)
}

/// (x + dodge, mean loss, 95% CI half-width).
pub(super) type WindowPoint = (f64, f64, f64);

/// Per-branch points with whiskers joined by lines: loss per window index, or per evaluation
/// length.
pub(super) struct WindowChart {
    pub x_desc: String,
    pub y_desc: String,
    pub x_axis: XAxis,
    pub title: String,
    pub caption: Vec<String>,
    pub legend: Vec<Entry>,
    pub notes: Vec<String>,
    /// Per branch: colour and (x, mean, CI half-width) per point.
    pub series: Vec<(RGBColor, Vec<WindowPoint>)>,
    pub xr: (f64, f64),
    pub yr: (f64, f64),
}

impl WindowChart {
    /// An empty chart; the caller fills caption, legend, notes, series and ranges.
    pub fn new(title: String, x_desc: &str, y_desc: &str, x_axis: XAxis) -> Self {
        Self { x_desc: x_desc.into(), y_desc: y_desc.into(), x_axis, title, caption: vec![], legend: vec![], notes: vec![], series: vec![], xr: (0.0, 0.0), yr: (0.0, 0.0) }
    }
}

impl Chart for WindowChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let area = frame_of!(self).draw(root)?;
        let mut p = Plot::new(&area, self.xr, self.yr, &self.x_desc, Some(&self.y_desc), 78, self.x_axis)?;
        for (c, pts) in &self.series {
            let line: Vec<(f64, f64)> = pts.iter().map(|q| (q.0, q.1)).collect();
            p.line(&line, c.stroke_width(3))?;
            for &(x, m, h) in pts {
                if h.is_finite() {
                    p.whisker((x, m - h), (x, m + h), *c)?;
                }
                p.dot((x, m), 5, c.filled())?;
            }
        }
        Ok(())
    }
}

/// Validation loss per window index: do later windows (more context/memory) get better?
pub fn loss_per_window(branches: &[Branch], out: &Path, o: &PlotOptions) -> Result<Vec<PathBuf>> {
    let mut c = WindowChart::new(format!("{}: validation loss per window", o.title), "window index in the sample (0 = first window)", "validation loss (nats/token)", XAxis::Int);
    let (mut nwin, mut ys, mut missing) = (0usize, vec![], vec![]);
    let dodge = 0.12 / branches.len().max(1) as f64;
    for (bi, b) in branches.iter().enumerate() {
        let per_run: Vec<Vec<f64>> = b.runs.iter().filter_map(|r| summary::last_window_losses(r)).collect();
        let w = per_run.iter().map(Vec::len).max().unwrap_or(0);
        if w == 0 {
            missing.push(b.name.clone());
            continue;
        }
        nwin = nwin.max(w);
        let off = (bi as f64 - (branches.len() as f64 - 1.0) / 2.0) * dodge;
        let pts: Vec<(f64, f64, f64)> = (0..w)
            .map(|k| {
                let vals: Vec<f64> = per_run.iter().filter_map(|v| v.get(k).copied()).collect();
                let (m, h) = stats::mean_ci95(&vals);
                ys.extend([m]);
                if h.is_finite() {
                    ys.extend([m - h.min(0.05), m + h.min(0.05)]);
                }
                (k as f64 + off, m, h)
            })
            .collect();
        c.series.push((color(b.color), pts));
        c.legend.push(Entry::new(b.label(), color(b.color), Swatch::Line));
    }
    if c.series.is_empty() {
        return Ok(vec![]);
    }
    c.xr = (-0.4, nwin as f64 - 0.6);
    c.yr = range_of(ys, 0.08);
    c.caption = vec![
        "Validation loss of each window index at each run's last eval step; mean over seeds, bars: 95% CI.".into(),
        "Falling to the right = later windows profit from earlier context (what memory should do).".into(),
    ];
    c.notes.push("points of different branches are shifted slightly sideways so bars do not overlap".into());
    if !missing.is_empty() {
        c.notes.push(format!("no eval.csv windows: {}", missing.join(", ")));
    }
    style::save(out, "loss_per_window", &c)
}
