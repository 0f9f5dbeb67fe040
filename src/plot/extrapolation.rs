//! "Train short, test long": loss against the length of one attention window at evaluation,
//! one line per branch (ALiBi paper, Figure 1), from each run's `extrapolation.json`.

use super::dots::{WindowChart, WindowPoint};
use super::style::{self, color, range_of, Entry, Swatch, XAxis};
use super::summary::Branch;
use super::PlotOptions;
use crate::stats;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Per evaluation length: each seed's loss and bits per byte.
pub type ByLength = BTreeMap<usize, (Vec<f64>, Vec<f64>)>;

/// Seed means and 95% CIs per (branch, evaluation length): loss and bits per byte.
pub fn table(branches: &[Branch]) -> Vec<(String, ByLength)> {
    branches
        .iter()
        .map(|b| {
            let mut at: ByLength = BTreeMap::new();
            for r in &b.runs {
                for p in &r.extrapolation {
                    let e = at.entry(p.length).or_default();
                    e.0.push(p.loss);
                    e.1.push(p.bits_per_byte);
                }
            }
            (b.name.clone(), at)
        })
        .filter(|(_, at)| !at.is_empty())
        .collect()
}

/// `extrapolation.png`/`.svg`: bits per byte against evaluation length (log scale), or nothing
/// when no run has `extrapolation.json`.
pub fn chart(branches: &[Branch], out: &Path, o: &PlotOptions) -> Result<Vec<PathBuf>> {
    let t = table(branches);
    if t.is_empty() {
        return Ok(vec![]);
    }
    let trained: Vec<usize> = branches.iter().flat_map(|b| &b.runs).filter_map(|r| r.window).collect();
    let mut c = WindowChart::new(format!("{}: train short, test long", o.title), "tokens in the attention window at evaluation (log scale)", "test loss (bits per byte)", XAxis::Log2);
    let (mut xs, mut ys) = (vec![], vec![]);
    let dodge = 0.05 / branches.len().max(1) as f64;
    for (bi, b) in branches.iter().enumerate() {
        let Some((_, at)) = t.iter().find(|(n, _)| *n == b.name) else { continue };
        let off = (bi as f64 - (branches.len() as f64 - 1.0) / 2.0) * dodge;
        let pts: Vec<WindowPoint> = at
            .iter()
            .map(|(len, (_, bpb))| {
                let (m, h) = stats::mean_ci95(bpb);
                let x = (*len as f64).log2();
                xs.push(x);
                ys.push(m);
                (x + off, m, h)
            })
            .collect();
        c.series.push((color(b.color), pts));
        c.legend.push(Entry::new(b.label(), color(b.color), Swatch::Line));
    }
    // seed-to-seed differences of level can dwarf the differences between lengths: such bars
    // would cover the chart, so they are left out (the report's table has every CI)
    let span = range_of(ys.iter().copied(), 0.0);
    let wide = (span.1 - span.0).max(1e-9) * 0.5;
    let mut hidden = false;
    for (_, pts) in c.series.iter_mut() {
        for p in pts.iter_mut().filter(|p| p.2 > wide) {
            p.2 = f64::NAN;
            hidden = true;
        }
    }
    if hidden {
        c.notes.push("95% CI bars wider than half the chart are left out: the seeds differ more in level than the lengths do (see the report's table)".into());
    }
    // a branch that falls apart at long lengths must not squash the others into a line
    let mut sorted = ys.clone();
    sorted.sort_by(f64::total_cmp);
    let cap = sorted.get(sorted.len() * 3 / 4).copied().unwrap_or(f64::NAN) * 1.6;
    let clipped = ys.iter().any(|y| *y > cap);
    c.yr = range_of(ys.into_iter().filter(|y| *y <= cap), 0.08);
    let (lo, hi) = range_of(xs, 0.0);
    c.xr = (lo - 0.3, hi + 0.3);
    let trained = match (trained.iter().min(), trained.iter().max()) {
        (Some(a), Some(b)) if a == b => format!("trained with windows of {a} tokens"),
        (Some(a), Some(b)) => format!("trained with windows of {a}–{b} tokens"),
        _ => "trained window unknown".into(),
    };
    c.caption = vec![
        format!("Each model ({trained}) scored on the test split with one attention window of each length; mean over seeds, bars: 95% CI over seeds."),
        "Flat to the right = the position scheme extrapolates; rising = it does not.".into(),
    ];
    if clipped {
        c.notes.push("points above the top of the axis are off the chart (see the report's table)".into());
    }
    style::save(out, "extrapolation", &c)
}
