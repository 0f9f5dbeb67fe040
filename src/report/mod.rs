//! The markdown report: charts, per-branch tables, definitions and a verdict whose every
//! sentence is chosen from the numbers (nothing about which scheme wins is written in).

use crate::plot::summary::{self, branch_stats, BranchStats, NopeRope, RankTrack};
use crate::plot::Run;
use crate::stats::{self, VolatilityOpts, Welch};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Writes out_dir/report.md: embeds the charts (relative links to the PNGs), a table per branch
/// (final val loss mean ± CI, perplexity exp(loss), roughness ± CI, detrended std ± CI, tokens trained, wall time (from the last elapsed_s), seeds),
/// a NoPE-vs-RoPE table (std/max|d|/mean d/flips ± CI) when both exist, the volatility definitions,
/// and a short verdict computed from the numbers.
pub fn write_report(
    name: &str,
    runs: &[Run],
    out_dir: &Path,
    charts: &[PathBuf],
) -> Result<PathBuf> {
    if runs.is_empty() {
        bail!("no runs to report on");
    }
    let vo = VolatilityOpts::default();
    let branches = summary::group(runs);
    let bs: Vec<BranchStats> = branches.iter().map(|b| branch_stats(b, &vo)).collect();
    let nr = summary::nope_rope(&branches, &vo);
    let rank = nr
        .as_ref()
        .and_then(|n| summary::rank_track(&branches, &n.nope, &vo));

    let mut md = format!("# {name}\n\n");
    let seeds: std::collections::BTreeSet<u64> = runs.iter().map(|r| r.seed).collect();
    let seeds: Vec<String> = seeds.iter().map(u64::to_string).collect();
    writeln!(
        md,
        "{} runs in {} branches, seeds {}.\n",
        runs.len(),
        branches.len(),
        seeds.join(", ")
    )?;
    md += "## Verdict\n\n";
    for s in verdict(&bs, nr.as_ref(), rank.as_ref(), vo.pair_skip_frac) {
        writeln!(md, "- {s}")?;
    }
    md += "\n## Per branch\n\n";
    md += &branch_table(&bs);
    if let Some(nr) = &nr {
        writeln!(md, "\n## {} vs {}\n", nr.nope, nr.rope)?;
        md += &pair_table(nr);
    }
    md += "\n## Charts\n\n";
    for c in charts
        .iter()
        .filter(|c| c.extension().is_some_and(|e| e == "png"))
    {
        let rel = c
            .strip_prefix(out_dir)
            .unwrap_or(c)
            .to_string_lossy()
            .replace('\\', "/");
        let stem = c
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let svg = c.with_extension("svg");
        let svg_link = if charts.contains(&svg) {
            format!(
                " ([svg]({}))",
                rel.trim_end_matches(".png").to_string() + ".svg"
            )
        } else {
            String::new()
        };
        writeln!(
            md,
            "### {}{svg_link}\n\n![{stem}]({rel})\n",
            chart_heading(&stem)
        )?;
    }
    md += "## Definitions\n\n";
    for d in stats::DEFINITIONS {
        writeln!(md, "- {d}")?;
    }
    writeln!(
        md,
        "- Settings used here: K = last {:.0}% of each run, EMA α = {}, pair skip = first {:.0}%.",
        vo.tail_frac * 100.0,
        vo.ema_alpha,
        vo.pair_skip_frac * 100.0
    )?;
    let notes = data_notes(runs, &bs);
    if !notes.is_empty() {
        md += "\n## Data notes\n\n";
        for n in notes {
            writeln!(md, "- {n}")?;
        }
    }
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("{}: cannot create", out_dir.display()))?;
    let path = out_dir.join("report.md");
    std::fs::write(&path, md).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(path)
}

fn chart_heading(stem: &str) -> String {
    match stem {
        "loss_vs_tokens" => "Training loss".into(),
        "val_loss" => "Validation loss".into(),
        "val_final" => "Final validation loss".into(),
        "volatility" => "Volatility".into(),
        "nope_vs_rope" => "NoPE − RoPE".into(),
        "loss_per_window" => "Validation loss per window".into(),
        s => match s.strip_prefix("zoom_").and_then(|r| r.split_once('_')) {
            Some((a, b)) => format!("Zoom: steps {a}–{b}"),
            None => s.into(),
        },
    }
}

/// "m ± h" with n=1 / no-data spelled out.
fn ci(xs: &[f64], digits: usize) -> String {
    let (m, h) = stats::mean_ci95(xs);
    match (m.is_finite(), h.is_finite()) {
        (false, _) => "–".into(),
        (true, true) => format!("{m:.digits$} ± {h:.digits$}"),
        (true, false) => format!("{m:.digits$} (n=1)"),
    }
}

fn duration(s: f64) -> String {
    match s {
        s if !s.is_finite() => "–".into(),
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.0} min", s / 60.0),
        s => format!("{:.1} h", s / 3600.0),
    }
}

fn branch_table(bs: &[BranchStats]) -> String {
    let win = bs.iter().any(|b| !b.window_gain.is_empty());
    let mut t = String::from("| branch | positions | memory | seeds | final val loss | perplexity | roughness | detrended std | tokens (M) | wall time |");
    t += if win {
        " window Δ (last − first) |\n"
    } else {
        "\n"
    };
    t += "|---|---|---|---|---|---|---|---|---|---|";
    t += if win { "---|\n" } else { "\n" };
    for b in bs {
        let (m, h) = stats::mean_ci95(&b.final_val);
        let ppl = match (m.is_finite(), h.is_finite()) {
            (false, _) => "–".into(),
            (true, true) => format!("{:.2} ({:.2}–{:.2})", m.exp(), (m - h).exp(), (m + h).exp()),
            (true, false) => format!("{:.2}", m.exp()),
        };
        let seeds: Vec<String> = b.seeds.iter().map(u64::to_string).collect();
        let mem = if b.memory_tokens > 0 {
            format!("{} tokens", b.memory_tokens)
        } else {
            "–".into()
        };
        let _ = write!(
            t,
            "| {} | {} | {mem} | {} | {} | {ppl} | {} | {} | {:.1} | {} |",
            b.name,
            b.positions.as_deref().unwrap_or("?"),
            seeds.join(", "),
            ci(&b.final_val, 4),
            ci(&b.roughness, 4),
            ci(&b.detrended, 4),
            stats::mean(&b.tokens) / 1e6,
            duration(stats::mean(&b.wall_s)),
        );
        t += &if win {
            format!(" {} |\n", ci(&b.window_gain, 4))
        } else {
            "\n".into()
        };
    }
    t
}

fn pair_table(nr: &NopeRope) -> String {
    let mut t = String::from("| seed | std(d) | max abs(d) | mean d | flips | steps compared |\n|---|---|---|---|---|---|\n");
    for (s, p) in &nr.pairs {
        let _ = writeln!(
            t,
            "| {s} | {:.4} | {:.4} | {:+.4} | {} | {} |",
            p.std,
            p.max_abs,
            p.mean,
            p.flips,
            p.d.len()
        );
    }
    let col = |f: &dyn Fn(&stats::PairDiff) -> f64| {
        nr.pairs.iter().map(|(_, p)| f(p)).collect::<Vec<f64>>()
    };
    let _ = writeln!(
        t,
        "| **mean ± 95% CI** | {} | {} | {} | {} | |",
        ci(&col(&|p| p.std), 4),
        ci(&col(&|p| p.max_abs), 4),
        ci(&col(&|p| p.mean), 4),
        ci(&col(&|p| p.flips as f64), 1)
    );
    if let Some(n) = &nr.note {
        let _ = writeln!(t, "\nNote: {n}.");
    }
    t
}

/// "is beyond the 95% CI" / "is within noise" / "cannot be tested" for a Welch result.
fn judged(w: Option<Welch>) -> String {
    match w {
        None => "cannot be tested (a side has n=1)".into(),
        Some(w) if w.significant() => format!(
            "is beyond the 95% CI (Welch: {:+.4} ± {:.4})",
            w.diff, w.half_width
        ),
        Some(w) => format!(
            "is within noise (Welch 95% CI of the difference {:+.4} ± {:.4} includes 0)",
            w.diff, w.half_width
        ),
    }
}

/// The verdict bullets, each chosen from the numbers.
/// `skip_frac` is the pair-difference skip, quoted in the text.
fn verdict(
    bs: &[BranchStats],
    nr: Option<&NopeRope>,
    rank: Option<&RankTrack>,
    skip_frac: f64,
) -> Vec<String> {
    let mut out = vec![];
    let mut ranked: Vec<&BranchStats> = bs.iter().filter(|b| !b.final_val.is_empty()).collect();
    ranked.sort_by(|a, b| stats::mean(&a.final_val).total_cmp(&stats::mean(&b.final_val)));
    match ranked.as_slice() {
        [] => out.push("No branch has validation rows, so there is no final-loss ranking.".into()),
        [only] => out.push(format!("Only **{}** has validation rows (final val loss {}).", only.name, ci(&only.final_val, 4))),
        [best, second, ..] => out.push(format!(
            "Lowest final validation loss: **{}** ({}), runner-up **{}** ({}); the lead of {:.4} nats {}.",
            best.name,
            ci(&best.final_val, 4),
            second.name,
            ci(&second.final_val, 4),
            stats::mean(&second.final_val) - stats::mean(&best.final_val),
            judged(stats::welch(&second.final_val, &best.final_val)),
        )),
    }
    let Some(nr) = nr else {
        out.push("No NoPE and RoPE branches without memory were both found, so the NoPE-volatility question is not addressed.".into());
        return out;
    };
    let find = |n: &str| bs.iter().find(|b| b.name == n);
    if let (Some(n), Some(r)) = (find(&nr.nope), find(&nr.rope)) {
        for (what, a, b) in [
            ("roughness", &n.roughness, &r.roughness),
            ("detrended std", &n.detrended, &r.detrended),
        ] {
            let cmp = match stats::mean(a).partial_cmp(&stats::mean(b)) {
                Some(std::cmp::Ordering::Greater) => "higher than",
                Some(std::cmp::Ordering::Less) => "lower than",
                _ => "equal to",
            };
            out.push(format!(
                "{}'s {what} ({}) is {cmp} {}'s ({}); the difference {}.",
                n.name,
                ci(a, 4),
                r.name,
                ci(b, 4),
                judged(stats::welch(a, b))
            ));
        }
    }
    out.push(bounce_sentence(nr, find(&nr.nope), skip_frac));
    if let Some(r) = rank {
        let held: Vec<String> = r
            .share
            .iter()
            .enumerate()
            .filter(|(_, s)| **s > 0.0)
            .map(|(k, s)| format!("rank {} for {:.0}%", k + 1, s * 100.0))
            .collect();
        let moves = if held.len() == 1 {
            "it never changes place".to_string()
        } else {
            format!("its rank changes {} times in {} steps", r.changes, r.steps)
        };
        out.push(format!(
            "Ranking the {} memory-free branches by seed-mean smoothed training loss (1 = lowest), {} holds {} of the compared steps: {moves}. Order at the last compared step: {}.",
            r.field.len(), r.branch, held.join(", "), r.final_order.join(" < ")
        ));
    }
    out
}

/// Whether NoPE ever reaches RoPE's level, and how the gap compares with the noise a
/// raw-loss chart shows (the "is the chart's scale lying" half of the question).
fn bounce_sentence(nr: &NopeRope, nope: Option<&BranchStats>, skip_frac: f64) -> String {
    let ds: Vec<f64> = nr
        .pairs
        .iter()
        .flat_map(|(_, p)| p.d.iter().copied())
        .filter(|d| d.is_finite())
        .collect();
    let flips: Vec<String> = nr
        .pairs
        .iter()
        .map(|(s, p)| format!("seed {s}: {}", p.flips))
        .collect();
    let total: usize = nr.pairs.iter().map(|(_, p)| p.flips).sum();
    let (lo, hi) = ds
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &d| {
            (a.min(d), b.max(d))
        });
    let means: Vec<f64> = nr.pairs.iter().map(|(_, p)| p.mean).collect();
    let (n, r) = (&nr.nope, &nr.rope);
    let mut s = if total == 0 && lo > 0.0 {
        format!("{n} is consistently worse than {r}: after the first {:.0}% of steps its smoothed training loss stays above {r}'s in every seed (d from {lo:.4} to {hi:.4}, mean {} nats), so it never bounces to {r}'s level.", skip_frac * 100.0, ci(&means, 4))
    } else if total == 0 && hi < 0.0 {
        format!("{n} is consistently better than {r}: its smoothed training loss stays below {r}'s in every seed (d from {lo:.4} to {hi:.4}, mean {} nats).", ci(&means, 4))
    } else if total == 0 {
        let ahead_seeds = means.iter().filter(|m| **m < 0.0).count();
        format!("The {n} − {r} difference never changes sign within a seed, but which side it is on depends on the seed ({n} ahead in {ahead_seeds} of {} seeds; mean d {} nats): the order is seed-to-seed noise, not a bounce within a run.", means.len(), ci(&means, 4))
    } else {
        let ahead = ds.iter().filter(|d| **d < 0.0).count() as f64 / ds.len().max(1) as f64;
        let (m, h) = stats::mean_ci95(&means);
        let avg = if h.is_finite() && m.abs() > h {
            format!(
                "on average {n} is {} by {} nats (beyond the 95% CI over seeds)",
                if m > 0.0 { "worse" } else { "better" },
                ci(&means, 4)
            )
        } else {
            format!(
                "on average there is no clear gap (mean d {} nats)",
                ci(&means, 4)
            )
        };
        format!("The {n} − {r} difference changes sign ({}): {n} does reach {r}'s level, being ahead on {:.0}% of the compared steps; {avg}.", flips.join(", "), ahead * 100.0)
    };
    let noise = nope.map(|b| stats::mean(&b.detrended)).unwrap_or(f64::NAN);
    let gap = stats::mean(&means).abs();
    if noise.is_finite() && noise > 0.0 && gap.is_finite() {
        let ratio = gap / noise;
        let seen = if ratio < 1.0 {
            "so in a raw-loss chart the two curves overlap and the gap is only visible after smoothing or zooming"
        } else {
            "so the gap is visible even in raw-loss charts"
        };
        let _ = write!(s, " The mean gap is {ratio:.2}× the per-step noise of {n}'s raw loss (detrended std {noise:.4}), {seen}.");
    }
    s
}

fn data_notes(runs: &[Run], bs: &[BranchStats]) -> Vec<String> {
    let mut notes = vec![];
    for b in bs.iter().filter(|b| b.nonfinite > 0) {
        notes.push(format!(
            "{}: {} non-finite training losses (diverged steps) were skipped in every statistic.",
            b.name, b.nonfinite
        ));
    }
    for r in runs {
        let bad = r.val.iter().filter(|v| !v.loss.is_finite()).count();
        if bad > 0 {
            notes.push(format!("{} seed {}: {bad} non-finite validation losses; its final val loss is the last finite one.", r.branch, r.seed));
        }
    }
    for b in bs.iter().filter(|b| b.final_val.is_empty()) {
        notes.push(format!("{}: no validation rows.", b.name));
    }
    let lens: Vec<u64> = runs
        .iter()
        .map(|r| r.train.last().map_or(0, |t| t.step))
        .collect();
    let (lo, hi) = (
        lens.iter().min().unwrap_or(&0),
        lens.iter().max().unwrap_or(&0),
    );
    if lo != hi {
        notes.push(format!("Runs have different lengths ({lo} to {hi} steps); means over seeds at late steps use the seeds that reached them."));
    }
    for r in runs.iter().filter(|r| r.positions.is_none()) {
        notes.push(format!(
            "{}: no config.toml, branch and seed taken from the directory name; positions unknown.",
            r.dir.display()
        ));
    }
    notes
}

#[cfg(test)]
mod tests;
