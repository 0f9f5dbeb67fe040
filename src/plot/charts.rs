//! Curve charts (x = tokens or steps): training loss, validation loss, NoPE−RoPE gap and
//! the step-range zoom. Each function only prepares layers; [`Layers`] draws them all.

use super::geom;
use super::style::{self, color, frame_of, range_of, Chart, Entry, Plot, Swatch, XAxis, INK, MUTED};
use super::summary::{self, across_seeds, BandKind, Branch, MeanCurve};
use super::PlotOptions;
use crate::stats::{self, VolatilityOpts};
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

type Pts = Vec<(f64, f64)>;

/// Everything a curve chart shows, back to front: bands, faint lines, reference lines,
/// bold lines (optionally with markers).
#[derive(Default)]
struct Layers {
    title: String,
    caption: Vec<String>,
    legend: Vec<Entry>,
    notes: Vec<String>,
    x_desc: String,
    y_desc: String,
    xr: (f64, f64),
    yr: (f64, f64),
    bands: Vec<(RGBColor, MeanCurve)>,
    faint: Vec<(RGBColor, Pts, f64)>,
    hlines: Vec<f64>,
    bold: Vec<(RGBColor, Pts, bool)>,
}

impl Chart for Layers {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let area = frame_of!(self).draw(root)?;
        let mut p = Plot::new(&area, self.xr, self.yr, &self.x_desc, Some(&self.y_desc), 78, XAxis::Num)?;
        for (c, m) in &self.bands {
            p.band(&m.x, &m.lo, &m.hi, *c, 0.22)?;
        }
        for (c, pts, alpha) in &self.faint {
            p.line(pts, c.mix(*alpha).stroke_width(1))?;
        }
        for &y in &self.hlines {
            p.line(&[(self.xr.0, y), (self.xr.1, y)], INK.stroke_width(1))?;
        }
        for (c, pts, markers) in &self.bold {
            p.line(pts, c.stroke_width(3))?;
            if *markers {
                for &q in pts {
                    p.dot(q, 4, c.filled())?;
                }
            }
        }
        Ok(())
    }
}

fn mtok(t: f64) -> f64 {
    t / 1e6
}

fn has_band(m: &MeanCurve) -> bool {
    m.n.iter().any(|&n| n > 1)
}

/// Training loss vs tokens: raw faint per seed, seed-mean EMA bold, min–max band.
pub fn loss_vs_tokens(branches: &[Branch], out: &Path, o: &PlotOptions) -> Result<Vec<PathBuf>> {
    let mut l = Layers { title: format!("{}: training loss", o.title), x_desc: "training tokens (M)".into(), y_desc: "training loss (nats/token)".into(), ..Default::default() };
    let (mut top, mut lows, mut xmax, mut first) = (f64::NEG_INFINITY, vec![], 0.0f64, f64::NEG_INFINITY);
    for b in branches {
        let c = color(b.color);
        let max_step = b.runs.iter().filter_map(|r| r.train.last()).map(|t| t.step).max().unwrap_or(0);
        for r in &b.runs {
            let raw: Pts = r.train.iter().map(|t| (mtok(t.tokens as f64), t.loss)).collect();
            let mut late: Vec<f64> = r.train.iter().filter(|t| t.step * 10 >= max_step).map(|t| t.loss).filter(|v| v.is_finite()).collect();
            late.sort_by(f64::total_cmp);
            if !late.is_empty() {
                lows.push(late[late.len() / 50]);
            }
            first = first.max(r.train.iter().map(|t| t.loss).find(|v| v.is_finite()).unwrap_or(f64::NAN));
            l.faint.push((c, geom::decimate(&raw, 2400), 0.10));
        }
        let trends: Vec<_> = b.runs.iter().map(|r| summary::train_trend(r)).collect();
        let mut m = across_seeds(&trends, BandKind::MinMax);
        m.x.iter_mut().for_each(|x| *x = mtok(*x));
        for (s, v) in m.step.iter().zip(&m.mean) {
            if s * 10 >= max_step {
                top = top.max(*v);
                break;
            }
        }
        xmax = xmax.max(m.x.last().copied().unwrap_or(0.0));
        lows.push(m.mean.iter().copied().fold(f64::INFINITY, f64::min));
        let pts: Pts = m.x.iter().copied().zip(m.mean.iter().copied()).collect();
        l.bold.push((c, geom::thin(&pts, 500), false));
        if has_band(&m) {
            l.bands.push((c, m));
        }
        l.legend.push(Entry::new(b.label(), c, Swatch::Line));
    }
    let lo = lows.iter().copied().filter(|v| v.is_finite()).fold(f64::INFINITY, f64::min);
    l.yr = range_of([lo, top], 0.05);
    l.xr = (0.0, xmax.max(1e-6));
    l.caption = vec![
        format!(
            "Bold: trend of the training loss (local-linear fit over {:.0}% of the steps), mean over seeds; band: min–max of the seeds' trends; faint: raw per-step loss.",
            stats::TREND_FRAC * 100.0
        ),
        format!("y-axis fitted to the curves after the first 10% of steps; the initial descent (from {first:.1}) runs off the top."),
    ];
    l.legend.push(Entry::new("raw loss, each seed", MUTED, Swatch::Faint));
    l.legend.push(Entry::new("min–max over seeds", MUTED, Swatch::Band));
    style::save(out, "loss_vs_tokens", &l)
}

/// Validation loss vs tokens: seed mean with markers and a 95% CI band.
pub fn val_loss(branches: &[Branch], out: &Path, o: &PlotOptions) -> Result<Vec<PathBuf>> {
    let mut l = Layers { title: format!("{}: validation loss", o.title), x_desc: "training tokens (M)".into(), y_desc: "validation loss (nats/token)".into(), ..Default::default() };
    let (mut ys, mut xmax, mut clipped, mut missing) = (vec![], 0.0f64, false, vec![]);
    for b in branches {
        let c = color(b.color);
        let curves: Vec<Vec<_>> = b.runs.iter().map(|r| r.val.iter().map(|v| (v.step, mtok(v.tokens as f64), v.loss)).collect()).collect();
        let m = across_seeds(&curves, BandKind::Ci95);
        if m.step.is_empty() {
            missing.push(b.name.clone());
            continue;
        }
        let max_step = *m.step.last().unwrap();
        let late: Vec<f64> = m.step.iter().zip(&m.mean).filter(|(s, _)| **s * 10 >= max_step && **s > 0).map(|(_, v)| *v).collect();
        clipped |= late.len() < m.mean.len();
        ys.extend(if late.is_empty() { m.mean.clone() } else { late });
        xmax = xmax.max(*m.x.last().unwrap());
        l.bold.push((c, m.x.iter().copied().zip(m.mean.iter().copied()).collect(), true));
        if has_band(&m) {
            l.bands.push((c, m));
        }
        l.legend.push(Entry::new(b.label(), c, Swatch::Line));
    }
    if l.bold.is_empty() {
        return Ok(vec![]);
    }
    l.yr = range_of(ys, 0.08);
    l.xr = (0.0, xmax.max(1e-6));
    l.caption = vec!["Mean over seeds at each eval step; band: 95% CI over seeds (Student t; none where n = 1).".into()];
    l.legend.push(Entry::new("95% CI over seeds", MUTED, Swatch::Band));
    if clipped {
        l.caption.push("y-axis fitted to evals after the first 10% of training; earlier (higher) evals run off the top.".into());
    }
    if !missing.is_empty() {
        l.notes.push(format!("no val rows: {}", missing.join(", ")));
    }
    style::save(out, "val_loss", &l)
}

/// NoPE − RoPE on the same batches, per seed: the raw per-step difference (faint) and its trend
/// (bold). The chart for the blog's question.
pub fn nope_vs_rope(branches: &[Branch], out: &Path, o: &PlotOptions) -> Result<Vec<PathBuf>> {
    let vo = VolatilityOpts::default();
    let cmp = summary::compare(branches, &vo);
    let Some(nr) = summary::nope_rope(branches, &cmp) else {
        return Ok(vec![]);
    };
    let c = color(nr.color);
    let mut l = Layers {
        title: format!("{}: {} − {} (training loss, same batch)", o.title, nr.branch, nr.baseline),
        x_desc: "training step".into(),
        y_desc: "loss difference (nats/token)".into(),
        hlines: vec![0.0],
        ..Default::default()
    };
    let shades = [1.0, 0.75, 0.55, 0.4, 0.3];
    let (mut raw_all, mut trend_all, mut xs) = (vec![], vec![], vec![]);
    for (i, (_, d)) in nr.steps.iter().enumerate() {
        let x: Vec<f64> = d.steps.iter().map(|&s| s as f64).collect();
        let shade = shades[i % shades.len()];
        let sc = RGBColor((c.0 as f64 * shade) as u8, (c.1 as f64 * shade) as u8, (c.2 as f64 * shade) as u8);
        l.faint.push((sc, geom::decimate(&x.iter().copied().zip(d.d.iter().copied()).collect::<Vec<_>>(), 2400), 0.18));
        l.bold.push((sc, geom::thin(&x.iter().copied().zip(d.trend.iter().copied()).collect::<Vec<_>>(), 500), false));
        raw_all.extend(d.d.iter().copied().filter(|v| v.is_finite()));
        trend_all.extend(d.trend.iter().copied().filter(|v| v.is_finite()));
        xs.extend(x);
    }
    raw_all.sort_by(f64::total_cmp);
    let q = |f: f64| raw_all.get(((raw_all.len() as f64 - 1.0) * f).round() as usize).copied().unwrap_or(0.0);
    l.yr = range_of(trend_all.iter().copied().chain([0.0, q(0.02), q(0.98)]), 0.06);
    l.xr = range_of(xs, 0.0);
    let gaps: Vec<f64> = nr.steps.iter().map(|(_, d)| d.tail_mean).collect();
    let flips: Vec<String> = nr.steps.iter().map(|(s, d)| format!("s{s}: {}", d.flips)).collect();
    let noise: Vec<f64> = nr.noise();
    let ci = |xs: &[f64], sign: bool| {
        let (m, h) = stats::mean_ci95(xs);
        let m = if sign { format!("{m:+.4}") } else { format!("{m:.4}") };
        if h.is_finite() {
            format!("{m} ± {h:.4}")
        } else {
            format!("{m} (n=1)")
        }
    };
    l.caption = vec![
        format!(
            "d = loss({}) − loss({}) at each step on the same batch (same seed); faint: raw d, bold: its trend (local-linear over {:.0}% of the steps), one shade per seed.",
            nr.branch,
            nr.baseline,
            stats::TREND_FRAC * 100.0
        ),
        format!(
            "late gap (mean d over the last {:.0}%): {} nats · paired noise: {} · sign changes of the trend after the first {:.0}%: {}",
            vo.tail_frac * 100.0,
            ci(&gaps, true),
            ci(&noise, false),
            vo.pair_skip_frac * 100.0,
            flips.join(", ")
        ),
    ];
    l.legend =
        vec![Entry::new(format!("raw d, each seed (n={})", nr.steps.len()), c, Swatch::Faint), Entry::new("trend of d, each seed", c, Swatch::Line), Entry::new("0: equal loss", INK, Swatch::Faint)];
    l.notes = vec![format!("above 0: {} worse", nr.branch), format!("below 0: {} better", nr.branch)];
    if l.yr.0 > q(0.0) || l.yr.1 < q(1.0) {
        l.notes.push("y-axis fitted to 96% of the raw differences".into());
    }
    style::save(out, "nope_vs_rope", &l)
}

/// Training loss vs step inside `a..=b`, y fitted to that window (the "zoom at 8.5K" view).
pub fn zoom(branches: &[Branch], (a, b): (u64, u64), out: &Path, o: &PlotOptions) -> Result<Vec<PathBuf>> {
    let mut l = Layers {
        title: format!("{}: training loss, steps {a}–{b}", o.title),
        x_desc: "training step".into(),
        y_desc: "training loss (nats/token)".into(),
        xr: (a as f64, b as f64),
        ..Default::default()
    };
    let inside = |s: u64| s >= a && s <= b;
    let mut raw_all = vec![];
    let mut ema_all = vec![];
    for br in branches {
        let c = color(br.color);
        for r in &br.runs {
            let raw: Pts = r.train.iter().filter(|t| inside(t.step)).map(|t| (t.step as f64, t.loss)).collect();
            raw_all.extend(raw.iter().map(|p| p.1).filter(|v| v.is_finite()));
            l.faint.push((c, geom::decimate(&raw, 2400), 0.22));
        }
        let trends: Vec<_> = br.runs.iter().map(|r| summary::train_trend(r)).collect();
        let m = across_seeds(&trends, BandKind::MinMax);
        let pts: Pts = m.step.iter().zip(&m.mean).filter(|(s, _)| inside(**s)).map(|(s, v)| (*s as f64, *v)).collect();
        ema_all.extend(pts.iter().map(|p| p.1));
        if !pts.is_empty() {
            l.legend.push(Entry::new(br.label(), c, Swatch::Line));
        }
        l.bold.push((c, geom::thin(&pts, 500), false));
    }
    let seen: Vec<u64> = branches.iter().flat_map(|br| &br.runs).flat_map(|r| r.train.iter().map(|t| t.step)).filter(|s| inside(*s)).collect();
    if let (Some(lo), Some(hi)) = (seen.iter().min(), seen.iter().max()) {
        l.xr = (*lo as f64, (*hi as f64).max(*lo as f64 + 1.0)); // no empty margin where no run reached
    }
    raw_all.sort_by(f64::total_cmp);
    let q = |f: f64| raw_all.get(((raw_all.len() as f64 - 1.0) * f).round() as usize).copied().unwrap_or(f64::NAN);
    l.yr = range_of(ema_all.iter().copied().chain([q(0.005), q(0.995)]), 0.04);
    l.caption = vec![if raw_all.is_empty() {
        format!("No training rows between steps {a} and {b}.")
    } else {
        let last = seen.iter().max().copied().unwrap_or(b);
        let end = if last < b { format!(" Runs end at step {last}.") } else { String::new() };
        format!(
            "Faint: raw per-step loss of each seed; bold: its trend (local-linear fit over {:.0}% of the whole run) averaged over seeds; y-axis fitted to this range.{end}",
            stats::TREND_FRAC * 100.0
        )
    }];
    l.legend.push(Entry::new("raw loss, each seed", MUTED, Swatch::Faint));
    style::save(out, &format!("zoom_{a}_{b}"), &l)
}
