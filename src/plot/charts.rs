//! Curve charts (x = tokens or steps): training loss, validation loss, NoPE−RoPE gap and
//! the step-range zoom. Each function only prepares layers; [`Layers`] draws them all.

use super::geom;
use super::style::{self, color, frame_of, range_of, Chart, Entry, Plot, Swatch, INK, MUTED};
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
        let mut p = Plot::new(
            &area,
            self.xr,
            self.yr,
            &self.x_desc,
            Some(&self.y_desc),
            78,
            false,
        )?;
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
    let mut l = Layers {
        title: format!("{}: training loss", o.title),
        x_desc: "training tokens (M)".into(),
        y_desc: "training loss (nats/token)".into(),
        ..Default::default()
    };
    let (mut top, mut lows, mut xmax, mut first) =
        (f64::NEG_INFINITY, vec![], 0.0f64, f64::NEG_INFINITY);
    for b in branches {
        let c = color(b.color);
        let max_step = b
            .runs
            .iter()
            .filter_map(|r| r.train.last())
            .map(|t| t.step)
            .max()
            .unwrap_or(0);
        for r in &b.runs {
            let raw: Pts = r
                .train
                .iter()
                .map(|t| (mtok(t.tokens as f64), t.loss))
                .collect();
            let mut late: Vec<f64> = r
                .train
                .iter()
                .filter(|t| t.step * 10 >= max_step)
                .map(|t| t.loss)
                .filter(|v| v.is_finite())
                .collect();
            late.sort_by(f64::total_cmp);
            if !late.is_empty() {
                lows.push(late[late.len() / 50]);
            }
            first = first.max(
                r.train
                    .iter()
                    .map(|t| t.loss)
                    .find(|v| v.is_finite())
                    .unwrap_or(f64::NAN),
            );
            l.faint.push((c, geom::decimate(&raw, 2400), 0.10));
        }
        let emas: Vec<_> = b
            .runs
            .iter()
            .map(|r| summary::train_ema(r, o.ema_alpha))
            .collect();
        let mut m = across_seeds(&emas, BandKind::MinMax);
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
    let lo = lows
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f64::INFINITY, f64::min);
    l.yr = range_of([lo, top], 0.05);
    l.xr = (0.0, xmax.max(1e-6));
    l.caption = vec![
        format!("Bold: zero-phase EMA (α = {}, no lag) of the training loss, mean over seeds; band: min–max of the seeds' EMAs; faint: raw per-step loss.", o.ema_alpha),
        format!("y-axis fitted to the curves after the first 10% of steps; the initial descent (from {first:.1}) runs off the top."),
    ];
    l.legend
        .push(Entry::new("raw loss, each seed", MUTED, Swatch::Faint));
    l.legend
        .push(Entry::new("min–max over seeds", MUTED, Swatch::Band));
    style::save(out, "loss_vs_tokens", &l)
}

/// Validation loss vs tokens: seed mean with markers and a 95% CI band.
pub fn val_loss(branches: &[Branch], out: &Path, o: &PlotOptions) -> Result<Vec<PathBuf>> {
    let mut l = Layers {
        title: format!("{}: validation loss", o.title),
        x_desc: "training tokens (M)".into(),
        y_desc: "validation loss (nats/token)".into(),
        ..Default::default()
    };
    let (mut ys, mut xmax, mut clipped, mut missing) = (vec![], 0.0f64, false, vec![]);
    for b in branches {
        let c = color(b.color);
        let curves: Vec<Vec<_>> = b
            .runs
            .iter()
            .map(|r| {
                r.val
                    .iter()
                    .map(|v| (v.step, mtok(v.tokens as f64), v.loss))
                    .collect()
            })
            .collect();
        let m = across_seeds(&curves, BandKind::Ci95);
        if m.step.is_empty() {
            missing.push(b.name.clone());
            continue;
        }
        let max_step = *m.step.last().unwrap();
        let late: Vec<f64> = m
            .step
            .iter()
            .zip(&m.mean)
            .filter(|(s, _)| **s * 10 >= max_step && **s > 0)
            .map(|(_, v)| *v)
            .collect();
        clipped |= late.len() < m.mean.len();
        ys.extend(if late.is_empty() {
            m.mean.clone()
        } else {
            late
        });
        xmax = xmax.max(*m.x.last().unwrap());
        l.bold.push((
            c,
            m.x.iter().copied().zip(m.mean.iter().copied()).collect(),
            true,
        ));
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
    l.caption = vec![
        "Mean over seeds at each eval step; band: 95% CI over seeds (Student t; none where n = 1)."
            .into(),
    ];
    l.legend
        .push(Entry::new("95% CI over seeds", MUTED, Swatch::Band));
    if clipped {
        l.caption.push("y-axis fitted to evals after the first 10% of training; earlier (higher) evals run off the top.".into());
    }
    if !missing.is_empty() {
        l.notes.push(format!("no val rows: {}", missing.join(", ")));
    }
    style::save(out, "val_loss", &l)
}

/// EMA(NoPE) − EMA(RoPE) per seed and its seed mean: the chart for the blog's question.
pub fn nope_vs_rope(branches: &[Branch], out: &Path, o: &PlotOptions) -> Result<Vec<PathBuf>> {
    let vo = VolatilityOpts::default();
    let Some(nr) = summary::nope_rope(branches, &vo) else {
        return Ok(vec![]);
    };
    let c = color(nr.nope_color);
    let mut l = Layers {
        title: format!(
            "{}: {} − {} (smoothed training loss)",
            o.title, nr.nope, nr.rope
        ),
        x_desc: "training step".into(),
        y_desc: "loss difference (nats/token)".into(),
        hlines: vec![0.0],
        ..Default::default()
    };
    let curves: Vec<Vec<(u64, f64, f64)>> = nr
        .pairs
        .iter()
        .map(|(_, p)| {
            p.steps
                .iter()
                .zip(&p.d)
                .map(|(&s, &d)| (s, s as f64, d))
                .collect()
        })
        .collect();
    for (_, p) in &nr.pairs {
        l.faint.push((
            c,
            p.steps
                .iter()
                .map(|&s| s as f64)
                .zip(p.d.iter().copied())
                .collect(),
            0.45,
        ));
    }
    let m = across_seeds(&curves, BandKind::MinMax);
    l.bold.push((
        c,
        geom::thin(
            &m.x.iter()
                .copied()
                .zip(m.mean.iter().copied())
                .collect::<Vec<_>>(),
            500,
        ),
        false,
    ));
    let all = nr
        .pairs
        .iter()
        .flat_map(|(_, p)| p.d.iter().copied())
        .chain([0.0]);
    l.yr = range_of(all, 0.08);
    l.xr = range_of(m.x.iter().copied(), 0.0);
    let means: Vec<f64> = nr.pairs.iter().map(|(_, p)| p.mean).collect();
    let (mm, mh) = stats::mean_ci95(&means);
    let ci = if mh.is_finite() {
        format!("{mm:+.4} ± {mh:.4}")
    } else {
        format!("{mm:+.4} (n=1)")
    };
    let flips: Vec<String> = nr
        .pairs
        .iter()
        .map(|(s, p)| format!("s{s}: {}", p.flips))
        .collect();
    l.caption = vec![
        format!("d = EMA({}) − EMA({}), α = {}, same seed, common steps, first {:.0}% skipped. Above 0: {} has the higher (worse) loss.", nr.nope, nr.rope, vo.ema_alpha, vo.pair_skip_frac * 100.0, nr.nope),
        format!("mean d = {ci} nats (95% CI over seeds) · sign changes of d per seed: {}", flips.join(", ")),
    ];
    l.legend = vec![
        Entry::new(
            format!("each seed (n={})", nr.pairs.len()),
            c,
            Swatch::Faint,
        ),
        Entry::new("mean over seeds", c, Swatch::Line),
        Entry::new("0: equal loss", INK, Swatch::Faint),
    ];
    l.notes = vec![
        format!("above 0: {} worse", nr.nope),
        format!("below 0: {} better", nr.nope),
    ];
    l.notes.extend(nr.note.clone());
    style::save(out, "nope_vs_rope", &l)
}

/// Training loss vs step inside `a..=b`, y fitted to that window (the "zoom at 8.5K" view).
pub fn zoom(
    branches: &[Branch],
    (a, b): (u64, u64),
    out: &Path,
    o: &PlotOptions,
) -> Result<Vec<PathBuf>> {
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
            let raw: Pts = r
                .train
                .iter()
                .filter(|t| inside(t.step))
                .map(|t| (t.step as f64, t.loss))
                .collect();
            raw_all.extend(raw.iter().map(|p| p.1).filter(|v| v.is_finite()));
            l.faint.push((c, geom::decimate(&raw, 2400), 0.22));
        }
        let emas: Vec<_> = br
            .runs
            .iter()
            .map(|r| summary::train_ema(r, o.ema_alpha))
            .collect();
        let m = across_seeds(&emas, BandKind::MinMax);
        let pts: Pts = m
            .step
            .iter()
            .zip(&m.mean)
            .filter(|(s, _)| inside(**s))
            .map(|(s, v)| (*s as f64, *v))
            .collect();
        ema_all.extend(pts.iter().map(|p| p.1));
        if !pts.is_empty() {
            l.legend.push(Entry::new(br.label(), c, Swatch::Line));
        }
        l.bold.push((c, geom::thin(&pts, 500), false));
    }
    let seen: Vec<u64> = branches
        .iter()
        .flat_map(|br| &br.runs)
        .flat_map(|r| r.train.iter().map(|t| t.step))
        .filter(|s| inside(*s))
        .collect();
    if let (Some(lo), Some(hi)) = (seen.iter().min(), seen.iter().max()) {
        l.xr = (*lo as f64, (*hi as f64).max(*lo as f64 + 1.0)); // no empty margin where no run reached
    }
    raw_all.sort_by(f64::total_cmp);
    let q = |f: f64| {
        raw_all
            .get(((raw_all.len() as f64 - 1.0) * f).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    l.yr = range_of(ema_all.iter().copied().chain([q(0.005), q(0.995)]), 0.04);
    l.caption = vec![if raw_all.is_empty() {
        format!("No training rows between steps {a} and {b}.")
    } else {
        let last = seen.iter().max().copied().unwrap_or(b);
        let end = if last < b { format!(" Runs end at step {last}.") } else { String::new() };
        format!("Faint: raw per-step loss of each seed; bold: zero-phase EMA (α = {}, over the whole run) averaged over seeds; y-axis fitted to this range.{end}", o.ema_alpha)
    }];
    l.legend
        .push(Entry::new("raw loss, each seed", MUTED, Swatch::Faint));
    style::save(out, &format!("zoom_{a}_{b}"), &l)
}
